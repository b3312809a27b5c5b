package netns

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const unixNonblock = syscall.O_NONBLOCK

// helpersFile lists "pid starttime" of every helper a container started,
// so that a later strata can kill what a SIGKILLed one left (Sweep).
const helpersFile = "net-helpers"

// helper is a pasta or slirp4netns process serving one container.
type helper struct {
	name     string
	cmd      *exec.Cmd
	out      *tail
	exited   chan struct{}
	fail     chan error
	stopping atomic.Bool
}

// startHelper starts cmd so that it dies with strata, even by SIGKILL, and
// stays out of the terminal's process group, so ^C reaches it only through
// strata's own clean-up.
func startHelper(name string, cmd *exec.Cmd, dir string) (*helper, error) {
	h := &helper{name: name, cmd: cmd, out: &tail{}, exited: make(chan struct{}), fail: make(chan error, 1)}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// The parent-death signal follows the thread that forks: rootless
	// calls Attach from a goroutine locked to its thread for good.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true
	cmd.Stdout, cmd.Stderr = h.out, h.out
	Log.Debug("start helper", "argv", cmd.Args)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, cmd.Path, err)
	}
	pid := cmd.Process.Pid
	if st, err := procStart(pid); err == nil {
		f, err := os.OpenFile(filepath.Join(dir, helpersFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err == nil {
			fmt.Fprintf(f, "%d %s\n", pid, st)
			f.Close()
		}
	}
	go func() {
		err := cmd.Wait()
		close(h.exited)
		if !h.stopping.Load() {
			h.fail <- fmt.Errorf("%s (pid %d) exited while the container ran (%v)%s", name, pid, err, h.out.suffix())
		}
	}()
	return h, nil
}

// deathError is the error of a helper that exited before it was ready.
func (h *helper) deathError(what string) error {
	<-h.exited
	h.stopping.Store(true)
	return fmt.Errorf("%s: exited before %s (%v)%s", h.name, what, h.cmd.ProcessState, h.out.suffix())
}

func (h *helper) stop() error {
	if h == nil {
		return nil
	}
	h.stopping.Store(true)
	select {
	case <-h.exited:
		return nil
	default:
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(time.Second):
		h.cmd.Process.Kill()
		<-h.exited
	}
	return nil
}

func (h *helper) failed() <-chan error {
	if h == nil {
		return nil
	}
	return h.fail
}

// Sweep kills the helpers a container in the runtime dir dir started, if
// they still run: strata was killed before it could stop them and their
// parent-death signal did not reach them. A pid is only killed if it still
// is the process that was started (same start time).
func Sweep(dir string) {
	data, err := os.ReadFile(filepath.Join(dir, helpersFile))
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid <= 1 {
			continue
		}
		if st, err := procStart(pid); err == nil && st == f[1] {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// procStart is field 22 of /proc/PID/stat, the start time in ticks.
func procStart(pid int) (string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: short", pid)
	}
	return f[19], nil
}

// tail keeps the last few KiB a helper wrote, for error messages.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tail) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(string(t.buf), "\n") {
		// pasta complains on every line when there is no syslog.
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "Failed to send") {
			lines = append(lines, l)
		}
	}
	if len(lines) > 6 {
		lines = lines[len(lines)-6:]
	}
	if len(lines) == 0 {
		return ""
	}
	return ": " + strings.Join(lines, "; ")
}

// logWriter turns a rootlesskit driver's log lines into debug records.
func logWriter(component string) io.Writer {
	if !Log.Enabled(context.Background(), slog.LevelDebug) {
		return io.Discard
	}
	r, w := io.Pipe()
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			Log.Debug(sc.Text(), "component", component)
		}
	}()
	return w
}
