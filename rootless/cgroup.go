package rootless

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Cgroups are the seam for resource limits. Delegation needs a pure
// cgroup v2 host (systemd gives the user a delegated subtree); on a v1 or
// hybrid host strata runs without limits and says so once per login
// session (a marker in the runtime dir).
//
// A future Cgroup implementation creates <delegated>/strata-<id>, writes
// limits, and moves the child's pid into it before init starts.

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
