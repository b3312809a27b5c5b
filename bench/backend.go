package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strata-run/strata/unionfs"
	"github.com/strata-run/strata/unionfs/mounts"
	"golang.org/x/sys/unix"
)

// BackendSpec names one way of presenting the lower: a kind and, for
// strata, the extra mount options that switch one speed feature off.
type BackendSpec struct {
	Name    string   `json:"name"`
	Kind    string   `json:"kind"` // native, kernel, strata, fuse-overlayfs
	Options []string `json:"options,omitempty"`
	// Off names the speed feature this variant switches off; On one it
	// switches on that is off by default.
	Off string `json:"off,omitempty"`
	On  string `json:"on,omitempty"`
}

// strataVariants pairs each speed feature with the mount option that
// switches it off; the names are the ones `strata mount -o` accepts.
var strataVariants = []struct{ off, option string }{
	{"passthrough", "nopassthrough"},
	{"keep_cache", "nokeepcache"},
	{"cache_readdir", "nocachereaddir"},
	{"splice", "nosplice"},
	{"lower entry/attr timeout", "lowertimeout=0"},
	{"zero-message opendir", "nozeroopendir"},
}

// AllBackends lists every backend in table order.
func AllBackends() []BackendSpec {
	out := []BackendSpec{
		{Name: "native", Kind: "native"},
		{Name: "kernel", Kind: "kernel"},
		{Name: "strata", Kind: "strata"},
	}
	for _, v := range strataVariants {
		name := "strata-" + strings.ReplaceAll(v.option, "=", "")
		out = append(out, BackendSpec{Name: name, Kind: "strata", Options: []string{v.option}, Off: v.off})
	}
	// The writeback cache is off by default, so its variant turns it on.
	if unionfs.DefaultSpeed.Writeback {
		out = append(out, BackendSpec{Name: "strata-nowriteback", Kind: "strata", Options: []string{"nowriteback"}, Off: "writeback cache"})
	} else {
		out = append(out, BackendSpec{Name: "strata-writeback", Kind: "strata", Options: []string{"writeback"}, On: "writeback cache"})
	}
	// Opens are chosen per mount by default (passthrough as real root,
	// zero-message elsewhere): each variant forces one way everywhere.
	out = append(out, BackendSpec{Name: "strata-zeroopen", Kind: "strata", Options: []string{"zeroopen"}, On: "zero-message opens everywhere"},
		BackendSpec{Name: "strata-nozeroopen", Kind: "strata", Options: []string{"nozeroopen"}, Off: "zero-message opens"})
	// The INIT flags that only the kernel's caching needs, off together.
	out = append(out, BackendSpec{Name: "strata-noinitcaps", Kind: "strata",
		Options: []string{"noacl", "nokillprivv2", "noreaddirplusauto"}, Off: "POSIX_ACL, HANDLE_KILLPRIV_V2, READDIRPLUS_AUTO"})
	return append(out, BackendSpec{Name: "fuse-overlayfs", Kind: "fuse-overlayfs"})
}

// driver mounts one backend for one run and takes it down again.
type driver interface {
	// Setup presents lowers (top first) with upper and work at mnt and
	// returns the directory the workload runs in.
	Setup(lowers []string, upper, work, mnt string) (string, error)
	// PID is the userspace server's process, 0 for in-kernel backends.
	PID() int
	MountOptions() string
	Teardown() error
}

func newDriver(spec BackendSpec, strataBin string, rootless bool, nativeWrites []string) driver {
	switch spec.Kind {
	case "native":
		return &nativeDriver{writes: nativeWrites}
	case "kernel":
		return &kernelDriver{userxattr: rootless}
	case "strata":
		return &strataDriver{fuseDriver: &fuseDriver{bin: strataBin, strata: true, extra: spec.Options}}
	default:
		return &fuseDriver{bin: "fuse-overlayfs"}
	}
}

// nativeDriver runs the workload on the lower itself: the physical limit.
// A workload that writes gets a private copy made of hard links, with the
// files it appends to copied for real, so the cached lower never changes.
type nativeDriver struct {
	writes []string // nil: read-only workload, use the lower directly
	root   string
}

func (d *nativeDriver) Setup(lowers []string, upper, work, mnt string) (string, error) {
	if d.writes == nil {
		return lowers[0], nil
	}
	d.root = filepath.Join(upper, "native")
	if err := run("cp", "-al", lowers[0], d.root); err != nil {
		return "", err
	}
	for _, w := range d.writes {
		if err := copyFile(filepath.Join(lowers[0], w), filepath.Join(d.root, w)); err != nil {
			return "", err
		}
	}
	return d.root, nil
}
func (d *nativeDriver) PID() int             { return 0 }
func (d *nativeDriver) MountOptions() string { return "" }
func (d *nativeDriver) Teardown() error      { return nil }

// copyFile replaces the hard link dst with a real copy of src, keeping
// mode, owner and times, using copy_file_range (reflink where it can).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("copy %s: %w", dst, err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", dst, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		os.Lchown(dst, int(st.Uid), int(st.Gid))
	}
	os.Chmod(dst, fi.Mode())
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}

type kernelDriver struct {
	userxattr bool
	mnt, data string
}

func (d *kernelDriver) Setup(lowers []string, upper, work, mnt string) (string, error) {
	km := unionfs.PlanKernelOverlay(unionfs.Options{Lowers: lowers, Upper: upper, Work: work, UserXattr: d.userxattr})
	d.data = km.Data
	if err := km.Mount(mnt); err != nil {
		return "", fmt.Errorf("mount -t overlay -o %s %s: %w", km.Data, mnt, err)
	}
	d.mnt = mnt
	return mnt, nil
}
func (d *kernelDriver) PID() int             { return 0 }
func (d *kernelDriver) MountOptions() string { return d.data }
func (d *kernelDriver) Teardown() error      { return unmount(d.mnt) }

// fuseDriver runs strata or fuse-overlayfs as its own process in the
// foreground, so the benchmark knows the server's PID and its memory.
type fuseDriver struct {
	bin    string
	strata bool
	extra  []string
	env    []string // added to the server's environment
	opts   string
	mnt    string
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan error
}

func (d *fuseDriver) Setup(lowers []string, upper, work, mnt string) (string, error) {
	esc := make([]string, len(lowers))
	for i, l := range lowers {
		esc[i] = strings.ReplaceAll(l, ":", `\:`)
	}
	o := append([]string{"lowerdir=" + strings.Join(esc, ":"), "upperdir=" + upper, "workdir=" + work}, d.extra...)
	d.opts = strings.Join(o, ",")
	var args []string
	if d.strata {
		args = []string{"mount", "-f", "-o", d.opts, mnt}
	} else {
		args = []string{"-f", "-o", d.opts, mnt}
	}
	d.cmd = exec.Command(d.bin, args...)
	if d.env != nil {
		d.cmd.Env = append(os.Environ(), d.env...)
	}
	d.cmd.Stderr = &d.stderr
	d.cmd.Stdout = &d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", d.bin, err)
	}
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.cmd.Wait() }()
	parent := mounts.Dev(filepath.Dir(mnt))
	deadline := time.Now().Add(15 * time.Second)
	for mounts.Dev(mnt) == parent {
		select {
		case err := <-d.exited:
			d.exited <- err
			return "", fmt.Errorf("%s %s exited before mounting: %v: %s", filepath.Base(d.bin),
				strings.Join(args, " "), err, strings.TrimSpace(d.stderr.String()))
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.kill()
			return "", fmt.Errorf("%s: mount %s did not appear within 15s: %s", filepath.Base(d.bin), mnt,
				strings.TrimSpace(d.stderr.String()))
		}
	}
	d.mnt = mnt
	return mnt, nil
}

func (d *fuseDriver) PID() int {
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}
func (d *fuseDriver) MountOptions() string { return d.opts }

func (d *fuseDriver) Teardown() error {
	if d.cmd == nil {
		return nil
	}
	var err error
	if d.mnt != "" {
		err = unmount(d.mnt)
	}
	select {
	case werr := <-d.exited:
		if err == nil && werr != nil && !isSignal(werr) {
			err = fmt.Errorf("%s exited: %v: %s", filepath.Base(d.bin), werr, strings.TrimSpace(d.stderr.String()))
		}
	case <-time.After(60 * time.Second):
		d.kill()
		err = errors.Join(err, fmt.Errorf("%s did not exit within 60s of unmount", filepath.Base(d.bin)))
	}
	return err
}

func (d *fuseDriver) kill() {
	d.cmd.Process.Kill()
	<-d.exited
}

func isSignal(err error) bool {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			return ws.Signaled()
		}
	}
	return false
}

// unmount takes mnt down. A mount can stay busy for a moment after the
// workload (the kernel finishes releasing files in the background), so it
// waits before detaching, which would leave a FUSE server waiting. A mount
// already gone, or detached in the end, counts as taken down.
func unmount(mnt string) error {
	if mnt == "" {
		return nil
	}
	err := mounts.UnmountWait(mnt, 2*time.Second)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, mounts.ErrDetached) {
		return nil
	}
	return err
}

// peakRSS reads the high-water mark of a process's resident memory, in KiB.
func peakRSS(pid int) int64 { return procStatusKiB(pid, "VmHWM:") }

func procStatusKiB(pid int, field string) int64 {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
