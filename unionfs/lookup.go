package unionfs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/strata-run/strata/unionfs/ovl"
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
		return ok && ovl.IsOpaqueValue([]byte(v))
	}
	// Lowers may come from either kind of mount, or from OCI tarballs. One
	// listxattr answers for both xattr names on the many directories that
	// carry no xattrs at all.
	var names [512]byte
	if sz, errno := e.Listxattr(names[:]); errno == 0 && sz > 0 || errno == syscall.ERANGE {
		for _, name := range []string{u.opaqueXattr, ovl.UserPrefix + ovl.Opaque, ovl.TrustedPrefix + ovl.Opaque} {
			if v, ok := e.getxattrString(name); ok && ovl.IsOpaqueValue([]byte(v)) {
				return true
			}
		}
	}
	fd, err := openat2Beneath(e.dir, e.name+"/"+ovl.OpaqueMarker, unix.O_PATH|unix.O_NOFOLLOW)
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
			if ovl.IsWhiteoutDevice(&r.st) {
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
			if !u.charWhiteouts && r.up.sibling(ovl.WhiteoutName(name)).exists() {
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
		d, e := parent.lowerDir(li, plrel)
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
		if le.sibling(ovl.WhiteoutName(le.name)).exists() {
			return true, boolErrno(*found)
		}
		return false, 0
	default:
		return true, e
	}
	if ovl.IsWhiteoutDevice(&st) {
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

// applyOverride rewrites st from the override xattr of e in l, if any.
func applyOverride(l *layer, e entry, st *unix.Stat_t) {
	if !l.override {
		return
	}
	if v, ok := e.getxattrString(ovl.OverrideXattr); ok {
		applyOverrideValue(v, st)
	}
}

// applyOverrideValue rewrites st from an override xattr's value; one that
// cannot be read leaves st as it is on disk.
func applyOverrideValue(v string, st *unix.Stat_t) {
	if o, err := ovl.ParseOverride(v); err == nil {
		o.Apply(st)
	}
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
