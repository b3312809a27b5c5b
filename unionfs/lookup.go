package unionfs

import (
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// resolved is what one name means across the stack.
type resolved struct {
	st       unix.Stat_t // the visible (topmost) entry
	layer    *layer      // where st came from
	hasUpper bool
	// lower is the topmost lower layer holding the name (-1: none) and
	// dirLowers the lower layers a directory merges, top first.
	lower     int
	lowerIno  uint64 // st_ino of the entry in layer lower
	dirLowers []int
	// inLower: some lower shows this name (so deleting it needs a whiteout).
	inLower bool
	opaque  bool
	// lrel is the name's path in the lowers (they never change).
	lrel string
	// up and low are the name in the parent's upper dir and in layer
	// lower, resolved once here so callers need not walk again (dir -1:
	// none). close releases them.
	up, low entry
}

func (r *resolved) close() {
	r.up.Close()
	r.low.Close()
	r.up, r.low = entry{dir: -1}, entry{dir: -1}
}

const whiteoutPrefix = ".wh."
const opaqueMarker = ".wh..wh..opq"

func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func join(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

// isOpaque reports whether directory e of l stops the merge below it.
func (u *unionFS) isOpaque(l *layer, e entry) bool {
	if l.upper {
		v, ok := e.getxattrString(u.opaqueXattr)
		return ok && v == "y"
	}
	// Lowers may come from either kind of mount, or from OCI tarballs. One
	// listxattr answers for both xattr names on the many directories that
	// carry no xattrs at all.
	var names [512]byte
	if sz, errno := e.Listxattr(names[:]); errno == 0 && sz > 0 || errno == syscall.ERANGE {
		for _, name := range []string{u.opaqueXattr, "user.overlay.opaque", "trusted.overlay.opaque"} {
			if v, ok := e.getxattrString(name); ok && v == "y" {
				return true
			}
		}
	}
	fd, err := openat2Beneath(e.dir, e.name+"/"+opaqueMarker, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// resolve finds name in directory parent. With full, it also learns
// whether a lower holds the name under a visible upper non-directory,
// which deletions and renames need. On success the caller closes r.
func (u *unionFS) resolve(parent *node, name string, full bool) (r resolved, errno syscall.Errno) {
	r.lower = -1
	r.up, r.low = entry{dir: -1}, entry{dir: -1}
	defer func() {
		if errno != 0 {
			r.close()
		}
	}()
	found := false
	// One consistent view of the parent: newChild may refresh it meanwhile.
	parent.mu.Lock()
	pUpper, pOpaque, pLowers, plrel := parent.hasUpper, parent.opaque, parent.dirLowers, parent.lowerRel()
	parent.mu.Unlock()
	r.lrel = join(plrel, name)
	if pUpper && u.upper != nil {
		d, e := parent.upperDir()
		if e != 0 {
			return r, e
		}
		r.up = entry{dir: d.fd, name: name, own: d.own}
		switch e := r.up.Stat(&r.st); e {
		case 0:
			if isWhiteout(&r.st) {
				return r, syscall.ENOENT
			}
			found, r.hasUpper, r.layer = true, true, u.upper
			if r.st.Mode&unix.S_IFMT == unix.S_IFDIR {
				if u.isOpaque(u.upper, r.up) {
					r.opaque = true
					return r, 0
				}
			} else if !full {
				return r, 0
			}
		case syscall.ENOENT:
			if !u.charWhiteouts && r.up.sibling(whiteoutPrefix+name).exists() {
				return r, syscall.ENOENT
			}
		default:
			return r, e
		}
	}
	if pOpaque {
		return r, boolErrno(found)
	}
	isDir := found && r.st.Mode&unix.S_IFMT == unix.S_IFDIR
	for _, li := range pLowers {
		l := u.layers[li]
		d, e := dirAt(l.fd, plrel)
		if e == syscall.ENOENT || e == syscall.ENOTDIR {
			continue
		} else if e != 0 {
			return r, e
		}
		le := entry{dir: d.fd, name: name, own: d.own}
		done, e := u.resolveLower(&r, li, le, &found, &isDir)
		if r.low.dir != le.dir {
			le.Close()
		}
		if done || e != 0 {
			return r, e
		}
	}
	return r, boolErrno(found)
}

// resolveLower is one step of resolve: name in lower layer li, as le. It
// reports whether the search ends here; le becomes r.low when it is the
// topmost lower entry.
func (u *unionFS) resolveLower(r *resolved, li int, le entry, found, isDir *bool) (done bool, errno syscall.Errno) {
	l := u.layers[li]
	var st unix.Stat_t
	switch e := le.Stat(&st); e {
	case 0:
	case syscall.ENOENT, syscall.ENOTDIR:
		if le.sibling(whiteoutPrefix + le.name).exists() {
			return true, boolErrno(*found)
		}
		return false, 0
	default:
		return true, e
	}
	if isWhiteout(&st) {
		return true, boolErrno(*found)
	}
	// Entries of OCI whiteout files themselves never show.
	r.inLower = true
	stDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if *found && !(*isDir && stDir) {
		// A non-directory above hides everything below; so does any
		// entry above a non-directory.
		return true, 0
	}
	if !*found {
		*found, r.st, r.layer, *isDir = true, st, l, stDir
	}
	if r.lower < 0 {
		r.lower, r.lowerIno, r.low = li, st.Ino, le
	}
	if !stDir {
		return true, 0
	}
	r.dirLowers = append(r.dirLowers, li)
	return u.isOpaque(l, le), 0
}

func boolErrno(found bool) syscall.Errno {
	if found {
		return 0
	}
	return syscall.ENOENT
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// overrideStat is user.containers.override_stat: "uid:gid:mode[:type]",
// mode in octal (permission and set-id bits), type as containers/storage
// writes it ("file", "dir", "symlink", "pipe", "socket", "block-MAJ-MIN",
// "char-MAJ-MIN").
type overrideStat struct {
	uid, gid uint32
	mode     uint32 // permission bits only
	typ      uint32 // S_IF* or 0 when absent
	rdev     uint64
}

func parseOverride(v string) (o overrideStat, ok bool) {
	f := strings.Split(strings.TrimRight(v, "\x00\n"), ":")
	if len(f) < 3 {
		return o, false
	}
	uid, e1 := strconv.ParseUint(f[0], 10, 32)
	gid, e2 := strconv.ParseUint(f[1], 10, 32)
	mode, e3 := strconv.ParseUint(f[2], 8, 32)
	if e1 != nil || e2 != nil || e3 != nil {
		return o, false
	}
	o.uid, o.gid, o.mode = uint32(uid), uint32(gid), uint32(mode)
	if m := uint32(mode) & unix.S_IFMT; m != 0 {
		o.typ = m
		o.mode &^= unix.S_IFMT
	}
	if len(f) >= 4 {
		t := f[3]
		switch {
		case t == "file":
			o.typ = unix.S_IFREG
		case t == "dir":
			o.typ = unix.S_IFDIR
		case t == "symlink":
			o.typ = unix.S_IFLNK
		case t == "pipe":
			o.typ = unix.S_IFIFO
		case t == "socket":
			o.typ = unix.S_IFSOCK
		case strings.HasPrefix(t, "block-"), strings.HasPrefix(t, "char-"):
			parts := strings.Split(t, "-")
			if len(parts) == 3 {
				maj, _ := strconv.ParseUint(parts[1], 10, 32)
				mnr, _ := strconv.ParseUint(parts[2], 10, 32)
				o.rdev = unix.Mkdev(uint32(maj), uint32(mnr))
			}
			o.typ = unix.S_IFCHR
			if parts[0] == "block" {
				o.typ = unix.S_IFBLK
			}
		}
	}
	return o, true
}

func (o overrideStat) format() string {
	s := strconv.FormatUint(uint64(o.uid), 10) + ":" + strconv.FormatUint(uint64(o.gid), 10) +
		":0" + strconv.FormatUint(uint64(o.mode&07777), 8)
	switch o.typ {
	case unix.S_IFCHR:
		s += ":char-" + strconv.Itoa(int(unix.Major(o.rdev))) + "-" + strconv.Itoa(int(unix.Minor(o.rdev)))
	case unix.S_IFBLK:
		s += ":block-" + strconv.Itoa(int(unix.Major(o.rdev))) + "-" + strconv.Itoa(int(unix.Minor(o.rdev)))
	case unix.S_IFIFO:
		s += ":pipe"
	case unix.S_IFSOCK:
		s += ":socket"
	}
	return s
}

// applyOverride rewrites st from the override xattr of e in l, if any.
func applyOverride(l *layer, e entry, st *unix.Stat_t) {
	if !l.override {
		return
	}
	if v, ok := e.getxattrString(overrideXattr); ok {
		applyOverrideValue(v, st)
	}
}

// applyOverrideValue rewrites st from an override xattr's value.
func applyOverrideValue(v string, st *unix.Stat_t) {
	o, ok := parseOverride(v)
	if !ok {
		return
	}
	st.Uid, st.Gid = o.uid, o.gid
	typ := st.Mode & unix.S_IFMT
	if o.typ != 0 && typ == unix.S_IFREG && (o.typ == unix.S_IFCHR || o.typ == unix.S_IFBLK || o.typ == unix.S_IFIFO || o.typ == unix.S_IFSOCK) {
		// A device the unpacking user could not create: an empty file
		// that stands for it.
		typ = o.typ
		st.Rdev = o.rdev
	}
	st.Mode = typ | o.mode&07777
}

func statToAttr(st *unix.Stat_t, a *fuse.Attr) {
	a.Ino = st.Ino
	a.Size = uint64(st.Size)
	a.Blocks = uint64(st.Blocks)
	a.Atime, a.Atimensec = uint64(st.Atim.Sec), uint32(st.Atim.Nsec)
	a.Mtime, a.Mtimensec = uint64(st.Mtim.Sec), uint32(st.Mtim.Nsec)
	a.Ctime, a.Ctimensec = uint64(st.Ctim.Sec), uint32(st.Ctim.Nsec)
	a.Mode = st.Mode
	a.Nlink = uint32(st.Nlink)
	a.Uid, a.Gid = st.Uid, st.Gid
	a.Rdev = uint32(st.Rdev)
	a.Blksize = uint32(st.Blksize)
}
