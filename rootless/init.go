package rootless

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Init is the entry point of the container's first process: PID 1 of its
// own PID namespace, root of the user namespace, in a mount namespace of
// its own. It builds the container's view, becomes the container user and
// execs the command; with spec.Init it stays as a minimal reaping PID 1
// instead. It returns the exit code to use: after a setup failure (the
// error has gone to the parent then), or with --init when the command ends.
func Init() int {
	// Credentials, capabilities and the seccomp filter are per thread until
	// execve; everything below happens on this one, which then execs the
	// command or, with --init, forks it.
	runtime.LockOSThread()
	openErrPipe()
	spec, err := readSpec()
	if err != nil {
		return reportError(err)
	}
	err = initContainer(spec)
	return reportError(err)
}

func initContainer(spec *Spec) error {
	unix.Umask(0o022) // runc's default, whatever strata's caller had
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	// A bind of the rootfs onto itself, so what we mount below it and the
	// read-only flag belong to this mount namespace's own mount.
	if err := unix.Mount(spec.Rootfs, spec.Rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return mountErr(spec.Rootfs, spec.Rootfs, err)
	}
	if err := mountSpecial(spec.Rootfs, spec.NetNS); err != nil {
		return err
	}
	if spec.Cgroup {
		if err := mountCgroup(spec.Rootfs); err != nil {
			return err
		}
	}
	if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
		return fmt.Errorf("set hostname %q: %w", spec.Hostname, err)
	}
	fds, err := openVolumes(spec.Mounts)
	if err != nil {
		return err
	}
	if err := pivotRoot(spec.Rootfs); err != nil {
		return err
	}
	if err := bindVolumes(spec.Mounts, fds); err != nil {
		return err
	}
	if err := maskAndProtect(); err != nil {
		return err
	}
	user, err := resolveUser(spec.User)
	if err != nil {
		return err
	}
	env := spec.Env
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+user.home)
	}
	if fi, err := os.Stat(spec.WorkingDir); err != nil {
		// Docker creates a missing working directory.
		if err := os.MkdirAll(spec.WorkingDir, 0o755); err != nil {
			return fmt.Errorf("working directory %s: %w", spec.WorkingDir, err)
		}
	} else if !fi.IsDir() {
		return fmt.Errorf("working directory %s: not a directory", spec.WorkingDir)
	}
	if spec.ReadOnly {
		if err := remountRO("/"); err != nil {
			return err
		}
	}
	path, err := lookPath(spec.Args[0], env)
	if err != nil {
		return err
	}
	setgroupsOK := true
	if data, err := os.ReadFile("/proc/self/setgroups"); err == nil && strings.TrimSpace(string(data)) == "deny" {
		setgroupsOK = false
	}
	if spec.TTY {
		if err := setupConsole(user); err != nil {
			return err
		}
	}
	// Nothing but stdio may reach the command: not the FUSE device the
	// child opened, nor whatever fd strata itself inherited.
	if err := closeOnExecAbove(2); err != nil {
		return err
	}
	if spec.Init {
		return reaper(spec, path, env, user, setgroupsOK)
	}
	if err := confine(spec, user, setgroupsOK, thisThread); err != nil {
		return err
	}
	if err := unix.Chdir(spec.WorkingDir); err != nil {
		return exitErr(125, "working directory %s: %w", spec.WorkingDir, err)
	}
	err = unix.Exec(path, spec.Args, env)
	return execError(spec.Args[0], err)
}

// confine is the one place the container's limits go on: user,
// capabilities, no_new_privs, seccomp. Both ways of starting the command
// pass through it: init itself right before the exec, or the --init
// reaper before it forks the command, which inherits all of it.
func confine(spec *Spec, u execUser, setgroupsOK bool, scope sysScope) error {
	if err := applyCaps(u, setgroupsOK, spec.Caps, scope); err != nil {
		return err
	}
	// The kernel clears the parent-death signal when the uid changes; arm
	// it again so the command still dies with the namespace child.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("set parent-death signal: %w", err)
	}
	if e := scope.call(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return scope.err("set no_new_privs", e)
	}
	if spec.Seccomp {
		if err := loadSeccomp(spec.Caps, scope == allThreads); err != nil {
			return err
		}
	}
	return nil
}

// switchUser changes the ids with raw syscalls in the given scope: Go's
// wrappers always switch every thread, which the exec path does not need.
func switchUser(u execUser, setgroupsOK bool, scope sysScope) error {
	if setgroupsOK {
		gs := make([]uint32, len(u.groups))
		for i, g := range u.groups {
			gs[i] = uint32(g)
		}
		var e syscall.Errno
		if len(gs) > 0 {
			e = scope.call(unix.SYS_SETGROUPS, uintptr(len(gs)), uintptr(unsafe.Pointer(&gs[0])), 0)
		} else {
			e = scope.call(unix.SYS_SETGROUPS, 0, 0, 0)
		}
		if e != 0 {
			return scope.err(fmt.Sprintf("setgroups %v", u.groups), e)
		}
	}
	if e := scope.call(unix.SYS_SETRESGID, uintptr(u.gid), uintptr(u.gid), uintptr(u.gid)); e != 0 {
		return unmappedErr("group", u.gid, scope, e)
	}
	if e := scope.call(unix.SYS_SETRESUID, uintptr(u.uid), uintptr(u.uid), uintptr(u.uid)); e != 0 {
		return unmappedErr("user", u.uid, scope, e)
	}
	return nil
}

func closeOnExecAbove(min int) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list open files: %w", err)
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > min {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

func unmappedErr(kind string, id int, scope sysScope, e syscall.Errno) error {
	if e == unix.EINVAL {
		return exitErr(125, "%s id %d is not mapped into the container's user namespace (add a range for your user to /etc/subuid and /etc/subgid)", kind, id)
	}
	return scope.err(fmt.Sprintf("switch to %s id %d", kind, id), e)
}

// lookPath finds the command in the container's PATH, with Docker's exit
// codes: 127 when it is not there, 126 when it is there but not runnable.
func lookPath(name string, env []string) (string, error) {
	check := func(p string) error {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return os.ErrPermission
		}
		return nil
	}
	if strings.Contains(name, "/") {
		err := check(name)
		switch {
		case err == nil:
			return name, nil
		case errors.Is(err, os.ErrPermission):
			return "", exitErr(126, "exec %s: permission denied (not an executable file)", name)
		default:
			return "", exitErr(127, "exec %s: no such file or directory in the container", name)
		}
	}
	path := strings.TrimPrefix(defaultPath, "PATH=")
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			path = e[5:]
		}
	}
	denied := ""
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		err := check(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, os.ErrPermission) && denied == "" {
			denied = p
		}
	}
	if denied != "" {
		return "", exitErr(126, "exec %s: permission denied", denied)
	}
	return "", exitErr(127, "exec %q: executable file not found in $PATH", name)
}

func execError(name string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return exitErr(127, "exec %s: %w", name, err)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOEXEC), errors.Is(err, unix.EPERM):
		return exitErr(126, "exec %s: %w", name, err)
	}
	return exitErr(126, "exec %s: %w", name, err)
}

// reaper is --init: PID 1 stays strata and starts the command as a child,
// reaping every orphan until the command exits and forwarding signals to
// it. Like Docker's init it runs as the container user, confined exactly
// like the command (on every thread, see confine), and the command forked
// from it inherits that state instead of being set up on its own.
func reaper(spec *Spec, path string, env []string, u execUser, setgroupsOK bool) error {
	if err := confine(spec, u, setgroupsOK, allThreads); err != nil {
		return err
	}
	// Its /proc/1/exe is the strata binary on the host: not dumpable, so
	// only CAP_SYS_PTRACE reaches that, its memory and its fds.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("make init not dumpable: %w", err)
	}
	if err := unix.Chdir(spec.WorkingDir); err != nil {
		return exitErr(125, "working directory %s: %w", spec.WorkingDir, err)
	}
	name := []byte("strata-init\x00")
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	attr := &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			// Its own process group in the foreground of the terminal, so
			// ^C reaches it once, from the terminal, and not via us too.
			Setpgid:    true,
			Foreground: spec.TTY,
			Ctty:       0,
		},
	}
	pid, err := syscall.ForkExec(path, spec.Args, attr)
	if err != nil {
		return execError(spec.Args[0], err)
	}
	closeErrPipe()
	for {
		if s := <-sigs; s != syscall.SIGCHLD {
			// The terminal tells the foreground group of SIGWINCH itself;
			// SIGURG is Go's preemption.
			if s != syscall.SIGWINCH && s != syscall.SIGURG {
				unix.Kill(pid, s.(syscall.Signal))
			}
			continue
		}
		for {
			var ws unix.WaitStatus
			got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err != nil || got <= 0 {
				break
			}
			if got == pid {
				// The error pipe is closed by now, so this only sets
				// PID 1's exit status; the namespace's other processes
				// die with it.
				code := exitStatus(syscall.WaitStatus(ws))
				return &ExitError{Code: code, Err: fmt.Errorf("command exited with status %d", code)}
			}
		}
	}
}
