// Package mounts answers what is mounted where and takes mounts down: the
// one place that reads /proc/self/mountinfo and retries a busy unmount, for
// the CLI, the union filesystem, the benchmark and the tests alike.
//
// It knows nothing of FUSE servers (no go-fuse import): a FUSE mount is
// taken down like any other, and its server sees the unmount and exits.
package mounts

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Info is one line of /proc/PID/mountinfo (proc(5)), paths unescaped.
type Info struct {
	ID, Parent   int
	Major, Minor int
	Root         string // the mounted subtree of the source filesystem
	Point        string // the mount point
	Options      string // per-mount options (ro, nosuid, ...)
	FSType       string // e.g. overlay, fuse.strata, tmpfs
	Source       string
	SuperOptions string // per-superblock options
}

// Parse reads mountinfo lines. It keeps every line it understands and
// reports the first it does not, naming it: the kernel writes none such, so
// one means the format changed under us.
func Parse(r io.Reader) ([]Info, error) {
	var out []Info
	var firstErr error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20) // option strings of overlay mounts get long
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		m, err := parseLine(line)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("mountinfo line %d %q: %w", n, line, err)
			}
			continue
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return out, err
	}
	return out, firstErr
}

func parseLine(line string) (Info, error) {
	f := strings.Fields(line)
	// Optional fields (shared:N, master:N, ...) sit between the sixth
	// field and a lone "-", so the separator's position varies.
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || sep+2 >= len(f) {
		return Info{}, errors.New("no \"-\" separator followed by type and source")
	}
	var m Info
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil {
		return Info{}, fmt.Errorf("mount id: %w", err)
	}
	if m.Parent, err = strconv.Atoi(f[1]); err != nil {
		return Info{}, fmt.Errorf("parent id: %w", err)
	}
	maj, min, ok := strings.Cut(f[2], ":")
	if !ok {
		return Info{}, fmt.Errorf("major:minor %q", f[2])
	}
	if m.Major, err = strconv.Atoi(maj); err != nil {
		return Info{}, fmt.Errorf("major:minor %q: %w", f[2], err)
	}
	if m.Minor, err = strconv.Atoi(min); err != nil {
		return Info{}, fmt.Errorf("major:minor %q: %w", f[2], err)
	}
	m.Root, m.Point, m.Options = Unescape(f[3]), Unescape(f[4]), f[5]
	m.FSType, m.Source = f[sep+1], Unescape(f[sep+2])
	if sep+3 < len(f) {
		m.SuperOptions = f[sep+3]
	}
	return m, nil
}

// Unescape undoes the kernel's octal escapes in mountinfo paths: space,
// tab, newline and backslash appear as \040, \011, \012 and \134.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Read returns this process's mount table.
func Read() ([]Info, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// IsMountpoint reports whether path (absolute and clean, as mountinfo
// shows it) is the target of a mount in this mount namespace.
func IsMountpoint(path string) bool {
	ms, _ := Read() // a line not understood leaves the others usable
	for _, m := range ms {
		if m.Point == path {
			return true
		}
	}
	return false
}

// Dev is the device number of the filesystem path is on, 0 when path
// cannot be stat'ed. A directory's Dev changes once a mount on it serves,
// which is how a caller tells that a FUSE server has answered INIT.
func Dev(path string) uint64 {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return 0
	}
	return st.Dev
}

// Unmount takes down the mount at path as `strata umount` does: with
// umount(2) as root, through fusermount3 otherwise (an ordinary user may
// only unmount FUSE mounts of their own, and only through the helper).
// lazy detaches the mount now and lets the kernel finish when it is no
// longer busy.
func Unmount(path string, lazy bool) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("umount %s: %w", path, err)
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	if !IsMountpoint(abs) {
		return fmt.Errorf("umount %s: not mounted", path)
	}
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		if err := unix.Unmount(abs, flags); err != nil {
			return fmt.Errorf("umount %s: %w", path, err)
		}
		return nil
	}
	args := []string{"-u", abs}
	if lazy {
		args = []string{"-u", "-z", abs}
	}
	if out, err := exec.Command("fusermount3", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("umount %s: fusermount3: %s", path, out)
	}
	return nil
}

// ErrDetached marks an UnmountWait that gave up waiting for a busy mount
// and detached it: nothing is mounted at the path any more, but a FUSE
// server behind it keeps running until the last open file closes.
var ErrDetached = errors.New("still busy, detached lazily")

// UnmountWait unmounts path with umount(2), retrying every 25ms while the
// mount is busy (the kernel may still be releasing files a workload just
// closed), patience/25ms times: tries, not a deadline, so a loaded machine
// gets as many chances as an idle one. Then it detaches the mount, so
// nothing is left mounted either way. The error names the last failure of
// the plain unmount; it wraps ErrDetached when the detach took the mount
// away.
func UnmountWait(path string, patience time.Duration) error {
	const poll = 25 * time.Millisecond
	var err error
	for tries := max(1, int(patience/poll)); tries > 0; tries-- {
		if err = unix.Unmount(path, 0); err != unix.EBUSY {
			break
		}
		time.Sleep(poll)
	}
	if err == nil {
		return nil
	}
	if derr := unix.Unmount(path, unix.MNT_DETACH); derr == nil {
		return fmt.Errorf("unmount %s: %w; %w", path, err, ErrDetached)
	}
	return fmt.Errorf("unmount %s: %w", path, err)
}
