package rootless

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroup is the seam for resource limits: a container's own cgroup v2
// cgroup in a delegated subtree (see planCgroup for how strata finds one).
//
// The cgroup exists, limits written, before the child is started; Join
// moves the child there after the id maps are written and before the
// child reads its spec, so init and the command are born inside (and
// init's cgroup namespace is rooted there).
type Cgroup interface {
	Join(childPID int) error
	// Close removes the cgroup once the container has exited, killing
	// whatever is left in it; it first keeps the count of OOM kills.
	Close() error
	// OOMKills is memory.events' oom_kill as Close last saw it.
	OOMKills() int
	// Path is the cgroup's directory, "" when there is none.
	Path() string
	// Outside is where the namespace child moves itself once init is
	// born: the union filesystem's server must not count against the
	// container's limits (a pids limit would stop the Go runtime from
	// making a thread, a memory limit would OOM-kill the server).
	Outside() string
}

const cgroupRoot = "/sys/fs/cgroup"

// CgroupConfig chooses the way to a delegated subtree; the zero value
// picks one automatically.
type CgroupConfig struct {
	// Manager is "systemd", "cgroupfs" or "" (systemd when the user's
	// systemd instance answers on D-Bus, else cgroupfs when the current
	// cgroup is writable).
	Manager string
	// Parent is, for cgroupfs, the cgroup (a path below /sys/fs/cgroup)
	// to create containers under instead of the current one.
	Parent string
}

// cgroupPlan is what planCgroup found: how the container's cgroup will
// be made. It is decided before the container exists, so that a host that
// cannot give the limits fails the run before anything is created.
type cgroupPlan struct {
	res     resources
	manager string // "systemd", "cgroupfs" or "" (no cgroup)
	base    string // cgroupfs: the delegated cgroup the containers go under
}

// planCgroup parses the limits and finds a delegated cgroup v2 subtree.
// A run that asks for limits and cannot have them fails (exit 125) with
// the missing piece and its fix; one that asks for none runs without a
// cgroup where there is no delegation, as on hybrid hosts.
func planCgroup(l Limits, cfg CgroupConfig) (cgroupPlan, string, error) {
	res, err := parseLimits(l)
	if err != nil {
		return cgroupPlan{}, "", exitErr(125, "%w", err)
	}
	h := probeCgroupHost(cfg)
	if h.manager == "" {
		if !res.any() {
			return cgroupPlan{}, cgroupWarning(h), nil
		}
		return cgroupPlan{}, "", exitErr(125, "%s needs a delegated cgroup v2 subtree, and there is none: %s (strata doctor checks it all)", strings.Join(res.flags, ", "), h.why)
	}
	var missing []string
	for _, c := range res.controllers() {
		if !h.controllers[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return cgroupPlan{}, "", exitErr(125, "%s needs the cgroup v2 controllers %s, which are not delegated to you (%s offers: %s); %s",
			strings.Join(res.flags, ", "), strings.Join(missing, " "), h.where, h.controllerList(), h.delegateFix(missing))
	}
	return cgroupPlan{res: res, manager: h.manager, base: h.base}, "", nil
}

// create makes the container's cgroup. rdir is its runtime dir: a
// cgroupfs cgroup is recorded there, so that the next strata removes it
// when this one dies by SIGKILL (systemd collects its scopes itself).
//
// A run that asked for no limit gets a cgroup where one can be had (for
// strata stats and the OOM message) but runs without one, as before,
// where making it fails.
func (p cgroupPlan) create(id, rdir string) (Cgroup, error) {
	var cg Cgroup
	var err error
	switch p.manager {
	case "cgroupfs":
		cg, err = newFSCgroup(p.base, id, rdir, p.res)
	case "systemd":
		cg, err = newSystemdCgroup(id, rdir, p.res)
	default:
		return noCgroup{}, nil
	}
	if err != nil {
		if !p.res.any() {
			return noCgroup{}, nil
		}
		return nil, err
	}
	return cg, nil
}

// oomMessage tells the user that the kernel's OOM killer, not the
// command, ended the container (or one of its processes).
func oomMessage(code, kills int, l Limits) string {
	limit := ""
	if l.Memory != "" {
		limit = "--memory " + l.Memory + "; "
	}
	if code == 137 {
		return fmt.Sprintf("the container was killed by the kernel's OOM killer: it reached its memory limit (%smemory.events oom_kill %d)", limit, kills)
	}
	return fmt.Sprintf("the kernel's OOM killer killed %d process(es) in the container: it reached its memory limit (%smemory.events oom_kill %d)", kills, limit, kills)
}

type noCgroup struct{}

func (noCgroup) Join(int) error  { return nil }
func (noCgroup) Close() error    { return nil }
func (noCgroup) OOMKills() int   { return 0 }
func (noCgroup) Path() string    { return "" }
func (noCgroup) Outside() string { return "" }

func cgroupV2Unified() bool {
	var st unix.Statfs_t
	return unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// cgroupWarning says once per login session (a marker in the runtime dir)
// that containers run without limits on a host without cgroup v2.
func cgroupWarning(h cgroupHost) string {
	if h.unified {
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
	return "this host has no unified cgroup v2 hierarchy (v1 or hybrid): containers run without resource limits (see strata doctor)"
}

// currentCgroup is this process's cgroup v2 path, e.g. "/user.slice/x".
func currentCgroup() (string, error) {
	return procCgroup("self")
}

func procCgroup(pid string) (string, error) {
	f, err := os.Open("/proc/" + pid + "/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("cgroup /proc/%s/cgroup: no cgroup v2 line", pid)
}

func readControllers(dir string) (map[string]bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, c := range strings.Fields(string(data)) {
		out[c] = true
	}
	return out, nil
}

// removeCgroup kills what is left in dir, waits for it to empty and
// removes it. The kernel refuses rmdir while a dying process is still
// counted, so it retries for a while.
func removeCgroup(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// cgroup.kill (Linux 5.14) SIGKILLs every process below, even ones
	// that escaped the container's PID namespace by some means.
	os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	var err error
	for i := 0; i < 200; i++ {
		if err = unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("cgroup %s: remove: %w", dir, err)
}

// readOOMKills is memory.events' oom_kill of the cgroup at dir.
func readOOMKills(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, "memory.events"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// cgroupMarker is the file in a runtime dir naming a cgroupfs cgroup.
const cgroupMarker = "cgroup"

// removeStaleCgroup removes the cgroup a dead container's runtime dir
// names. Only a strata-<id> cgroup below /sys/fs/cgroup is touched.
func removeStaleCgroup(rdir string) {
	data, err := os.ReadFile(filepath.Join(rdir, cgroupMarker))
	if err != nil {
		return
	}
	dir := filepath.Clean(strings.TrimSpace(string(data)))
	if !strings.HasPrefix(dir, cgroupRoot+"/") || filepath.Base(dir) != "strata-"+filepath.Base(rdir) {
		return
	}
	removeCgroup(dir)
}

// CgroupUsage is what a running container's cgroup says about it.
type CgroupUsage struct {
	CPUUsec     uint64 // cpu.stat usage_usec
	Memory      uint64 // memory.current
	MemoryLimit uint64 // memory.max; 0 when unlimited
	Pids        uint64 // pids.current
}

// Usage reads the cgroup of the running container id; ok is false when
// it has none (no delegation, or not running).
func Usage(id string) (u CgroupUsage, ok bool, err error) {
	run, err := RuntimeDir()
	if err != nil {
		return u, false, err
	}
	rdir := filepath.Join(run, id)
	if !isRunning(rdir) {
		return u, false, nil
	}
	data, err := os.ReadFile(filepath.Join(rdir, cgroupMarker))
	if err != nil {
		return u, false, nil
	}
	dir := strings.TrimSpace(string(data))
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	num := func(s string) uint64 { n, _ := strconv.ParseUint(s, 10, 64); return n }
	if _, err := os.Stat(dir); err != nil {
		return u, false, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	for _, line := range strings.Split(read("cpu.stat"), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			u.CPUUsec = num(v)
		}
	}
	u.Memory = num(read("memory.current"))
	u.MemoryLimit = num(read("memory.max")) // "max" reads as 0
	u.Pids = num(read("pids.current"))
	return u, true, nil
}

// leaveCgroup moves the calling process (the namespace child, root in
// its user namespace, which maps it to the owner of the delegated
// cgroups) into dir. Best effort: staying inside only means the server
// shares the container's limits.
func leaveCgroup(dir string) {
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("0"), 0)
}
