package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/strata-run/strata/unionfs"
	"golang.org/x/sys/unix"
)

// Host is what the numbers depend on besides the code.
type Host struct {
	Kernel         string   `json:"kernel"`
	FUSEProtocol   string   `json:"fuse_protocol"`
	CPU            string   `json:"cpu"`
	Cores          int      `json:"cores"`
	MemoryGiB      float64  `json:"memory_gib"`
	FuseOverlayfs  string   `json:"fuse_overlayfs,omitempty"`
	StrataVersion  string   `json:"strata_version,omitempty"`
	StrataDefaults []string `json:"strata_default_speed"`
	Go             string   `json:"go"`
}

func hostInfo() Host {
	h := Host{Cores: runtime.NumCPU(), Go: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Version[:])
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				h.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		h.MemoryGiB = float64(si.Totalram) * float64(si.Unit) / (1 << 30)
	}
	if out, err := exec.Command("fuse-overlayfs", "--version").CombinedOutput(); err == nil || len(out) > 0 {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "fuse-overlayfs:") {
				h.FuseOverlayfs = strings.TrimSpace(strings.TrimPrefix(l, "fuse-overlayfs:"))
			}
		}
	}
	h.FUSEProtocol = fuseProtocol()
	s := unionfs.DefaultSpeed
	h.StrataDefaults = []string{fmt.Sprintf("lower timeout %s", s.LowerTimeout), fmt.Sprintf("upper timeout %s", s.UpperTimeout)}
	for _, f := range []struct {
		on   bool
		name string
	}{{s.KeepCache, "keep_cache"}, {s.CacheReaddir, "cache_readdir"}, {s.Passthrough, "passthrough (root only; the kernel refuses it in a user namespace)"},
		{s.Writeback, "writeback cache"}, {s.Splice, "splice"}, {s.ParallelDirops, "parallel dirops"},
		{s.ZeroOpendir, "zero-message opendir"}, {s.Opens != unionfs.OpensHandles, opensName(s.Opens)},
		{s.Acl, "POSIX ACL"}, {s.KillprivV2, "HANDLE_KILLPRIV_V2"}, {s.ReaddirplusAuto, "READDIRPLUS_AUTO"}} {
		if f.on {
			h.StrataDefaults = append(h.StrataDefaults, f.name)
		} else {
			h.StrataDefaults = append(h.StrataDefaults, f.name+": off")
		}
	}
	return h
}

// fuseProtocol mounts an empty FUSE filesystem for a moment to learn the
// protocol version the kernel speaks.
func fuseProtocol() string {
	dir, err := os.MkdirTemp("", "strata-bench-fuse-")
	if err != nil {
		return "unknown: " + err.Error()
	}
	defer os.Remove(dir)
	srv, err := fs.Mount(dir, &fs.Inode{}, &fs.Options{MountOptions: fuse.MountOptions{DirectMount: true, FsName: "strata-bench-probe"}})
	if err != nil {
		return "unknown: " + err.Error()
	}
	k := srv.KernelSettings()
	v := fmt.Sprintf("%d.%d", k.Major, k.Minor)
	srv.Unmount()
	return v
}

func opensName(m unionfs.OpenMode) string {
	if m == unionfs.OpensAuto {
		return "zero-message opens (auto: none as real root, where passthrough applies)"
	}
	return "zero-message opens"
}
