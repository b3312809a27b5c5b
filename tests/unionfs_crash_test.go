package tests

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-run/strata/tests/difftest"
	"github.com/strata-run/strata/tests/harness"
	"github.com/strata-run/strata/unionfs/mounts"
	"golang.org/x/sys/unix"
)

const ufCrashFileSize = 1 << 30

// ufWriteBigLower writes a 1 GiB file of non-zero data (so no copy can skip
// holes) and returns the sha256 of its contents and of its contents with
// the byte the test appends.
func ufWriteBigLower(t *testing.T, path string, appended byte) (oldSum, newSum string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	w := io.MultiWriter(f, h)
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	for written := 0; written < ufCrashFileSize; written += len(buf) {
		buf[0] = byte(written >> 22) // every block differs
		if _, err := w.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	oldSum = hex.EncodeToString(h.Sum(nil))
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h2 := sha256.New()
	if err := h2.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		t.Fatal(err)
	}
	h2.Write([]byte{appended})
	return oldSum, hex.EncodeToString(h2.Sum(nil))
}

func ufSumFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	var h hash.Hash = sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// ufServer is a FUSE server started in the background by a mount command
// that returns once the mount serves (as `strata mount` does without -f).
type ufServer struct {
	pid int
	dev uint64 // st_dev of the mount: its /sys/fs/fuse/connections entry
}

// ufStartServer runs argv, which must return once the mount at st.Mnt
// serves, and finds the server behind it: the process holding /dev/fuse
// whose command line names the mountpoint. Cleanup unmounts and makes sure
// the server is gone.
func ufStartServer(t *testing.T, argv []string, st difftest.Stack) *ufServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%q: %v: %s", argv, err, out)
	}
	if !mounts.IsMountpoint(st.Mnt) {
		t.Fatalf("%q returned but %s is not mounted", argv, st.Mnt)
	}
	var sst unix.Stat_t
	if err := unix.Stat(st.Mnt, &sst); err != nil {
		t.Fatal(err)
	}
	srv := &ufServer{pid: ufFuseServerPID(st.Mnt), dev: sst.Dev}
	if srv.pid == 0 {
		t.Fatalf("no process holds /dev/fuse for %s", st.Mnt)
	}
	t.Cleanup(func() {
		if mounts.IsMountpoint(st.Mnt) {
			if exec.Command("fusermount3", "-u", st.Mnt).Run() != nil {
				unix.Unmount(st.Mnt, unix.MNT_DETACH)
			}
		}
		if !srv.waitGone(10 * time.Second) {
			unix.Kill(srv.pid, unix.SIGKILL)
			if !srv.waitGone(5 * time.Second) {
				t.Errorf("server %d survives SIGKILL; aborting its FUSE connection", srv.pid)
				srv.abort(t)
			}
		}
	})
	return srv
}

// ufFuseServerPID finds the process that holds /dev/fuse and names mnt as
// the last word of its command line.
func ufFuseServerPID(mnt string) int {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), mnt) {
			continue
		}
		fds, _ := os.ReadDir("/proc/" + p.Name() + "/fd")
		for _, fd := range fds {
			if l, _ := os.Readlink("/proc/" + p.Name() + "/fd/" + fd.Name()); l == "/dev/fuse" {
				return pid
			}
		}
	}
	return 0
}

// waitGone polls until the process has exited (gone or a zombie).
func (s *ufServer) waitGone(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(s.pid) + "/stat")
		if err != nil {
			return true
		}
		if _, rest, ok := strings.Cut(string(stat), ") "); ok && strings.HasPrefix(rest, "Z") {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stuck describes where a server that does not die is blocked.
func (s *ufServer) stuck() string {
	var b strings.Builder
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(s.pid) + "/task")
	for _, task := range tasks {
		dir := "/proc/" + strconv.Itoa(s.pid) + "/task/" + task.Name()
		wchan, _ := os.ReadFile(dir + "/wchan")
		stack, _ := os.ReadFile(dir + "/stack")
		fmt.Fprintf(&b, "thread %s in %s:\n%s", task.Name(), wchan, stack)
	}
	return b.String()
}

// abort ends the server's FUSE connection through fusectl (mounting it if
// the host has not), the one way to free a server stuck in a request to
// its own mount.
func (s *ufServer) abort(t *testing.T) {
	const conns = "/sys/fs/fuse/connections"
	abort := fmt.Sprintf("%s/%d/abort", conns, unix.Minor(s.dev))
	if _, err := os.Stat(abort); err != nil {
		if err := unix.Mount("fusectl", conns, "fusectl", 0, ""); err == nil {
			defer unix.Unmount(conns, 0)
		}
	}
	if err := os.WriteFile(abort, []byte("1"), 0o200); err != nil {
		t.Errorf("abort FUSE connection: %v", err)
	}
	s.waitGone(5 * time.Second)
}

// TestUnionfsCrashDuringCopyUp kills strata with SIGKILL while it copies a
// 1 GiB lower file up for an append, mounts again, and requires the file
// to hold either all the old data or all the new, with no temporary file
// of the copy-up visible in the merged view.
func TestUnionfsCrashDuringCopyUp(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.Binary(t)
	ufCrashDuringCopyUp(t, func(st difftest.Stack) []string {
		return []string{bin, "mount", "-o", st.OverlayData(), st.Mnt}
	})
}

// ufCrashDuringCopyUp runs the crash test with the mount command argv(st)
// gives, which must return once the mount serves and leave its server in
// the background.
func ufCrashDuringCopyUp(t *testing.T, argv func(difftest.Stack) []string) {
	dir := ufScratchDir(t, "strata-crash-")
	st := difftest.Stack{Lowers: []string{filepath.Join(dir, "lower")}, Upper: filepath.Join(dir, "upper"),
		Work: filepath.Join(dir, "work"), Mnt: filepath.Join(dir, "mnt")}
	for _, d := range []string{st.Lowers[0], st.Upper, st.Work, st.Mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(st.Lowers[0], "small"), []byte("small\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	oldSum, newSum := ufWriteBigLower(t, filepath.Join(st.Lowers[0], "big"), '!')

	server := ufStartServer(t, argv(st), st)

	// The append blocks in strata's copy-up; it fails once strata dies.
	writeErr := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(filepath.Join(st.Mnt, "big"), os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = f.Write([]byte{'!'})
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		writeErr <- err
	}()
	// Kill while the copy is under way: when strata has a file in the work
	// dir or upper open (found through /proc/PID/fd, which also shows an
	// O_TMPFILE) once data lands in it (the copy runs for a good part of a
	// second on a 1 GiB file), or after 2 s if it stays empty.
	seen := ""
	firstSeen := time.Time{}
	deadline := time.Now().Add(10 * time.Second)
	for seen == "" && time.Now().Before(deadline) {
		if p, size, ok := ufCopyTarget(server.pid, st); ok {
			if firstSeen.IsZero() {
				firstSeen = time.Now()
			}
			if size > 0 || time.Since(firstSeen) > 2*time.Second {
				seen = p + " at " + strconv.FormatInt(size, 10) + " bytes"
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	if seen == "" {
		t.Logf("never caught strata's copy-up target open; killing it anyway")
	}
	unix.Kill(server.pid, unix.SIGKILL)
	if !server.waitGone(10 * time.Second) {
		// A server that cannot die holds the mount hostage: report where
		// it hangs, then free it so the test can go on.
		t.Errorf("strata (pid %d) does not die from SIGKILL during copy-up:\n%s", server.pid, server.stuck())
		server.abort(t)
	}
	select {
	case err := <-writeErr:
		t.Logf("killed strata during copy-up (%s); the append returned %v", seen, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the append did not return after strata was killed")
	}
	// Clean up the dead mount as a user would.
	if out, err := exec.Command("fusermount3", "-u", st.Mnt).CombinedOutput(); err != nil {
		t.Logf("fusermount3 -u on the dead mount: %v: %s; using umount -l", err, out)
		if err := unix.Unmount(st.Mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Fatalf("umount -l %s: %v", st.Mnt, err)
		}
	}

	ufStartServer(t, argv(st), st)
	names := ufListNames(t, st.Mnt)
	if strings.Join(names, " ") != "big small" {
		t.Errorf("merged view after the crash lists %q, want only big and small", names)
	}
	sum, size, err := ufSumFile(filepath.Join(st.Mnt, "big"))
	if err != nil {
		t.Fatalf("read big after the crash: %v", err)
	}
	switch sum {
	case oldSum:
		t.Logf("after the crash the file holds the old data (%d bytes)", size)
	case newSum:
		t.Logf("after the crash the file holds the new data (%d bytes)", size)
	default:
		t.Errorf("after the crash the file is neither old nor new: %d bytes, sha256 %s", size, sum)
	}
	// The upper must not hold a partial copy either: a kernel mount of it
	// would show it.
	if usum, usize, err := ufSumFile(filepath.Join(st.Upper, "big")); err == nil && usum != oldSum && usum != newSum {
		t.Errorf("upper/big is a partial copy: %d bytes", usize)
	}
}

func ufListNames(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}

// ufCopyTarget finds a file under the work dir or upper that process pid has
// open, and its size now.
func ufCopyTarget(pid int, st difftest.Stack) (string, int64, bool) {
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return "", 0, false
	}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue
		}
		if !strings.HasPrefix(link, st.Work+"/") && !strings.HasPrefix(link, st.Upper+"/") {
			continue
		}
		var s unix.Stat_t
		if unix.Stat(filepath.Join(fdDir, e.Name()), &s) != nil || s.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		return link, s.Size, true
	}
	return "", 0, false
}
