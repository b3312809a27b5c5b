//go:build systemdguest

package tests

import (
	"testing"
	"time"
)

// TestCgroupV2GuestSystemd runs the guest checks on a guest that boots
// systemd (a debootstrap of Debian 12), where the test user's limits come
// through a transient scope of its lingering systemd instance. systemd
// under TCG boots in 20 to 60 s and the run takes 50 s to 2.5 minutes
// with the host's load, and the guest takes a debootstrap to build, so it
// is its own target, which CI runs too: make test-cgroup-systemd (go test
// -tags systemdguest).
func TestCgroupV2GuestSystemd(t *testing.T) {
	bootGuest(t, "systemd", "systemd", 1536, 8*time.Minute)
}
