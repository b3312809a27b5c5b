//go:build systemdguest

package tests

import (
	"testing"
	"time"
)

// TestCgroupV2GuestSystemd runs the guest checks on a guest that boots
// systemd (a debootstrap of Debian 12), where the test user's limits come
// through a transient scope of its lingering systemd instance. systemd
// under TCG boots in 30 to 60 s and the whole run takes about two minutes
// on an idle machine, so it is its own target, which CI runs too:
// make test-cgroup-systemd (go test -tags systemdguest).
func TestCgroupV2GuestSystemd(t *testing.T) {
	bootGuest(t, "systemd", "systemd", 1536, 8*time.Minute)
}
