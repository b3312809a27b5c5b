package rootless

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/strata-run/strata/netns"
	"github.com/strata-run/strata/unionfs"
	"golang.org/x/sys/unix"
)

// Child is the entry point of the re-exec in the new user and mount
// namespaces, root inside. It serves the union filesystem, starts init in
// further namespaces, relays signals and returns init's exit status.
// Failures before the command runs go to the parent on the error pipe.
func Child() int {
	runtime.LockOSThread() // Pdeathsig of init follows this thread
	openErrPipe()
	spec, err := readSpec()
	if err != nil {
		return reportError(err)
	}
	if spec.Mode == modeRemove {
		if err := os.RemoveAll(spec.RemovePath); err != nil {
			return reportError(fmt.Errorf("remove %s: %w", spec.RemovePath, err))
		}
		return 0
	}
	code, err := runChild(spec)
	if err != nil {
		return reportError(err)
	}
	return code
}

func runChild(spec *Spec) (int, error) {
	// Nothing mounted here may leak back to the host, and host mount
	// events should not reach into the container.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return 125, fmt.Errorf("make / a slave mount: %w", err)
	}
	if spec.NetNS {
		if err := loopbackUp(); err != nil {
			return 125, err
		}
	}
	if len(spec.Net) > 0 {
		stop, err := netns.Child(spec.Net)
		if err != nil {
			return 125, err
		}
		defer stop()
	}
	srv, err := mountRootfs(spec)
	if err != nil {
		return 125, err
	}
	code, err := runInit(spec)
	// The server's mount ns holds no other reference once init's PID ns is
	// gone, so unmount returns promptly; bounded anyway, since exit alone
	// also tears the mount down.
	done := make(chan struct{})
	go func() { srv.Unmount(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	if err == nil && spec.Remove {
		os.RemoveAll(spec.ContainerDir)
	}
	return code, err
}

type rootfsServer interface{ Unmount() error }

func mountRootfs(spec *Spec) (rootfsServer, error) {
	srv, err := unionfs.Mount(spec.Rootfs, unionfs.Options{
		Lowers:      append([]string{}, spec.Lowers...),
		Upper:       spec.Upper,
		Work:        spec.Work,
		DirectMount: true,
		// Container users other than root must reach the files too; in a
		// user namespace the kernel limits allow_other to its descendants.
		AllowOther: true,
		FsName:     "strata",
		Speed:      unionfs.DefaultSpeed,
	})
	if err != nil {
		return nil, fmt.Errorf("mount the container's root filesystem at %s: %w", spec.Rootfs, err)
	}
	return srv, nil
}

// runInit starts init in new mount, PID, UTS, IPC and cgroup namespaces
// and waits for it.
func runInit(spec *Spec) (int, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return 125, err
	}
	extra := []*os.File{specR, errPipe}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"strata-init"},
		Env:        []string{EnvInit + "=1"},
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: extra,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS |
				syscall.CLONE_NEWIPC | syscall.CLONE_NEWCGROUP,
			Pdeathsig: syscall.SIGKILL,
			Setsid:    true, // the pty, with -t, becomes its terminal
		},
	}
	if spec.TTY {
		cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(consoleFD, "console"))
	}
	// The FUSE device (go-fuse opens it without O_CLOEXEC) and anything
	// strata inherited stay here; init gets stdio and ExtraFiles only.
	if err := closeOnExecAbove(2); err != nil {
		return 125, err
	}
	relay := catchForwarded()
	defer relay.stop()
	err = cmd.Start()
	if spec.TTY {
		cmd.ExtraFiles[2].Close()
	}
	if err != nil {
		specR.Close()
		specW.Close()
		return 125, fmt.Errorf("start container init: %w", err)
	}
	specR.Close()
	if spec.ServerCgroup != "" {
		leaveCgroup(spec.ServerCgroup)
	}
	// Only init reports from here on; the parent's EOF on the error pipe
	// then means the command is running.
	closeErrPipe()
	if err := writeSpec(specW, spec); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return 125, err
	}
	relay.to(cmd.Process)
	return waitCode(cmd.Wait(), "container init")
}
