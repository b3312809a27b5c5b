package rootless

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strata-run/strata/netns"
	"golang.org/x/sys/unix"
)

// On-disk contract shared with image/ (prune, commit):
//
//	<root>/containers/<id>/upper        the container's writable layer
//	<root>/containers/<id>/work         union fs work dir
//	<root>/containers/<id>/init         init layer (/etc/hosts, resolv.conf,
//	                                     hostname), a lower below upper;
//	                                     commit leaves it out
//	<root>/containers/<id>/config.json  Container, below
//	<root>/containers/<id>/image        the image reference it uses
//	<root>/containers/<id>/state.json   State, written when it exits
//
// Runtime state (gone at reboot) lives in RuntimeDir()/<id>/: a lock held
// by the strata process for as long as the container runs, its pid, and the
// rootfs mountpoint (mounted only inside the child's mount namespace).

// Container is config.json.
type Container struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Image    string    `json:"image"`
	Command  []string  `json:"command"`
	Created  time.Time `json:"created"`
	Remove   bool      `json:"remove,omitempty"`
	Hostname string    `json:"hostname"`

	// Filled in by List, not stored here.
	Dir   string `json:"-"`
	State State  `json:"-"`
}

// State is state.json plus what List learns from the runtime dir.
type State struct {
	Status   string    `json:"status"` // created, running, exited
	ExitCode int       `json:"exit_code"`
	Finished time.Time `json:"finished,omitempty"`
}

// DefaultRoot is $XDG_DATA_HOME/strata, or ~/.local/share/strata.
func DefaultRoot() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "strata")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/"
	}
	return filepath.Join(home, ".local", "share", "strata")
}

// RuntimeDir is $XDG_RUNTIME_DIR/strata, or a private /tmp/strata-UID when
// XDG_RUNTIME_DIR is unset. It is created on demand; a /tmp fallback that
// someone else owns is refused rather than used.
func RuntimeDir() (string, error) {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		dir := filepath.Join(d, "strata")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("runtime dir %s: %w", dir, err)
		}
		return dir, nil
	}
	dir := filepath.Join(os.TempDir(), "strata-"+strconv.Itoa(os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("runtime dir %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return "", fmt.Errorf("runtime dir %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Getuid() || st.Mode&0o077 != 0 {
		return "", fmt.Errorf("runtime dir %s: not a private directory owned by uid %d; remove it or set XDG_RUNTIME_DIR", dir, os.Getuid())
	}
	return dir, nil
}

func containersDir(root string) string { return filepath.Join(root, "containers") }

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// runLock is the flock a running container's strata process holds.
type runLock struct{ f *os.File }

func lockRuntime(dir string) (*runLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &runLock{f: f}, nil
}

func (l *runLock) release() { l.f.Close() }

// isRunning reports whether a strata process holds the lock of runtime dir
// dir. A missing dir or lock file means not running.
func isRunning(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	return false
}

// List returns the containers under root, oldest first, after cleaning
// stale state.
func List(root string) ([]Container, error) {
	if err := CleanStale(root); err != nil {
		return nil, err
	}
	run, err := RuntimeDir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(containersDir(root))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", containersDir(root), err)
	}
	var out []Container
	for _, e := range entries {
		c, err := load(root, run, e.Name())
		if err != nil {
			continue // half-created by a strata that is being cleaned; not listable
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func load(root, run, id string) (Container, error) {
	var c Container
	dir := filepath.Join(containersDir(root), id)
	if err := readJSON(filepath.Join(dir, "config.json"), &c); err != nil {
		return c, err
	}
	c.Dir = dir
	c.State = State{Status: "created"}
	readJSON(filepath.Join(dir, "state.json"), &c.State)
	if isRunning(filepath.Join(run, id)) {
		c.State.Status = "running"
	}
	return c, nil
}

// Find returns the container whose name is ref, or whose ID starts with ref.
func Find(root, ref string) (Container, error) {
	if ref == "" {
		// "" is a prefix of every ID: it must never pick one.
		return Container{}, fmt.Errorf("container %q: empty container name or ID", ref)
	}
	cs, err := List(root)
	if err != nil {
		return Container{}, err
	}
	var hits []Container
	for _, c := range cs {
		if c.Name == ref {
			return c, nil
		}
		if strings.HasPrefix(c.ID, ref) {
			hits = append(hits, c)
		}
	}
	switch len(hits) {
	case 0:
		return Container{}, fmt.Errorf("no such container %q (see strata ps -a)", ref)
	case 1:
		return hits[0], nil
	}
	return Container{}, fmt.Errorf("container id prefix %q is ambiguous; give more of it", ref)
}

// validName is Docker's rule for container names.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ValidateName refuses names Docker refuses: they must start with a letter
// or digit and hold only letters, digits, '_', '.' and '-' (no '/', no
// spaces, nothing a path or a flag could be made of).
func ValidateName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("container name %q: invalid; use letters, digits, '_', '.' and '-', starting with a letter or digit", name)
	}
	return nil
}

// Remove deletes a stopped container: its upper, work and init layers and
// its runtime dir. A running one needs force, which kills its strata
// process (and with it, through Pdeathsig, everything inside).
func Remove(root string, c Container, force bool) error {
	run, err := RuntimeDir()
	if err != nil {
		return err
	}
	rdir := filepath.Join(run, c.ID)
	if isRunning(rdir) {
		if !force {
			return fmt.Errorf("container %s is running; stop it or use strata rm -f", c.Name)
		}
		if data, err := os.ReadFile(filepath.Join(rdir, "pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		for i := 0; i < 100 && isRunning(rdir); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if isRunning(rdir) {
			return fmt.Errorf("container %s: its strata process did not exit after SIGKILL", c.Name)
		}
	}
	if err := removeTree(c.Dir); err != nil {
		return err
	}
	if err := os.RemoveAll(rdir); err != nil {
		return fmt.Errorf("remove %s: %w", rdir, err)
	}
	return nil
}

// CleanStale removes the runtime state of containers whose strata process
// died without cleaning up (SIGKILL, power loss inside a session), deletes
// those that were started with --rm, and marks the rest exited.
func CleanStale(root string) error {
	run, err := RuntimeDir()
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(run)
	if err != nil {
		return fmt.Errorf("read %s: %w", run, err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		rdir := filepath.Join(run, e.Name())
		if _, err := os.Stat(filepath.Join(rdir, "lock")); err != nil {
			// create() makes the dir and then its lock: a young dir without
			// one is being born, not dead.
			if fi, err := os.Stat(rdir); err == nil && time.Since(fi.ModTime()) < time.Minute {
				continue
			}
		}
		l, err := lockRuntime(rdir)
		if err != nil {
			continue // running, or not ours to judge
		}
		croot := root
		if data, err := os.ReadFile(filepath.Join(rdir, "root")); err == nil {
			croot = string(data) // the container may live under another --root
		}
		cdir := filepath.Join(containersDir(croot), e.Name())
		var c Container
		if readJSON(filepath.Join(cdir, "config.json"), &c) == nil {
			if c.Remove {
				removeTree(cdir)
			} else {
				var st State
				readJSON(filepath.Join(cdir, "state.json"), &st)
				if st.Status != "exited" {
					writeJSON(filepath.Join(cdir, "state.json"), State{Status: "exited", ExitCode: 137, Finished: time.Now()})
				}
			}
		}
		removeStaleCgroup(rdir)
		// Network helpers die with strata by their parent-death signal;
		// any that did not are killed here, before their sockets go.
		netns.Sweep(rdir)
		// The rootfs mountpoint was only ever mounted in a namespace that
		// died with its processes, so a plain removal is safe.
		os.RemoveAll(rdir)
		l.release()
	}
	return nil
}
