package rootless

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupHost is what strata found out about the host's cgroups: whether
// there is a delegated subtree, through which manager, with which
// controllers, and if not, why not and how to fix it.
type cgroupHost struct {
	unified     bool
	manager     string // "systemd", "cgroupfs" or "": the way chosen
	base        string // cgroupfs: the delegated cgroup (absolute dir)
	where       string // the cgroup the controllers were read from
	controllers map[string]bool
	why         string // manager == "": what is missing and the fix

	// Each way's own findings, for strata doctor.
	systemd, cgroupfs wayProbe
}

type wayProbe struct {
	ok          bool
	found       string // what was found, one line
	fix         string // "" when ok
	where       string
	controllers map[string]bool
}

func (h cgroupHost) controllerList() string {
	if len(h.controllers) == 0 {
		return "none"
	}
	var out []string
	for c := range h.controllers {
		out = append(out, c)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// delegateFix says how to get the missing controllers delegated.
func (h cgroupHost) delegateFix(missing []string) string {
	if h.manager == "systemd" {
		return "delegate them to user sessions with a drop-in, as root:\n" + systemdDelegateFix
	}
	return fmt.Sprintf("ask root to enable them for your cgroup: echo '%s' > %s/cgroup.subtree_control (in each cgroup from /sys/fs/cgroup down to it)",
		"+"+strings.Join(missing, " +"), filepath.Dir(h.base))
}

const systemdDelegateFix = `  mkdir -p /etc/systemd/system/user@.service.d
  printf '[Service]\nDelegate=cpu cpuset io memory pids\n' > /etc/systemd/system/user@.service.d/delegate.conf
  systemctl daemon-reload   # then log out and in again (or: systemctl restart user@$(id -u))`

const unifiedFix = "boot the host with the unified cgroup v2 hierarchy: add systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub and reboot)"

// probeCgroupHost looks for a delegated cgroup v2 subtree, systemd first
// (as podman does: a cgroup systemd manages is systemd's to change),
// then the current or configured cgroup through cgroupfs.
func probeCgroupHost(cfg CgroupConfig) cgroupHost {
	h := cgroupHost{unified: cgroupV2Unified()}
	if !h.unified {
		what := "v1 only"
		var st unix.Statfs_t
		if unix.Statfs(filepath.Join(cgroupRoot, "unified"), &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			what = "hybrid: v1 controllers, with a cgroup2 at /sys/fs/cgroup/unified that holds none of them"
		}
		h.why = fmt.Sprintf("/sys/fs/cgroup is not a cgroup v2 mount (this host's cgroups are %s); %s", what, unifiedFix)
		h.systemd = wayProbe{found: "not usable without cgroup v2 (above)"}
		h.cgroupfs = h.systemd
		return h
	}
	h.systemd = probeSystemd()
	h.cgroupfs = probeCgroupfs(cfg.Parent)
	switch {
	case cfg.Manager == "systemd" || (cfg.Manager == "" && h.systemd.ok):
		if h.systemd.ok {
			h.manager, h.where, h.controllers = "systemd", h.systemd.where, h.systemd.controllers
		} else {
			h.why = "systemd: " + h.systemd.found + "; " + h.systemd.fix
		}
	case cfg.Manager == "cgroupfs" || cfg.Manager == "":
		if h.cgroupfs.ok {
			h.manager, h.where, h.controllers = "cgroupfs", h.cgroupfs.where, h.cgroupfs.controllers
			h.base = h.cgroupfs.where
		} else if cfg.Manager == "cgroupfs" {
			h.why = "cgroupfs: " + h.cgroupfs.found + "; " + h.cgroupfs.fix
		} else {
			h.why = fmt.Sprintf("systemd: %s (fix: %s); cgroupfs: %s (fix: %s)", h.systemd.found, h.systemd.fix, h.cgroupfs.found, h.cgroupfs.fix)
		}
	default:
		h.why = fmt.Sprintf("cgroup manager %q: want systemd or cgroupfs", cfg.Manager)
	}
	return h
}

// probeSystemd finds the user's systemd instance: its D-Bus socket and
// the controllers delegated to user@UID.service.
func probeSystemd() wayProbe {
	uid := strconv.Itoa(os.Getuid())
	linger := "loginctl enable-linger " + userName() + " (as root), or log in through a PAM session (ssh, login) so that systemd starts your user manager"
	addr := userBusAddress()
	if addr == "" {
		return wayProbe{found: "no user D-Bus: $DBUS_SESSION_BUS_ADDRESS is unset and $XDG_RUNTIME_DIR/bus does not exist", fix: linger}
	}
	if path, ok := strings.CutPrefix(addr, "unix:path="); ok {
		if _, err := os.Stat(path); err != nil {
			return wayProbe{found: "user D-Bus " + path + " is missing", fix: linger}
		}
	}
	svc := filepath.Join(cgroupRoot, "user.slice", "user-"+uid+".slice", "user@"+uid+".service")
	ctl, err := readControllers(svc)
	if err != nil {
		return wayProbe{found: fmt.Sprintf("user D-Bus at %s, but no user manager cgroup %s", addr, svc), fix: linger}
	}
	p := wayProbe{ok: true, where: svc, controllers: ctl,
		found: fmt.Sprintf("user manager at %s, cgroup %s, controllers: %s", addr, svc, sortedKeys(ctl))}
	if !ctl["memory"] || !ctl["pids"] || !ctl["cpu"] || !ctl["cpuset"] {
		p.fix = "for every limit, delegate all controllers, as root:\n" + systemdDelegateFix
	}
	return p
}

// userBusAddress is where the user's systemd instance listens, as
// sd_bus_open_user finds it.
func userBusAddress() string {
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" {
		return a
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		p := filepath.Join(d, "bus")
		if _, err := os.Stat(p); err == nil {
			return "unix:path=" + p
		}
	}
	return ""
}

// probeCgroupfs checks that the configured cgroup, or the current one,
// is ours to divide: its directory, cgroup.procs and
// cgroup.subtree_control writable.
func probeCgroupfs(parent string) wayProbe {
	rel := parent
	if rel == "" {
		cur, err := currentCgroup()
		if err != nil {
			return wayProbe{found: err.Error(), fix: "run strata on a kernel with cgroup v2"}
		}
		rel = cur
		// After a first run strata sits in its own leaf below the
		// delegated cgroup: the containers go beside it.
		if filepath.Base(rel) == selfLeaf {
			rel = filepath.Dir(rel)
		}
	}
	dir := filepath.Join(cgroupRoot, filepath.Clean("/"+rel))
	fix := fmt.Sprintf("have root delegate a cgroup to you (mkdir /sys/fs/cgroup/%s; chown %s it and its cgroup.procs, cgroup.subtree_control and cgroup.threads), then start strata from it or set STRATA_CGROUP_PARENT; or use systemd (loginctl enable-linger %s)",
		userName(), userName(), userName())
	for _, f := range []string{"", "cgroup.procs", "cgroup.subtree_control"} {
		if err := unix.Access(filepath.Join(dir, f), unix.W_OK); err != nil {
			return wayProbe{found: fmt.Sprintf("cgroup %s: %s not writable by you", dir, orDir(f)), fix: fix, where: dir}
		}
	}
	ctl, err := readControllers(dir)
	if err != nil {
		return wayProbe{found: fmt.Sprintf("cgroup %s: %v", dir, err), fix: fix, where: dir}
	}
	p := wayProbe{ok: true, where: dir, controllers: ctl,
		found: fmt.Sprintf("cgroup %s is writable, controllers: %s", dir, sortedKeys(ctl))}
	if !ctl["memory"] || !ctl["pids"] || !ctl["cpu"] || !ctl["cpuset"] {
		p.fix = fmt.Sprintf("for every limit, have root enable all controllers down to it: echo '+cpu +cpuset +memory +pids' > %s/cgroup.subtree_control (and in each cgroup above)", filepath.Dir(dir))
	}
	return p
}

func orDir(f string) string {
	if f == "" {
		return "the directory"
	}
	return f
}

func sortedKeys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " ")
}

func userName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return strconv.Itoa(os.Getuid())
}
