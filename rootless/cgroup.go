package rootless

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Cgroup is the seam for resource limits. Delegation needs a pure cgroup
// v2 host (systemd gives the user a delegated subtree); on a v1 or hybrid
// host strata runs without limits and says so once per login session (a
// marker in the runtime dir).
//
// A v2 implementation creates <delegated>/strata-<id>, writes the limits,
// and in Join moves the child there: Join runs after the id maps are
// written and before the child reads its spec, so init and the command
// are born inside (and init's cgroup namespace is rooted there).
type Cgroup interface {
	Join(childPID int) error
	// Close removes the cgroup once the container has exited.
	Close() error
}

// CgroupFor returns the cgroup for a container. Today that is always
// noCgroup, with a one-time warning on hosts without a unified hierarchy.
func CgroupFor() (Cgroup, string) {
	return noCgroup{}, cgroupWarning()
}

type noCgroup struct{}

func (noCgroup) Join(int) error { return nil }
func (noCgroup) Close() error   { return nil }

func cgroupV2Unified() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

func cgroupWarning() string {
	if cgroupV2Unified() {
		return ""
	}
	run, err := RuntimeDir()
	if err != nil {
		return ""
	}
	marker := filepath.Join(run, ".cgroup-warned")
	if _, err := os.Stat(marker); err == nil {
		return ""
	}
	os.WriteFile(marker, nil, 0o600)
	return "this host has no unified cgroup v2 hierarchy (v1 or hybrid): containers run without resource limits"
}
