package rootless

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// idPlan is how ids map into the user namespace.
type idPlan struct {
	uids, gids []IDMap
	// helpers: write the maps with newuidmap/newgidmap (setuid, honour
	// /etc/subuid). Otherwise the parent writes them itself, which the
	// kernel allows for root, or for a single line mapping one's own id.
	helpers bool
	// single: only one id is mapped; setgroups is denied.
	single  bool
	warning string
}

type subRange struct{ start, count int }

// subIDs reads the ranges file (/etc/subuid or /etc/subgid) grants to the
// user, matched by name or by numeric id, as shadow-utils does.
func subIDs(file, name string, id int) []subRange {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []subRange
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(parts) != 3 || (parts[0] != name && parts[0] != strconv.Itoa(id)) {
			continue
		}
		start, err1 := strconv.Atoi(parts[1])
		count, err2 := strconv.Atoi(parts[2])
		if err1 == nil && err2 == nil && count > 0 {
			out = append(out, subRange{start, count})
		}
	}
	return out
}

// planIDs maps the user to root (or, with keepID, to its own id) and the
// subordinate ranges to the ids after it.
func planIDs(keepID bool) (idPlan, error) {
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		// Real root: the identity map of every id. The container is still
		// in a user namespace, which keeps one code path for both.
		full := []IDMap{{0, 0, 1<<32 - 1}}
		return idPlan{uids: full, gids: full}, nil
	}
	name := strconv.Itoa(uid)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	subU := subIDs("/etc/subuid", name, uid)
	subG := subIDs("/etc/subgid", name, uid)
	if len(subU) == 0 || len(subG) == 0 {
		p := idPlan{single: true,
			warning: fmt.Sprintf("no subordinate ids for %s in /etc/subuid and /etc/subgid: only your own id is mapped (to root); add a range such as \"%s:100000:65536\" to both files for more", name, name)}
		if keepID {
			p.uids = []IDMap{{uid, uid, 1}}
			p.gids = []IDMap{{gid, gid, 1}}
		} else {
			p.uids = []IDMap{{0, uid, 1}}
			p.gids = []IDMap{{0, gid, 1}}
		}
		return p, nil
	}
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			return idPlan{}, fmt.Errorf("%s not found: install the uidmap package (apt-get install uidmap), which /etc/subuid ranges need", tool)
		}
	}
	u, err := buildMap(uid, subU, keepID)
	if err != nil {
		return idPlan{}, fmt.Errorf("/etc/subuid: %w", err)
	}
	g, err := buildMap(gid, subG, keepID)
	if err != nil {
		return idPlan{}, fmt.Errorf("/etc/subgid: %w", err)
	}
	return idPlan{uids: u, gids: g, helpers: true}, nil
}

func buildMap(own int, ranges []subRange, keepID bool) ([]IDMap, error) {
	if !keepID {
		m := []IDMap{{0, own, 1}}
		next := 1
		for _, r := range ranges {
			m = append(m, IDMap{next, r.start, r.count})
			next += r.count
		}
		return m, nil
	}
	// keep-id, as podman does: own id at itself, the subordinate ids filling
	// 0..own-1 and from own+1 on.
	var m []IDMap
	next := 0
	for _, r := range ranges {
		for r.count > 0 {
			if next == own {
				next++
			}
			n := r.count
			if next < own && next+n > own {
				n = own - next
			}
			m = append(m, IDMap{next, r.start, n})
			next += n
			r.start += n
			r.count -= n
		}
	}
	if next <= own {
		return nil, fmt.Errorf("--userns=keep-id needs more than %d subordinate ids", own)
	}
	return append(m, IDMap{own, own, 1}), nil
}

func toSys(m []IDMap) []syscall.SysProcIDMap {
	var out []syscall.SysProcIDMap
	for _, e := range m {
		out = append(out, syscall.SysProcIDMap{ContainerID: e.ContainerID, HostID: e.HostID, Size: e.Size})
	}
	return out
}

// writeMaps runs newuidmap/newgidmap on the child's pid.
func (p idPlan) writeMaps(pid int) error {
	for _, t := range []struct {
		tool string
		m    []IDMap
	}{{"newuidmap", p.uids}, {"newgidmap", p.gids}} {
		args := []string{strconv.Itoa(pid)}
		for _, e := range t.m {
			args = append(args, strconv.Itoa(e.ContainerID), strconv.Itoa(e.HostID), strconv.Itoa(e.Size))
		}
		if out, err := exec.Command(t.tool, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v: %s", t.tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// startChild re-execs strata into new user and mount namespaces (and a
// network namespace when netns) and maps ids. The child blocks reading its
// spec, so it cannot run before the maps are in place.
//
// prepare (may be nil) runs once the child exists and its ids are mapped,
// before it gets its spec: the place to join a cgroup or attach a network.
// extra become fds 4 and up: the error pipe, then the console socket.
func startChild(plan idPlan, spec *Spec, netns bool, stdio [3]*os.File, prepare func(pid int) error, extra ...*os.File) (*exec.Cmd, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer specR.Close()
	flags := uintptr(syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS)
	if netns {
		flags |= syscall.CLONE_NEWNET
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"strata-child"},
		Env:        []string{EnvChild + "=1"},
		Stdin:      stdio[0],
		Stdout:     stdio[1],
		Stderr:     stdio[2],
		ExtraFiles: append([]*os.File{specR}, extra...),
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: flags,
			Pdeathsig:  syscall.SIGKILL,
			// Its own session: terminal signals reach strata only, which
			// forwards them once.
			Setsid: true,
		},
	}
	// newuidmap writes the maps after the child has exec'ed; an exec as an
	// unmapped (or, with keep-id, non-zero) uid drops every capability, so
	// raise them all as ambient first: they survive the exec, and the
	// child keeps full power over its own namespaces.
	for c := 0; c <= lastCap(); c++ {
		cmd.SysProcAttr.AmbientCaps = append(cmd.SysProcAttr.AmbientCaps, uintptr(c))
	}
	if !plan.helpers {
		cmd.SysProcAttr.UidMappings = toSys(plan.uids)
		cmd.SysProcAttr.GidMappings = toSys(plan.gids)
		cmd.SysProcAttr.GidMappingsEnableSetgroups = !plan.single
	}
	if err := cmd.Start(); err != nil {
		specW.Close()
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("create user namespace: %w; user namespaces look disabled here: enable them (sysctl -w user.max_user_namespaces=15000, and kernel.unprivileged_userns_clone=1 or kernel.apparmor_restrict_unprivileged_userns=0 where present)", err)
		}
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	if plan.helpers {
		if err := plan.writeMaps(cmd.Process.Pid); err != nil {
			specW.Close()
			cmd.Process.Kill()
			cmd.Wait()
			return nil, err
		}
	}
	if prepare != nil {
		if err := prepare(cmd.Process.Pid); err != nil {
			specW.Close()
			cmd.Process.Kill()
			cmd.Wait()
			return nil, err
		}
	}
	if err := writeSpec(specW, spec); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	return cmd, nil
}

// removeTree deletes dir from inside a user namespace with the same id
// maps, because files a container created belong to subordinate ids the
// user cannot delete from outside.
func removeTree(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if os.Getuid() == 0 {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
		return nil
	}
	// A container that never ran holds only the user's own files; try the
	// plain way first, so a broken newuidmap cannot strand it.
	if os.RemoveAll(dir) == nil {
		return nil
	}
	plan, err := planIDs(false)
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	null, _ := os.Open(os.DevNull)
	defer null.Close()
	cmd, err := startChild(plan, &Spec{Mode: modeRemove, RemovePath: dir}, false, [3]*os.File{null, null, null}, nil, errW)
	errW.Close()
	if err != nil {
		errR.Close()
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	msg := readSetupError(errR)
	werr := cmd.Wait()
	if msg != nil {
		return fmt.Errorf("remove %s: %s", dir, msg.Msg)
	}
	if werr != nil {
		return fmt.Errorf("remove %s: %w", dir, werr)
	}
	return nil
}

// runInUserNS runs strata's re-exec entry env with args in a new user
// namespace mapped by plan, and waits for it. The entry calls waitMapped
// before it relies on its ids: newuidmap writes the maps only once the
// child exists.
func runInUserNS(ctx context.Context, plan idPlan, env string, args ...string) error {
	mappedR, mappedW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer mappedW.Close()
	cmd := exec.CommandContext(ctx, "/proc/self/exe", args...)
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.ExtraFiles = []*os.File{mappedR}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, Pdeathsig: syscall.SIGKILL}
	// The maps are written after the exec, which drops the capabilities
	// of a process whose uid is not yet mapped: ambient ones survive it
	// (as in startChild).
	for c := 0; c <= lastCap(); c++ {
		cmd.SysProcAttr.AmbientCaps = append(cmd.SysProcAttr.AmbientCaps, uintptr(c))
	}
	if !plan.helpers {
		cmd.SysProcAttr.UidMappings = toSys(plan.uids)
		cmd.SysProcAttr.GidMappings = toSys(plan.gids)
	}
	// Pdeathsig follows the thread that forked.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	mappedR.Close()
	if err != nil {
		return fmt.Errorf("start %s child: %w", env, err)
	}
	if plan.helpers {
		if err := plan.writeMaps(cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return err
		}
	}
	mappedW.Write([]byte{1})
	mappedW.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s child: %w: %s", env, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// waitMapped blocks until runInUserNS has written this process's id maps
// (fd 3 gets a byte); an EOF instead means the parent gave up.
func waitMapped() error {
	f := os.NewFile(3, "mapped")
	defer f.Close()
	var b [1]byte
	if n, _ := f.Read(b[:]); n != 1 {
		return fmt.Errorf("the parent did not map ids")
	}
	return nil
}
