package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-run/strata/tests/difftest"
	"github.com/strata-run/strata/tests/harness"
	"github.com/strata-run/strata/unionfs/mounts"
	"golang.org/x/sys/unix"
)

// Issue 8: the union must never act on a path the container can redirect
// (DESIGN.md, trust boundary). Each row below races one operation on d/...
// against a process that keeps exchanging d with a symlink s to a host
// dir, and then requires that host dir to be exactly as it was.

// raceOps are racer's ops that a container can race through its own
// mount. copyup is not among them: it needs d to be a lower dir, and the
// union refuses to rename a dir with lower parts (EXDEV), so a container,
// which reaches its upper only through the union, cannot swap it; the
// mount test, whose attacker owns the upper dir, races it there.
var raceOps = []string{"chmod", "chown", "truncate", "utimes", "setxattr", "removexattr",
	"unlink", "rmdir", "create", "mkdir", "link", "link-in", "link-out", "rename-in", "rename-out"}

// TestSecurityRaceRun: a container of the unprivileged test user (with
// subordinate ids, no special flags) races each op through its own root
// filesystem; the symlink points at a host dir the user owns, which the
// union's server (the user, as root of the user namespace) could write.
func TestSecurityRaceRun(t *testing.T) {
	u := harness.User(t)
	subRange(t, "/etc/subuid", u.Name)
	subRange(t, "/etc/subgid", u.Name)
	racer := buildRacer(t)
	for _, op := range raceOps {
		t.Run(op, func(t *testing.T) {
			secs := raceSeconds(op)
			e := newRunEnv(t, u, false)
			installRacer(t, racer, filepath.Join(e.rootfs, "bin/racer"), u)
			victim := filepath.Join(e.dir, "victim")
			makeVictim(t, victim, u.UID, u.GID, 0o755, 0o644)

			setup, racers := racePlan(op, "/t", "/t", victim, secs)
			script := "racer " + strings.Join(setup, " ") + " || exit 1\n"
			for _, argv := range racers {
				script += "racer " + strings.Join(argv, " ") + " &\n"
			}
			script += "wait\n"
			w := watchVictim(t, victim)
			defer w.stop()
			r := e.run("", "run", "--rm", "--rootfs", e.rootfs, "--", "sh", "-c", script)
			w.stop()
			t.Logf("racers:\n%s", r.stderr)
			if r.code != 0 {
				t.Errorf("op %s: the container exited %d: %s", op, r.code, r.stderr)
			}
			checkRaced(t, op, r.stderr)
			w.verdict(t, op)
		})
	}
}

// installRacer copies racer to dst for u.
func installRacer(t *testing.T, racer, dst string, u harness.TestUser) {
	t.Helper()
	data, err := os.ReadFile(racer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatalf("install racer: %v", err)
	}
	if err := os.Chown(dst, u.UID, u.GID); err != nil {
		t.Fatalf("install racer: %v", err)
	}
}

// lowerFiles is how many files the copyup row puts in each op process's
// lower dir: each copy-up happens once, and racer must not run out within
// its time.
const lowerFiles = 1000

// TestSecurityRaceMount: root mounts a union over dirs the test user owns
// (so the mount serves every user), and the user races each op on the
// mount. The symlink points at a dir only root may enter, whose files the
// root server must never touch. For copyup the user swaps d in the upper
// dir itself, which it owns: the union refuses to rename a merged dir.
func TestSecurityRaceMount(t *testing.T) {
	u := harness.User(t)
	bin := harness.Binary(t)
	racer := buildRacer(t)
	for _, op := range append(append([]string{}, raceOps...), "copyup") {
		t.Run(op, func(t *testing.T) {
			secs := raceSeconds(op)
			dir := ufScratchDir(t, "strata-race-")
			victim := filepath.Join(rootOnlyDir(t), "victim")
			makeVictim(t, victim, 0, 0, 0o700, 0o600)
			st := difftest.Stack{Lowers: []string{filepath.Join(dir, "lower")}, Upper: filepath.Join(dir, "upper"),
				Work: filepath.Join(dir, "work"), Mnt: filepath.Join(dir, "mnt")}
			for _, d := range []string{st.Lowers[0], st.Upper, st.Work, st.Mnt} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			root, swapDir := filepath.Join(st.Mnt, "t"), filepath.Join(st.Mnt, "t")
			if op == "copyup" {
				swapDir = filepath.Join(st.Upper, "t")
				for k := 1; k <= raceOpProcs(); k++ {
					makeLowerFiles(t, filepath.Join(st.Lowers[0], "t/d", strconv.Itoa(k)))
				}
			}
			if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", u.UID, u.GID), st.Lowers[0], st.Upper, st.Work).CombinedOutput(); err != nil {
				t.Fatalf("chown: %v: %s", err, out)
			}
			ufStartServer(t, []string{bin, "mount", "-o", st.OverlayData(), st.Mnt}, st)
			setup, racers := racePlan(op, root, swapDir, victim, secs)
			if out, err := u.Command(racer, setup...).CombinedOutput(); err != nil {
				t.Fatalf("racer %s: %v: %s", strings.Join(setup, " "), err, out)
			}

			w := watchVictim(t, victim)
			defer w.stop()
			stderr := runRacers(t, u, racer, racers, secs)
			w.stop()
			t.Logf("racers:\n%s", stderr)
			checkRaced(t, op, stderr)
			w.verdict(t, op)
		})
	}
}

// rootOnlyDir is a fresh dir only root may enter, removed at the end.
func rootOnlyDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strata-secret-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func makeLowerFiles(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < lowerFiles; i++ {
		// The name's prefix is racer's lowerPrefix.
		p := filepath.Join(dir, fmt.Sprintf("lower-%04d", i))
		if err := os.WriteFile(p, []byte("lower\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runRacers runs racer with each of argvs at once, as u, until all are
// done, and returns what they reported. Any still running when t ends (a
// hung mount) is killed by its PID before the mount goes.
func runRacers(t *testing.T, u harness.TestUser, racer string, argvs [][]string, secs string) string {
	t.Helper()
	var mu sync.Mutex
	var stderr bytes.Buffer
	var cmds []*exec.Cmd
	done := make(chan error, len(argvs))
	for _, argv := range argvs {
		cmd := u.Command(racer, argv...)
		cmd.Stdout, cmd.Stderr = &lockedWriter{&mu, &stderr}, &lockedWriter{&mu, &stderr}
		if err := cmd.Start(); err != nil {
			t.Fatalf("racer %v: %v", argv, err)
		}
		cmds = append(cmds, cmd)
		// Kill is a no-op once Wait has reaped it (os.Process uses a
		// pidfd), so this never hits a recycled PID.
		t.Cleanup(func() { cmd.Process.Kill() })
		go func() { done <- cmd.Wait() }()
	}
	d, _ := strconv.ParseFloat(secs, 64)
	timeout := time.After(time.Duration(d*float64(time.Second)) + 30*time.Second)
	for range cmds {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("a racer failed: %v", err)
			}
		case <-timeout:
			t.Fatalf("racers still running 30s after their time; killing them")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return stderr.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestSecurityWorkdirSymlink: the work dir belongs to whoever may write it
// (in the mount test, the user); a symlink it plants where the union
// keeps its temporaries or its index must make the mount fail, naming the
// workdir, and never let the union clear out or write into the target.
func TestSecurityWorkdirSymlink(t *testing.T) {
	u := harness.User(t)
	bin := harness.Binary(t)
	for _, c := range []struct{ sub, opts string }{
		{"work", ""},
		{"index", ""},
		{"strata-index", ",userxattr"},
	} {
		t.Run(c.sub, func(t *testing.T) {
			dir := ufScratchDir(t, "strata-worklink-")
			victim := filepath.Join(rootOnlyDir(t), "victim")
			makeVictim(t, victim, 0, 0, 0o700, 0o600)
			// Names the union's own leftovers would have, to tempt a
			// cleanup that follows the link.
			for _, name := range []string{"#strata-1", "probe"} {
				if err := os.WriteFile(filepath.Join(victim, name), []byte("victim\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			st := difftest.Stack{Lowers: []string{filepath.Join(dir, "lower")}, Upper: filepath.Join(dir, "upper"),
				Work: filepath.Join(dir, "work"), Mnt: filepath.Join(dir, "mnt")}
			for _, d := range []string{st.Lowers[0], st.Upper, st.Work, st.Mnt} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(d, u.UID, u.GID); err != nil {
					t.Fatal(err)
				}
			}
			link := filepath.Join(st.Work, c.sub)
			if err := os.Symlink(victim, link); err != nil {
				t.Fatal(err)
			}
			os.Lchown(link, u.UID, u.GID)
			before, err := victimState(victim)
			if err != nil {
				t.Fatal(err)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, "mount", "-o", st.OverlayData()+c.opts, st.Mnt).CombinedOutput()
			text := strings.TrimSpace(string(out))
			if mounts.IsMountpoint(st.Mnt) {
				unmountServer(t, bin, st.Mnt)
			}
			if err == nil {
				t.Errorf("mount with %s a symlink to %s succeeded; want an error naming the workdir", link, victim)
			} else if !strings.Contains(text, st.Work) {
				t.Errorf("mount with %s a symlink: error %q does not name the workdir %s", link, text, st.Work)
			}
			after, err := victimState(victim)
			if err != nil {
				t.Fatalf("victim %s: %v", victim, err)
			}
			if d := stateDiff(before, after); d != "" {
				t.Errorf("mounting with %s -> %s changed the target:\n%s", link, victim, d)
			}
		})
	}
}

// unmountServer takes down a mount strata served and waits for its
// server to exit, killing it by PID if it does not.
func unmountServer(t *testing.T, bin, mnt string) {
	t.Helper()
	pid := ufFuseServerPID(mnt)
	if out, err := exec.Command(bin, "umount", mnt).CombinedOutput(); err != nil {
		t.Logf("strata umount %s: %v: %s; detaching it", mnt, err, out)
		unix.Unmount(mnt, unix.MNT_DETACH)
	}
	if pid == 0 {
		return
	}
	srv := &ufServer{pid: pid}
	if !srv.waitGone(10 * time.Second) {
		t.Errorf("mount server %d still runs after unmount; killing it", pid)
		unix.Kill(pid, unix.SIGKILL)
		srv.waitGone(5 * time.Second)
	}
}
