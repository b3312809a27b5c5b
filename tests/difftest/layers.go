package difftest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// LowerTime is the mtime every lower entry gets, so Snapshot can tell an
// untouched (or faithfully copied-up) time from one an operation set.
var LowerTime = time.Date(2001, 9, 9, 1, 46, 40, 0, time.UTC)

// Layout says how the lowers are built.
type Layout struct {
	// UserXattr marks opaque dirs with user.overlay.opaque instead of
	// trusted.overlay.opaque, as overlayfs's userxattr mode reads them.
	UserXattr bool
	// HardLinks puts files with several names into the lowers. Leave it off
	// where the kernel oracle cannot keep them (no index inside a user
	// namespace: overlayfs then breaks the link on copy-up, by design).
	HardLinks bool
}

// NumLowers is how many lower layers Build makes.
const NumLowers = 3

type entry struct {
	layer  int // 0 is the top lower
	path   string
	kind   byte // f file, d dir, l symlink, w whiteout, p fifo, h hard link to target
	data   string
	target string // symlink target, or hard-link source path in the same layer
	mode   uint32
	uid    int
	gid    int
	xattrs map[string]string
	opaque bool
}

func (l Layout) entries() []entry {
	e := []entry{
		// bottom layer (2)
		{layer: 2, path: "d1", kind: 'd', mode: 0o755},
		{layer: 2, path: "d1/f1", kind: 'f', data: "lower2 d1/f1\n", mode: 0o644},
		{layer: 2, path: "d1/f2", kind: 'f', data: "lower2 d1/f2 will be hidden\n", mode: 0o644},
		{layer: 2, path: "d1/sub", kind: 'd', mode: 0o750, uid: 1000, gid: 1000},
		{layer: 2, path: "d1/sub/deep", kind: 'f', data: "deep\n", mode: 0o600},
		{layer: 2, path: "d1/sub/keep", kind: 'f', data: "keep\n", mode: 0o640, uid: 1000, gid: 1001},
		{layer: 2, path: "sym_ok", kind: 'l', target: "d1/f1"},
		{layer: 2, path: "sym_dir", kind: 'l', target: "d1"},
		{layer: 2, path: "sym_dangling", kind: 'l', target: "nowhere"},
		{layer: 2, path: "opq", kind: 'd', mode: 0o755},
		{layer: 2, path: "opq/x", kind: 'f', data: "hidden by opaque\n", mode: 0o644},
		{layer: 2, path: "opq/y", kind: 'f', data: "hidden by opaque\n", mode: 0o644},
		{layer: 2, path: "gone", kind: 'f', data: "whited out\n", mode: 0o644},
		{layer: 2, path: "gonedir", kind: 'd', mode: 0o755},
		{layer: 2, path: "gonedir/child", kind: 'f', data: "whited out\n", mode: 0o644},
		{layer: 2, path: "plain", kind: 'f', data: "owned and xattred\n", mode: 0o640, uid: 1000, gid: 1000,
			xattrs: map[string]string{"user.color": "blue", "user.empty": ""}},
		{layer: 2, path: "fifo0", kind: 'p', mode: 0o644},
		{layer: 2, path: "big", kind: 'f', data: pattern(70000, 3), mode: 0o644},
		{layer: 2, path: "suid", kind: 'f', data: "#!/bin/sh\n", mode: 0o4755},
		// middle layer (1)
		{layer: 1, path: "gone", kind: 'w'},
		{layer: 1, path: "gonedir", kind: 'w'},
		{layer: 1, path: "opq", kind: 'd', mode: 0o755, opaque: true},
		{layer: 1, path: "opq/z", kind: 'f', data: "in opaque\n", mode: 0o644},
		{layer: 1, path: "d1", kind: 'd', mode: 0o755},
		{layer: 1, path: "d1/f2", kind: 'f', data: "lower1 d1/f2\n", mode: 0o664},
		{layer: 1, path: "d1/l1only", kind: 'f', data: "only in layer 1\n", mode: 0o644,
			xattrs: map[string]string{"user.layer": "1"}},
		{layer: 1, path: "d2", kind: 'd', mode: 0o775, uid: 1001, gid: 1001},
		{layer: 1, path: "d2/file", kind: 'f', data: "d2 file\n", mode: 0o600, uid: 1001, gid: 1001},
		{layer: 1, path: "d2/empty", kind: 'd', mode: 0o700},
		{layer: 1, path: "d1/sub", kind: 'd', mode: 0o750, uid: 1000, gid: 1000},
		// top lower (0)
		{layer: 0, path: "d1", kind: 'd', mode: 0o755},
		{layer: 0, path: "d1/top", kind: 'f', data: "top\n", mode: 0o644},
		{layer: 0, path: "d1/sub", kind: 'd', mode: 0o750, uid: 1000, gid: 1000},
		{layer: 0, path: "d1/sub/deep", kind: 'w'},
		{layer: 0, path: "d2", kind: 'd', mode: 0o775, uid: 1001, gid: 1001},
		{layer: 0, path: "d2/t", kind: 'f', data: "", mode: 0o644},
		{layer: 0, path: "topfile", kind: 'f', data: "top file\n", mode: 0o644},
		{layer: 0, path: "topdir", kind: 'd', mode: 0o755},
		{layer: 0, path: "topdir/a", kind: 'f', data: "a\n", mode: 0o644},
		{layer: 0, path: "topdir/sym_rel", kind: 'l', target: "../topfile"},
	}
	if l.HardLinks {
		e = append(e,
			// three names of one file in the bottom layer, across dirs
			entry{layer: 2, path: "hl_a", kind: 'f', data: "hard linked x3\n", mode: 0o644,
				xattrs: map[string]string{"user.hl": "yes"}},
			entry{layer: 2, path: "hl_b", kind: 'h', target: "hl_a"},
			entry{layer: 2, path: "d1/hl_c", kind: 'h', target: "hl_a"},
			// a pair in the middle layer
			entry{layer: 1, path: "d2/hl2_a", kind: 'f', data: "pair\n", mode: 0o600, uid: 1000, gid: 1000},
			entry{layer: 1, path: "hl2_b", kind: 'h', target: "d2/hl2_a"},
		)
	}
	return e
}

func pattern(n int, seed byte) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + (seed+byte(i%23))%26
	}
	return string(b)
}

// Build creates the lowers under dir (dir/l0 is the top) and returns their
// paths top-first. Building twice gives the same trees, times included.
func (l Layout) Build(dir string) ([]string, error) {
	lowers := make([]string, NumLowers)
	for i := range lowers {
		lowers[i] = filepath.Join(dir, fmt.Sprintf("l%d", i))
		if err := os.MkdirAll(lowers[i], 0o755); err != nil {
			return nil, err
		}
	}
	opaqueName := "trusted.overlay.opaque"
	if l.UserXattr {
		opaqueName = "user.overlay.opaque"
	}
	for _, e := range l.entries() {
		p := filepath.Join(lowers[e.layer], e.path)
		var err error
		switch e.kind {
		case 'd':
			err = os.Mkdir(p, 0o700)
		case 'f':
			err = os.WriteFile(p, []byte(e.data), 0o600)
		case 'l':
			err = os.Symlink(e.target, p)
		case 'w':
			err = unix.Mknod(p, unix.S_IFCHR|0o600, 0)
		case 'p':
			err = unix.Mkfifo(p, 0o600)
		case 'h':
			err = os.Link(filepath.Join(lowers[e.layer], e.target), p)
		}
		if err != nil {
			return nil, fmt.Errorf("build lower %s: %w", p, err)
		}
		if e.kind == 'h' || e.kind == 'w' {
			continue
		}
		if e.kind != 'l' {
			if err := unix.Chmod(p, e.mode); err != nil {
				return nil, fmt.Errorf("build lower %s: %w", p, err)
			}
		}
		if err := unix.Lchown(p, e.uid, e.gid); err != nil {
			return nil, fmt.Errorf("build lower %s: %w", p, err)
		}
		if e.kind != 'l' {
			// chown clears setuid bits: set the mode again.
			if err := unix.Chmod(p, e.mode); err != nil {
				return nil, fmt.Errorf("build lower %s: %w", p, err)
			}
		}
		for k, v := range e.xattrs {
			if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
				return nil, fmt.Errorf("build lower %s xattr %s: %w", p, k, err)
			}
		}
		if e.opaque {
			if err := unix.Lsetxattr(p, opaqueName, []byte("y"), 0); err != nil {
				return nil, fmt.Errorf("build lower %s xattr %s: %w", p, opaqueName, err)
			}
		}
	}
	for _, lower := range lowers {
		if err := fixTimes(lower); err != nil {
			return nil, err
		}
	}
	return lowers, nil
}

// fixTimes sets every entry's atime and mtime to LowerTime, children before
// their dirs so the dirs keep it.
func fixTimes(root string) error {
	var paths []string
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	ts := []unix.Timespec{unix.NsecToTimespec(LowerTime.UnixNano()), unix.NsecToTimespec(LowerTime.UnixNano())}
	for _, p := range paths {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times %s: %w", p, err)
		}
	}
	return nil
}
