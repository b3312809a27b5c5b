package rootless

import (
	"fmt"
	"os/exec"
	"strings"
)

// Check is one line of strata doctor: a requirement, what was found and,
// when it is not met, the exact fix.
type Check struct {
	Name  string
	OK    bool
	Info  bool // informational: neither passes nor fails
	Found string
	Fix   string
}

// Doctor checks what the host gives strata: a delegated cgroup v2 subtree
// for resource limits (both ways to one, and which strata would pick),
// FUSE and subordinate ids.
func Doctor(cfg CgroupConfig) []Check {
	h := probeCgroupHost(cfg)
	var out []Check
	v2 := Check{Name: "cgroup v2: the unified hierarchy at /sys/fs/cgroup", OK: h.unified, Found: "cgroup2 mounted at /sys/fs/cgroup"}
	if !h.unified {
		v2.Found = strings.SplitN(h.why, ";", 2)[0]
		v2.Fix = unifiedFix
	}
	out = append(out, v2)
	way := func(name string, p wayProbe) Check {
		c := Check{Name: name, OK: p.ok, Found: p.found}
		if !p.ok {
			c.Fix = p.fix
			// One way suffices: the other failing is no failure.
			c.Info = h.manager != ""
		}
		return c
	}
	out = append(out, way("delegation through systemd: a transient scope with Delegate=yes on your user instance", h.systemd))
	out = append(out, way("delegation through cgroupfs: a cgroup you can write (current, or $STRATA_CGROUP_PARENT)", h.cgroupfs))
	if h.manager != "" {
		var missing []string
		for _, c := range []string{"cpu", "cpuset", "memory", "pids"} {
			if !h.controllers[c] {
				missing = append(missing, c)
			}
		}
		ctl := Check{Name: "controllers for --memory/--cpus/--cpuset-cpus/--pids-limit: cpu cpuset memory pids", OK: len(missing) == 0,
			Found: fmt.Sprintf("%s offers: %s", h.where, h.controllerList())}
		if len(missing) > 0 {
			ctl.Fix = h.delegateFix(missing)
		}
		out = append(out, ctl)
	}
	chosen := Check{Name: "resource limits", Info: true}
	if h.manager != "" {
		chosen.Found = "available, through " + h.manager + " (" + h.where + ")"
	} else {
		chosen.Found = "unavailable: runs with --memory, --cpus, ... fail (exit 125); runs without limits work"
	}
	out = append(out, chosen)

	fuse := Check{Name: "FUSE: /dev/fuse readable and writable", OK: true, Found: "/dev/fuse opens read-write"}
	if err := checkFuse(); err != nil {
		fuse.OK, fuse.Found = false, err.Error()
		fuse.Fix = "modprobe fuse; chmod 0666 /dev/fuse"
	}
	out = append(out, fuse)
	ids := Check{Name: "id maps: subordinate ids and newuidmap/newgidmap", Info: true}
	if p, err := planIDs(false); err != nil {
		ids.Found, ids.Info, ids.Fix = err.Error(), false, "apt-get install uidmap"
	} else if p.single {
		ids.Found = "no /etc/subuid and /etc/subgid range: only your own id is mapped"
		ids.Fix = fmt.Sprintf("add \"%s:100000:65536\" to /etc/subuid and /etc/subgid (as root)", userName())
	} else if p.helpers {
		tool, _ := exec.LookPath("newuidmap")
		ids.Found = fmt.Sprintf("subordinate ranges found; %s maps them", tool)
	} else {
		ids.Found = "running as root: every id is mapped"
	}
	out = append(out, ids)
	return out
}
