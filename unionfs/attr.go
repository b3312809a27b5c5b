package unionfs

import (
	"context"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// xattrTarget is the path the xattr calls use for the node's backing entry.
func (n *node) xattrTarget() string {
	l, fd, rel := n.backing()
	if fd == n.u.idxFd {
		return n.u.workPath(fd, rel)
	}
	return xattrPath(l, rel)
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	u := n.u
	if errno := u.copyUp(n); errno != 0 {
		return errno
	}
	l, fd, rel := n.backing()
	var fileFd = -1
	if lf, ok := f.(*file); ok && f != nil {
		fileFd = lf.fd
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, dirOf(rel), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return errnoOf(err)
	}
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	override := l.override || !u.realOwners
	var cur overrideStat
	hasOverride := false
	if override {
		if v, ok := getxattrString(n.xattrTarget(), overrideXattr); ok {
			cur, hasOverride = parseOverride(v)
		}
	}
	mode, setMode := in.GetMode()
	uid, setUID := in.GetUID()
	gid, setGID := in.GetGID()
	if (setMode || setUID || setGID) && (hasOverride || !u.realOwners) && !isLink {
		if !hasOverride {
			cur = overrideStat{uid: st.Uid, gid: st.Gid, mode: st.Mode & 07777}
		}
		if setUID {
			cur.uid = uid
		}
		if setGID {
			cur.gid = gid
		}
		if setMode {
			cur.mode = mode & 07777
		} else if (setUID || setGID) && st.Mode&unix.S_IFMT == unix.S_IFREG {
			cur.mode &^= unix.S_ISUID | unix.S_ISGID // as chown(2) clears them
		}
		if err := unix.Lsetxattr(n.xattrTarget(), overrideXattr, []byte(cur.format()), 0); err != nil {
			return errnoOf(err)
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
			if err := unix.Fchownat(fd, dirOf(rel), su, sg, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return errnoOf(err)
			}
		}
		if setMode && !isLink {
			if err := unix.Fchmodat(fd, dirOf(rel), mode&07777, 0); err != nil {
				return errnoOf(err)
			}
		}
	}
	if size, ok := in.GetSize(); ok {
		var err error
		if fileFd >= 0 {
			err = unix.Ftruncate(fileFd, int64(size))
		} else {
			var tfd int
			tfd, err = unix.Openat(fd, rel, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
			if err == nil {
				err = unix.Ftruncate(tfd, int64(size))
				unix.Close(tfd)
			}
		}
		if err != nil {
			return errnoOf(err)
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
		if err := unix.UtimesNanoAt(fd, dirOf(rel), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return errnoOf(err)
		}
	}
	if errno := n.stat(&st); errno != 0 {
		return errno
	}
	statToAttr(&st, &out.Attr)
	n.setAttrTimeout(out)
	return 0
}

// hiddenXattr: layer bookkeeping that the union must not show or let
// callers change.
func (u *unionFS) hiddenXattr(name string) bool {
	return strings.HasPrefix(name, u.xattrPrefix) || name == overrideXattr
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if n.u.hiddenXattr(attr) {
		return 0, syscall.ENODATA
	}
	sz, err := unix.Lgetxattr(n.xattrTarget(), attr, dest)
	return uint32(sz), errnoOf(err)
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	p := n.xattrTarget()
	sz, err := unix.Llistxattr(p, nil)
	if err != nil {
		return 0, errnoOf(err)
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return 0, errnoOf(err)
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
	return errnoOf(unix.Lsetxattr(n.xattrTarget(), attr, data, int(flags)))
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.u.hiddenXattr(attr) {
		return syscall.EPERM
	}
	// Removing what is not there must not copy up (overlayfs checks too).
	if _, err := unix.Lgetxattr(n.xattrTarget(), attr, nil); err != nil {
		return errnoOf(err)
	}
	if errno := n.u.copyUp(n); errno != 0 {
		return errno
	}
	return errnoOf(unix.Lremovexattr(n.xattrTarget(), attr))
}
