package unionfs

import (
	"context"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	u := n.u
	if errno := u.copyUp(n); errno != 0 {
		return errno
	}
	l, e, errno := n.backing()
	var fileFd = -1
	if lf, ok := f.(*file); ok && f != nil {
		fileFd = lf.fd
		if errno == syscall.ENOENT && lf.l == u.upper {
			// Unlinked while open (ftruncate of a deleted temp file): the
			// open upper file itself is still there to change. Only an
			// upper fd: a lower one must never be written through.
			l, e, errno = u.upper, entry{dir: unix.AT_FDCWD, name: "/proc/self/fd/" + strconv.Itoa(lf.fd), magic: true}, 0
		}
	}
	if errno != 0 {
		return errno
	}
	defer e.Close()
	var st unix.Stat_t
	if errno := e.Stat(&st); errno != 0 {
		return errno
	}
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	override := l.override || !u.realOwners
	var cur ovl.Override
	hasOverride := false
	if override {
		if v, ok := e.getxattrString(ovl.OverrideXattr); ok {
			var err error
			cur, err = ovl.ParseOverride(v)
			hasOverride = err == nil
		}
	}
	mode, setMode := in.GetMode()
	uid, setUID := in.GetUID()
	gid, setGID := in.GetGID()
	if (setMode || setUID || setGID) && (hasOverride || !u.realOwners) && !isLink {
		if !hasOverride {
			cur = ovl.Override{UID: st.Uid, GID: st.Gid, Mode: st.Mode, Rdev: st.Rdev}
		}
		if cur.Mode&unix.S_IFMT == 0 {
			cur.Mode |= st.Mode & unix.S_IFMT
		}
		if setUID {
			cur.UID = uid
		}
		if setGID {
			cur.GID = gid
		}
		if setMode {
			cur.Mode = cur.Mode&unix.S_IFMT | mode&07777
		} else if (setUID || setGID) && st.Mode&unix.S_IFMT == unix.S_IFREG {
			cur.Mode &^= unix.S_ISUID | unix.S_ISGID // as chown(2) clears them
		}
		if errno := e.Setxattr(ovl.OverrideXattr, []byte(cur.Format()), 0); errno != 0 {
			return errno
		}
	} else {
		if setUID || setGID {
			su, sg := -1, -1
			if setUID {
				su = int(uid)
			}
			if setGID {
				sg = int(gid)
			}
			if errno := e.Chown(su, sg); errno != 0 {
				return errno
			}
		}
		if setMode && !isLink {
			if errno := e.Chmod(mode & 07777); errno != 0 {
				return errno
			}
		}
	}
	if size, ok := in.GetSize(); ok {
		if fileFd >= 0 {
			errno = errnoOf(unix.Ftruncate(fileFd, int64(size)))
		} else {
			errno = e.Truncate(int64(size))
		}
		if errno != 0 {
			return errno
		}
	}
	atime, setA := in.GetATime()
	mtime, setM := in.GetMTime()
	if setA || setM {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if setA {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
		}
		if setM {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
		}
		if errno := e.Utimes(ts); errno != 0 {
			return errno
		}
	}
	if errno := e.Stat(&st); errno != 0 {
		return errno
	}
	applyOverride(l, e, &st)
	n.fixIdentity(&st)
	statToAttr(&st, &out.Attr)
	n.setAttrTimeout(out)
	return 0
}

// hiddenXattr: layer bookkeeping that the union must not show or let
// callers change.
func (u *unionFS) hiddenXattr(name string) bool {
	return strings.HasPrefix(name, u.xattrPrefix) || name == ovl.OverrideXattr
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if n.u.hiddenXattr(attr) {
		return 0, syscall.ENODATA
	}
	_, e, errno := n.backing()
	if errno != 0 {
		return 0, errno
	}
	defer e.Close()
	sz, errno := e.Getxattr(attr, dest)
	return uint32(sz), errno
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	_, e, errno := n.backing()
	if errno != 0 {
		return 0, errno
	}
	defer e.Close()
	sz, errno := e.Listxattr(nil)
	if errno != 0 {
		return 0, errno
	}
	buf := make([]byte, sz)
	sz, errno = e.Listxattr(buf)
	if errno != 0 {
		return 0, errno
	}
	var out []byte
	for _, name := range strings.Split(string(buf[:sz]), "\x00") {
		if name == "" || n.u.hiddenXattr(name) {
			continue
		}
		out = append(out, name...)
		out = append(out, 0)
	}
	if len(dest) == 0 {
		return uint32(len(out)), 0
	}
	if len(out) > len(dest) {
		return uint32(len(out)), syscall.ERANGE
	}
	copy(dest, out)
	return uint32(len(out)), 0
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if n.u.hiddenXattr(attr) {
		return syscall.EPERM
	}
	if errno := n.u.copyUp(n); errno != 0 {
		return errno
	}
	_, e, errno := n.backing()
	if errno != 0 {
		return errno
	}
	defer e.Close()
	return e.Setxattr(attr, data, int(flags))
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.u.hiddenXattr(attr) {
		return syscall.EPERM
	}
	// Removing what is not there must not copy up (overlayfs checks too).
	_, e, errno := n.backing()
	if errno != 0 {
		return errno
	}
	_, errno = e.Getxattr(attr, nil)
	e.Close()
	if errno != 0 {
		return errno
	}
	if errno := n.u.copyUp(n); errno != 0 {
		return errno
	}
	if _, e, errno = n.backing(); errno != 0 {
		return errno
	}
	defer e.Close()
	return e.Removexattr(attr)
}
