package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/unionfs"
	"github.com/strata-run/strata/unionfs/mounts"
)

// readyFdEnv names the fd on which a background mount reports that it is
// serving ("ok") or why it failed.
const readyFdEnv = "STRATA_MOUNT_READY_FD"

// mountOptionsEnv: see mountFlags.unionOptions.
const mountOptionsEnv = "STRATA_MOUNT_OPTIONS"

type mountFlags struct {
	options    []string
	lowers     []string
	upper      string
	work       string
	readOnly   bool
	foreground bool
}

// mountRequest is what `strata mount` was asked to do.
type mountRequest struct {
	union      unionfs.Options
	mountpoint string
	foreground bool
}

// newMountCmd returns `strata mount`; mount does the work (runMount, or a
// stand-in when a test checks the flags).
func newMountCmd(mount func(*cobra.Command, mountRequest) error) *cobra.Command {
	var f mountFlags
	cmd := &cobra.Command{
		Use:   "mount [-o lowerdir=A:B,upperdir=U,workdir=W] [--lower A --upper U --work W] MNT",
		Short: "Mount a union of layers at MNT",
		Long: `Mount a union of read-only lower directories and one writable upper
directory at MNT. Lower dirs are listed top first, as overlayfs lists them.
The upper dir, written as kernel overlayfs writes it, can later be mounted
with mount -t overlay, and the reverse.

strata mount accepts the arguments fuse-overlayfs accepts, so
containers-storage's mount_program can point at it. It returns once the
mount serves, and keeps serving in the background; -f stays in the
foreground. As root it mounts with mount(2); as an ordinary user it mounts
through fusermount3 (package fuse3), which needs /dev/fuse to be usable.

Speed switches (for measurements): -o nopassthrough, nokeepcache,
nocachereaddir, nosplice, lowertimeout=DURATION, uppertimeout=DURATION.`,
		Example: `  strata mount -o lowerdir=/l1:/l2,upperdir=/u,workdir=/w /mnt
  strata mount --lower /l1 --lower /l2 --upper /u --work /w /mnt
  strata mount --read-only --lower /rootfs /mnt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.unionOptions()
			if err != nil {
				return err
			}
			return mount(cmd, mountRequest{union: opts, mountpoint: args[0], foreground: f.foreground})
		},
	}
	cmd.Flags().StringArrayVarP(&f.options, "options", "o", nil, "overlayfs-style options (lowerdir=, upperdir=, workdir=, ...)")
	cmd.Flags().StringArrayVar(&f.lowers, "lower", nil, "lower dir (repeat, top first)")
	cmd.Flags().StringVar(&f.upper, "upper", "", "upper (writable) dir")
	cmd.Flags().StringVar(&f.work, "work", "", "work dir, on the same filesystem as --upper")
	cmd.Flags().BoolVar(&f.readOnly, "read-only", false, "mount the lowers read-only, without an upper")
	cmd.Flags().BoolVarP(&f.foreground, "foreground", "f", false, "serve in the foreground until unmounted")
	return cmd
}

func (f mountFlags) unionOptions() (unionfs.Options, error) {
	opts := unionfs.Options{Speed: unionfs.DefaultSpeed}
	// STRATA_MOUNT_OPTIONS adds -o options after the command line's: a
	// way to run a test suite or a benchmark whole in another speed mode
	// (e.g. "nozeroopendir").
	for _, o := range append(f.options, os.Getenv(mountOptionsEnv)) {
		if err := unionfs.ParseOverlayOptions(&opts, o); err != nil {
			return opts, err
		}
	}
	for _, l := range f.lowers {
		opts.Lowers = append(opts.Lowers, strings.Split(l, ":")...)
	}
	if f.upper != "" {
		opts.Upper = f.upper
	}
	if f.work != "" {
		opts.Work = f.work
	}
	if f.readOnly {
		opts.Upper, opts.Work = "", ""
	}
	opts.DirectMount = os.Geteuid() == 0
	opts.Logger = slog.Default()
	return opts, nil
}

func runMount(cmd *cobra.Command, r mountRequest) error {
	if err := r.union.Validate(); err != nil {
		return err
	}
	if !r.foreground {
		return mountInBackground(cmd)
	}
	srv, err := unionfs.Mount(r.mountpoint, r.union)
	report := readyReporter()
	if err != nil {
		report(err)
		return err
	}
	report(nil)
	serveRequestStats(srv)
	// Not the shared context: every signal, not only the first, tries to
	// take the mount down again, detaching it if it is busy.
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		for range sig {
			// A busy mount cannot go at once: detach it, and serve the
			// files still open until they close; Wait returns then.
			if err := mounts.Unmount(srv.Mountpoint(), false); err != nil {
				slog.Warn("mount busy, detaching it", "mountpoint", srv.Mountpoint(), "err", err)
				if err := mounts.Unmount(srv.Mountpoint(), true); err != nil {
					slog.Error("detach failed", "mountpoint", srv.Mountpoint(), "err", err)
				}
			}
		}
	}()
	srv.Wait()
	return nil
}

// readyReporter returns how to tell a waiting parent that mounting is
// done: a no-op in a plain foreground run.
func readyReporter() func(error) {
	fdStr := os.Getenv(readyFdEnv)
	if fdStr == "" {
		return func(error) {}
	}
	os.Unsetenv(readyFdEnv)
	var fd int
	fmt.Sscan(fdStr, &fd)
	w := os.NewFile(uintptr(fd), "ready")
	return func(err error) {
		if err != nil {
			fmt.Fprintln(w, err)
		} else {
			fmt.Fprintln(w, "ok")
		}
		w.Close()
		if err == nil {
			// The parent is gone; keep stdio from holding its terminal.
			devnull, _ := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			syscall.Dup2(int(devnull.Fd()), 0)
			syscall.Dup2(int(devnull.Fd()), 1)
			syscall.Dup2(int(devnull.Fd()), 2)
		}
	}
}

// mountInBackground re-runs this command with -f in a new session and
// waits until it reports that the mount serves, or why not.
func mountInBackground(cmd *cobra.Command) error {
	// The parent only waits for the child's word: a signal ends it at
	// once, and the child, in its own session, goes on.
	signal.Reset(os.Interrupt, syscall.SIGTERM)
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	args := append([]string{}, os.Args[1:]...)
	args = append(args, "--foreground")
	child := exec.Command("/proc/self/exe", args...)
	child.Env = append(os.Environ(), readyFdEnv+"=3")
	child.ExtraFiles = []*os.File{w}
	child.Stderr = cmd.ErrOrStderr()
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return fmt.Errorf("start mount server: %w", err)
	}
	w.Close()
	line, rerr := bufio.NewReader(r).ReadString('\n')
	r.Close()
	line = strings.TrimSpace(line)
	if line == "ok" {
		child.Process.Release()
		return nil
	}
	child.Wait()
	if rerr != nil && rerr != io.EOF || line == "" {
		return fmt.Errorf("mount server exited before the mount was ready")
	}
	// The child already printed the error on the shared stderr.
	return withExitCode(1, nil)
}
