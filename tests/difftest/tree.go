package difftest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is what Snapshot records of one path. Fields that legitimately
// differ between two correct mounts (inode numbers, atime, ctime, exact
// recent mtimes) are reduced to what must agree.
type Entry struct {
	Type   string            `json:"type"` // file dir symlink fifo chr sock
	Perm   uint32            `json:"perm"` // permission bits incl. setuid/setgid/sticky
	UID    int               `json:"uid"`
	GID    int               `json:"gid"`
	Size   int64             `json:"size"`
	Nlink  uint64            `json:"nlink"`
	Hash   string            `json:"hash,omitempty"`   // sha256 of a file's data
	Target string            `json:"target,omitempty"` // symlink target
	Rdev   uint64            `json:"rdev,omitempty"`
	Xattrs map[string]string `json:"xattrs,omitempty"`
	// Mtime is exact for times before LowerTime+1day (set by the layout, so
	// a copy-up must keep them) and "recent" for times an operation set.
	Mtime string `json:"mtime"`
	// Ino says whether st_ino is still the one this path had when the
	// union was mounted ("kept"/"changed"; "" for paths new since): the
	// kernel keeps inode numbers across copy-up, and so must the union.
	Ino string `json:"ino,omitempty"`
	// Dino says whether readdir's d_ino agreed with st_ino ("ok" or
	// "differs"); empty for the root.
	Dino string `json:"dino,omitempty"`
	ino  uint64
}

// Tree maps paths relative to the root ("." for the root) to entries, and
// records which paths are one inode (hard links).
type Tree struct {
	Entries map[string]Entry  `json:"entries"`
	Inos    map[string]uint64 `json:"-"`     // st_ino by path
	Links   []string          `json:"links"` // each: sorted paths sharing an inode, joined by " = "
	Devs    int               `json:"devs"`  // distinct st_dev values seen
}

// SnapshotOptions says which tree is read.
type SnapshotOptions struct {
	// Upper reads an upper dir as overlayfs formats it: whiteouts stay
	// (0/0 char devices), kernel-internal overlay xattrs are dropped and
	// the markers that carry meaning (opaque, redirect) are kept.
	Upper bool
	// Skip names top-level entries to leave out (e.g. a work dir).
	Skip []string
	// Inos, when set, are the st_ino values of the same tree at mount
	// time (Tree.Inos of an earlier snapshot), for Entry.Ino.
	Inos map[string]uint64
}

// Snapshot reads the tree at root.
func Snapshot(root string, so SnapshotOptions) (*Tree, error) {
	t := &Tree{Entries: map[string]Entry{}, Inos: map[string]uint64{}}
	byIno := map[uint64][]string{}
	devs := map[uint64]bool{}
	var walk func(rel string, dino uint64) error
	walk = func(rel string, dino uint64) error {
		p := filepath.Join(root, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		devs[st.Dev] = true
		e := Entry{
			Perm:  st.Mode &^ unix.S_IFMT,
			UID:   int(st.Uid),
			GID:   int(st.Gid),
			Size:  st.Size,
			Nlink: st.Nlink,
			Mtime: mtimeClass(st.Mtim),
			ino:   st.Ino,
		}
		t.Inos[relName(rel)] = st.Ino
		if old, ok := so.Inos[relName(rel)]; ok {
			e.Ino = map[bool]string{true: "kept", false: "changed"}[old == st.Ino]
		}
		if rel != "" && !so.Upper {
			e.Dino = "ok"
			if dino != st.Ino {
				e.Dino = "differs"
			}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.Type = "file"
			h, err := hashFile(p)
			if err != nil {
				return err
			}
			e.Hash = h
		case unix.S_IFDIR:
			e.Type = "dir"
		case unix.S_IFLNK:
			e.Type = "symlink"
			tgt, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("readlink %s: %w", p, err)
			}
			e.Target = tgt
		case unix.S_IFIFO:
			e.Type = "fifo"
		case unix.S_IFCHR:
			e.Type = "chr"
			e.Rdev = st.Rdev
		case unix.S_IFSOCK:
			e.Type = "sock"
		default:
			e.Type = fmt.Sprintf("mode%o", st.Mode&unix.S_IFMT)
		}
		x, err := xattrs(p, so.Upper)
		if err != nil {
			return err
		}
		e.Xattrs = x
		if so.Upper {
			// The kernel adds an index link for copied-up hard links
			// (index=on) in the work dir; upper nlink is not the format.
			e.Nlink = 0
		}
		if e.Type == "dir" {
			// Hard-link groups of dirs are meaningless; a dir's size is
			// its upper filesystem's business once written.
			if so.Upper {
				e.Size = 0
			}
		} else if e.Type != "chr" {
			byIno[st.Ino] = append(byIno[st.Ino], relName(rel))
		}
		t.Entries[relName(rel)] = e
		if e.Type != "dir" {
			return nil
		}
		ents, err := readDirents(p)
		if err != nil {
			return fmt.Errorf("readdir %s: %w", p, err)
		}
		for _, d := range ents {
			if rel == "" && contains(so.Skip, d.name) {
				continue
			}
			if err := walk(filepath.Join(rel, d.name), d.ino); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("", 0); err != nil {
		return nil, err
	}
	for _, paths := range byIno {
		if len(paths) > 1 {
			sort.Strings(paths)
			t.Links = append(t.Links, strings.Join(paths, " = "))
		}
	}
	sort.Strings(t.Links)
	t.Devs = len(devs)
	return t, nil
}

func relName(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func mtimeClass(ts unix.Timespec) string {
	t := time.Unix(ts.Unix())
	if t.Before(LowerTime.Add(24 * time.Hour)) {
		return t.UTC().Format(time.RFC3339Nano)
	}
	return "recent"
}

func hashFile(p string) (string, error) {
	// O_NONBLOCK: never hang on a fifo that a bug made look like a file.
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// kernelInternal are overlay xattrs the kernel writes for its own
// bookkeeping (file handles, impure dirs, index nlink, uuid, metacopy):
// they encode host-specific handles, not the format a reader needs.
var kernelInternal = []string{"origin", "impure", "nlink", "upper", "uuid", "metacopy", "protattr"}

func xattrs(p string, upper bool) (map[string]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if err == unix.ENOTSUP {
			return nil, nil
		}
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		if upper {
			if rest, ok := strings.CutPrefix(name, "trusted.overlay."); ok && contains(kernelInternal, rest) {
				continue
			}
			if rest, ok := strings.CutPrefix(name, "user.overlay."); ok && contains(kernelInternal, rest) {
				continue
			}
		}
		vbuf := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, vbuf)
		if err != nil {
			if err == unix.ENODATA {
				continue
			}
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		v := string(vbuf[:vn])
		if len(v) > 40 {
			sum := sha256.Sum256(vbuf[:vn])
			v = fmt.Sprintf("%d bytes sha256:%x", vn, sum[:8])
		}
		out[name] = v
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// Diff lists the differences between want (the kernel oracle) and got, at
// most max of them, each naming the path and field.
func Diff(want, got *Tree, max int) []string {
	return DiffNamed(want, got, "kernel", "got", max)
}

// DiffNamed is Diff with the two sides named in the messages.
func DiffNamed(want, got *Tree, wantName, gotName string, max int) []string {
	var out []string
	add := func(format string, a ...any) {
		if len(out) < max {
			out = append(out, fmt.Sprintf(format, a...))
		}
	}
	var paths []string
	for p := range want.Entries {
		paths = append(paths, p)
	}
	for p := range got.Entries {
		if _, ok := want.Entries[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		w, wok := want.Entries[p]
		g, gok := got.Entries[p]
		switch {
		case !gok:
			add("%s: missing (%s has %s)", p, wantName, w.Type)
		case !wok:
			add("%s: unexpected %s (%s has no such entry)", p, g.Type, wantName)
		default:
			for _, d := range diffEntry(w, g, wantName, gotName) {
				add("%s: %s", p, d)
			}
		}
	}
	if !equalStrings(want.Links, got.Links) {
		add("hard links: %s %q, %s %q", wantName, want.Links, gotName, got.Links)
	}
	if want.Devs != got.Devs {
		add("distinct st_dev values: %s %d, %s %d", wantName, want.Devs, gotName, got.Devs)
	}
	return out
}

func diffEntry(w, g Entry, wantName, gotName string) []string {
	var d []string
	f := func(name string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			d = append(d, fmt.Sprintf("%s %s=%v %s=%v", name, wantName, a, gotName, b))
		}
	}
	f("type", w.Type, g.Type)
	if w.Type != g.Type {
		return d
	}
	f("mode", fmt.Sprintf("%#o", w.Perm), fmt.Sprintf("%#o", g.Perm))
	f("owner", fmt.Sprintf("%d:%d", w.UID, w.GID), fmt.Sprintf("%d:%d", g.UID, g.GID))
	f("size", w.Size, g.Size)
	f("nlink", w.Nlink, g.Nlink)
	f("content", w.Hash, g.Hash)
	f("symlink target", w.Target, g.Target)
	f("rdev", w.Rdev, g.Rdev)
	f("xattrs", sortedMap(w.Xattrs), sortedMap(g.Xattrs))
	f("mtime", w.Mtime, g.Mtime)
	f("inode number since mount", w.Ino, g.Ino)
	// The kernel's own d_ino is not always st_ino: overlayfs translates
	// d_ino only in dirs it marked impure or merged (overlayfs.rst,
	// "Non-standard behavior"), so a name moved into a pure upper dir shows
	// its real upper inode there. Where the kernel agrees, the union must.
	if w.Dino == "ok" && g.Dino != "ok" {
		d = append(d, fmt.Sprintf("readdir d_ino %s=agrees with st_ino %s=differs", wantName, gotName))
	}
	return d
}

func sortedMap(m map[string]string) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type dirent struct {
	name string
	ino  uint64
}

// readDirents lists dir with getdents64, keeping d_ino (os.ReadDir does
// not), sorted by name, without "." and "..".
func readDirents(dir string) ([]dirent, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []dirent
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		for off := 0; off < n; {
			// struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name
			ino := binary.NativeEndian.Uint64(buf[off:])
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				out = append(out, dirent{name: s, ino: ino})
			}
			off += reclen
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// ClearDino drops the d_ino checks, for comparisons between the two
// implementations' views of one upper, where each one's own readdir
// consistency is not the question.
func (t *Tree) ClearDino() {
	for k, e := range t.Entries {
		e.Dino = ""
		t.Entries[k] = e
	}
}
