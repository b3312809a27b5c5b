package tests

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-run/strata/tests/harness"
	"golang.org/x/sys/unix"
)

// raceSeconds is how long op races: long enough that every row fails on
// a server that follows symlinks in the middle of upper paths (on 2 cores
// under a load of 15-20, the wide ops within 1.3 s and the narrow ones
// within 5 s in 6 runs each), short enough that the whole set takes under
// three minutes, the same before and after the fix. STRATA_RACE_SECONDS
// sets the base.
//
// The narrow ops change the upper only under the union's lock for upper
// changes, which the exchange holds too, so they can catch a stale tree
// only between an exchange releasing that lock and the tree following it:
// they race twice as long.
func raceSeconds(op string) string {
	base := 3.0
	if f, err := strconv.ParseFloat(os.Getenv("STRATA_RACE_SECONDS"), 64); err == nil && f > 0 {
		base = f
	}
	if narrowOps[op] {
		base *= 2
	}
	return strconv.FormatFloat(base, 'f', -1, 64)
}

var narrowOps = map[string]bool{"unlink": true, "rmdir": true, "create": true, "mkdir": true,
	"link-in": true, "rename-in": true, "rename-out": true}

// raceOpProcs is how many processes repeat the op, each in its own dir
// below the swapped one (see racer's doc for why that matters); 8 caught
// the narrow ops fastest on 2 cores, 16 or 32 were slower.
// STRATA_RACE_PROCS overrides it.
func raceOpProcs() int {
	if n, err := strconv.Atoi(os.Getenv("STRATA_RACE_PROCS")); err == nil && n > 0 {
		return n
	}
	return 8
}

// racePlan lists racer's command lines for one row: the set-up of root
// (its s pointing at victim), and the racers, which run together: one
// swapper of d and s in swapDir (root, unless the swap happens in the
// upper dir) and raceOpProcs op processes.
func racePlan(op, root, swapDir, victim, secs string) (setup []string, racers [][]string) {
	n := raceOpProcs()
	setup = []string{"setup", root, victim, strconv.Itoa(n)}
	racers = [][]string{{"swap", swapDir, "d", "s", secs}}
	for k := 1; k <= n; k++ {
		racers = append(racers, []string{"op", op, root, strconv.Itoa(k), secs})
	}
	return setup, racers
}

// buildRacer builds tests/testdata/racer static into a dir the test user
// can enter, removed when t ends.
func buildRacer(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strata-racer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "racer")
	build := exec.Command("go", "build", "-o", bin, "./tests/testdata/racer")
	build.Dir = harness.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build racer: %v\n%s", err, out)
	}
	return bin
}

// victimTime is the mtime and atime of every victim entry, far from now
// and from the 1e9 that racer's utimes writes.
var victimTime = []unix.Timespec{{Sec: 1.5e9}, {Sec: 1.5e9}}

// makeVictim creates the host dir an attacker points its symlink at: for
// each of racer's op processes K, a dir K holding what that op names below
// d/K (f, y, sub), owned by uid:gid with the given modes, f with an xattr
// for removexattr to take away.
func makeVictim(t *testing.T, dir string, uid, gid int, dirMode, fileMode os.FileMode) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("victim %s: %v", dir, err)
		}
	}
	must(os.Mkdir(dir, dirMode))
	var dirs, files []string
	for k := 1; k <= raceOpProcs(); k++ {
		kd := filepath.Join(dir, strconv.Itoa(k))
		must(os.Mkdir(kd, dirMode))
		must(os.Mkdir(filepath.Join(kd, "sub"), dirMode))
		for name, body := range map[string]string{"f": "victim f: must stay as it is\n", "y": "victim y\n"} {
			must(os.WriteFile(filepath.Join(kd, name), []byte(body), fileMode))
			files = append(files, filepath.Join(kd, name))
		}
		must(unix.Lsetxattr(filepath.Join(kd, "f"), "user.x", []byte("victim"), 0))
		dirs = append(dirs, filepath.Join(kd, "sub"), kd)
	}
	// Modes again, past the umask; parents after children, as entries
	// created in a dir move its times.
	for _, p := range append(append(files, dirs...), dir) {
		mode := fileMode
		if !slices.Contains(files, p) {
			mode = dirMode
		}
		must(os.Chmod(p, mode))
		must(os.Lchown(p, uid, gid))
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, victimTime, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// victimState describes everything about the tree at dir that an escape
// could change, one line per entry: type and mode, owner, inode, links,
// size, mtime, ctime (which any change of metadata moves, even one that
// writes back the same value), content, symlink target and xattrs. atime
// is left out: reading the tree to compare it moves it.
func victimState(dir string) ([]string, error) {
	var lines []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", path, err)
		}
		line := fmt.Sprintf("%s mode=%o owner=%d:%d ino=%d nlink=%d size=%d mtime=%d.%09d ctime=%d.%09d",
			rel, st.Mode, st.Uid, st.Gid, st.Ino, st.Nlink, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" sha256=%x", sha256.Sum256(data))
		case unix.S_IFLNK:
			target, _ := os.Readlink(path)
			line += " -> " + target
		}
		lines = append(lines, line+xattrsOf(path))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(lines)
	return lines, nil
}

// xattrsOf lists path's xattrs with their values, sorted.
func xattrsOf(path string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if err != nil || n == 0 {
		return ""
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		val := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(path, name, val)
		if err != nil {
			fmt.Fprintf(&b, " %s=<%v>", name, err)
			continue
		}
		fmt.Fprintf(&b, " %s=%q", name, val[:vn])
	}
	return b.String()
}

// stateDiff shows lines only in before ("-") and only in after ("+").
func stateDiff(before, after []string) string {
	in := func(list []string, s string) bool {
		i := sort.SearchStrings(list, s)
		return i < len(list) && list[i] == s
	}
	var b strings.Builder
	for _, l := range before {
		if !in(after, l) {
			b.WriteString("  - " + l + "\n")
		}
	}
	for _, l := range after {
		if !in(before, l) {
			b.WriteString("  + " + l + "\n")
		}
	}
	return b.String()
}

// victimWatch polls the victim while a race runs, to tell how soon an
// escape lands; stop returns the first changed state and when it was
// seen, or nil.
type victimWatch struct {
	dir    string
	before []string
	start  time.Time
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	changed []string
	after   time.Duration
}

func watchVictim(t *testing.T, dir string) *victimWatch {
	t.Helper()
	before, err := victimState(dir)
	if err != nil {
		t.Fatalf("victim %s: %v", dir, err)
	}
	w := &victimWatch{dir: dir, before: before, start: time.Now(), done: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-tick.C:
			}
			if w.check() {
				return
			}
		}
	}()
	return w
}

// check records the state if it differs from before; a dir that cannot
// be walked any more counts as changed.
func (w *victimWatch) check() bool {
	now, err := victimState(w.dir)
	if err != nil {
		now = []string{"cannot walk the victim: " + err.Error()}
	}
	if strings.Join(now, "\n") == strings.Join(w.before, "\n") {
		return false
	}
	w.changed, w.after = now, time.Since(w.start)
	return true
}

// stop ends polling and takes one last look; calling it again is a
// no-op, so a deferred stop covers a test that dies early.
func (w *victimWatch) stop() {
	w.once.Do(func() {
		close(w.done)
		w.wg.Wait()
		if w.changed == nil {
			w.check()
		}
	})
}

// verdict fails t, naming the op, when the race changed the victim.
func (w *victimWatch) verdict(t *testing.T, op string) {
	t.Helper()
	if w.changed == nil {
		return
	}
	t.Errorf("op %s escaped the union: the host dir %s changed, first seen %.2fs after the race started (- before, + after):\n%s",
		op, w.dir, w.after.Seconds(), stateDiff(w.before, w.changed))
}

var racerOK = regexp.MustCompile(`racer (swap|op) [^:]*: (\d+) ok`)

// checkRaced fails t when racer's report shows that no exchange or no op
// succeeded: then nothing was raced, and a clean victim proves nothing.
func checkRaced(t *testing.T, op, stderr string) {
	t.Helper()
	ok := map[string]int{}
	for _, m := range racerOK.FindAllStringSubmatch(stderr, -1) {
		n, _ := strconv.Atoi(m[2])
		ok[m[1]] += n
	}
	if ok["swap"] == 0 || ok["op"] == 0 {
		t.Errorf("op %s: the race did not run (%d exchanges, %d ops succeeded):\n%s", op, ok["swap"], ok["op"], stderr)
	}
}
