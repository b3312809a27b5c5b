package difftest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-run/strata/unionfs"
	"github.com/strata-run/strata/unionfs/mounts"
)

// Stack is one union's directories.
type Stack struct {
	Lowers []string // top first
	Upper  string
	Work   string
	Mnt    string
}

// NewStack builds the layout's lowers and empty upper, work and mountpoint
// dirs under dir.
func NewStack(dir string, layout Layout) (Stack, error) {
	lowers, err := layout.Build(dir)
	if err != nil {
		return Stack{}, err
	}
	s := Stack{Lowers: lowers, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work"), Mnt: filepath.Join(dir, "mnt")}
	for _, d := range []string{s.Upper, s.Work, s.Mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return Stack{}, err
		}
	}
	// The upper root's mtime is "recent" on both sides; nothing to fix.
	return s, nil
}

// Options returns the stack as unionfs options.
func (s Stack) Options() unionfs.Options {
	return unionfs.Options{Lowers: append([]string(nil), s.Lowers...), Upper: s.Upper, Work: s.Work}
}

// OverlayData is the "-o" string both kernel overlayfs and strata accept.
func (s Stack) OverlayData() string {
	return fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(s.Lowers, ":"), s.Upper, s.Work)
}

// Mounted is a live union.
type Mounted interface {
	// Unmount takes the union down; it is safe to call twice.
	Unmount() error
	// Abort makes a hung union fail fast (kills a FUSE server).
	Abort()
}

// Backend mounts stacks.
type Backend interface {
	Name() string
	Mount(s Stack) (Mounted, error)
}

// Kernel is kernel overlayfs, the oracle.
type Kernel struct {
	UserXattr bool
	// Index appends index=on: as root the kernel then keeps hard links
	// across copy-up, as strata always does. Not allowed in a user ns.
	Index bool
}

func (k Kernel) Name() string { return "kernel" }

func (k Kernel) Mount(s Stack) (Mounted, error) {
	o := s.Options()
	o.UserXattr = k.UserXattr
	plan := unionfs.PlanKernelOverlay(o)
	if k.Index {
		plan.Data += ",index=on"
	}
	if err := plan.Mount(s.Mnt); err != nil {
		return nil, fmt.Errorf("mount overlay %s (%s): %w", s.Mnt, plan.Data, err)
	}
	return &kernelMount{mnt: s.Mnt}, nil
}

type kernelMount struct {
	mnt  string
	done bool
}

func (m *kernelMount) Unmount() error {
	if m.done {
		return nil
	}
	m.done = true
	return unmount(m.mnt)
}

// unmount unmounts mnt, waiting a moment while it is busy (the kernel may
// still be dropping a just-closed file), and detaches it lazily if it stays
// busy, so nothing is left behind either way; that still fails the test.
func unmount(mnt string) error {
	return mounts.UnmountWait(mnt, 500*time.Millisecond)
}

func (m *kernelMount) Abort() {}

// Strata runs the real binary in the foreground (`strata mount -f`), so the
// test owns its process and can kill it if it hangs.
type Strata struct {
	Bin   string
	Extra []string // more -o options, e.g. "userxattr"
	Env   []string // extra environment for the server
}

func (s Strata) Name() string { return "strata" }

func (s Strata) Mount(st Stack) (Mounted, error) {
	data := st.OverlayData()
	for _, e := range s.Extra {
		data += "," + e
	}
	cmd := exec.Command(s.Bin, "mount", "-f", "-o", data, st.Mnt)
	cmd.Env = append(os.Environ(), s.Env...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Bin, err)
	}
	m := &strataMount{cmd: cmd, mnt: st.Mnt, out: &out, exited: make(chan struct{})}
	go func() { m.waitErr = cmd.Wait(); close(m.exited) }()
	if err := WaitMounted(st.Mnt, m.exited, 15*time.Second); err != nil {
		m.Abort()
		<-m.exited
		return nil, fmt.Errorf("strata mount %s: %w; output: %s", st.Mnt, err, strings.TrimSpace(out.String()))
	}
	return m, nil
}

type strataMount struct {
	cmd     *exec.Cmd
	mnt     string
	out     *syncBuffer
	exited  chan struct{}
	waitErr error
	done    bool
}

// PID is the server's process id.
func (m *strataMount) PID() int { return m.cmd.Process.Pid }

func (m *strataMount) Unmount() error {
	if m.done {
		return nil
	}
	m.done = true
	var err error
	if mounts.IsMountpoint(m.mnt) {
		err = unmount(m.mnt)
	}
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		// SIGQUIT makes the Go runtime print every goroutine's stack: what
		// the server is still waiting for.
		m.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-m.exited:
		case <-time.After(3 * time.Second):
			m.cmd.Process.Kill()
			<-m.exited
		}
		if err == nil {
			out := m.out.String()
			if len(out) > 6000 {
				out = out[:6000] + "..."
			}
			err = fmt.Errorf("strata server for %s did not exit within 10s of the unmount; its goroutines (SIGQUIT):\n%s", m.mnt, out)
		}
	}
	return err
}

// Abort kills the server; the kernel then fails every pending request.
func (m *strataMount) Abort() {
	m.cmd.Process.Kill()
}

// Output is what the server printed.
func (m *strataMount) Output() string { return m.out.String() }

// WaitMounted polls /proc/self/mountinfo until mnt is a mount point, the
// process behind exited ends, or timeout passes.
func WaitMounted(mnt string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !mounts.IsMountpoint(mnt) {
		select {
		case <-exited:
			return errors.New("server exited before the mount appeared")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not mounted after %v", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
