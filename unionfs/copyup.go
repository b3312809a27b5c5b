package unionfs

import (
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// tmpName is a fresh name under WORK/work. Temporaries live there until
// renamed into place, so an interrupted copy-up is never visible and the
// next mount (strata's or the kernel's) clears it.
func (u *unionFS) tmpName() string {
	return "#strata-" + strconv.FormatUint(u.tmpSeq.Add(1), 36)
}

// copyUp gives n an upper entry, copying its parents first. It is a no-op
// for a node that already has one.
func (u *unionFS) copyUp(n *node) syscall.Errno {
	if u.upper == nil {
		return syscall.EROFS
	}
	n.mu.Lock()
	done := n.hasUpper && n.index == ""
	n.mu.Unlock()
	if done {
		return 0
	}
	u.copyMu.Lock()
	defer u.copyMu.Unlock()
	return u.copyUpLocked(n)
}

// copyUpLocked is copyUp with copyMu held. A hard-linked file whose data
// is in the index already still gets the name it is used by linked into
// the upper, as overlayfs does.
func (u *unionFS) copyUpLocked(n *node) syscall.Errno {
	n.mu.Lock()
	done := n.hasUpper && n.index == ""
	n.mu.Unlock()
	if done || n == u.root {
		return 0
	}
	parent, name := n.nameForCopyUp()
	if parent == nil {
		return syscall.ENOENT // unlinked meanwhile
	}
	return u.copyUpAsLocked(n, parent, name)
}

// nameForCopyUp picks the name a copy-up writes: the one the node was last
// looked up by, if it still names the node (for a hard link, the name the
// caller most likely used), else any.
func (n *node) nameForCopyUp() (*node, string) {
	n.mu.Lock()
	lp, ln := n.lastParent, n.lastName
	n.mu.Unlock()
	if lp != nil && lp.GetChild(ln) == &n.Inode {
		return lp, ln
	}
	name, parentInode := n.Parent()
	if parentInode == nil {
		return nil, ""
	}
	return parentInode.Operations().(*node), name
}

// copyUpAs copies n up under the given name of it: for a hard-linked
// file whose data is already in the index, it links that name too.
func (u *unionFS) copyUpAs(n *node, parent *node, name string) syscall.Errno {
	if u.upper == nil {
		return syscall.EROFS
	}
	u.copyMu.Lock()
	defer u.copyMu.Unlock()
	return u.copyUpAsLocked(n, parent, name)
}

func (u *unionFS) copyUpAsLocked(n *node, parent *node, name string) syscall.Errno {
	n.mu.Lock()
	done, index := n.hasUpper, n.index
	n.mu.Unlock()
	if done && index == "" {
		return 0
	}
	if errno := u.copyUpLocked(parent); errno != 0 {
		return errno
	}
	prel := parent.upperRel()
	// Copy-up changes nothing the union shows, not even the parent's times.
	defer u.keepTimes(prel)()
	if index != "" {
		// The data is in the index already; give this name a link to it.
		err := unix.Linkat(u.idxFd, index, u.upper.fd, join(parent.upperRel(), name), 0)
		if err != nil && err != unix.EEXIST {
			return errnoOf(err)
		}
		u.syncIndexNlink(index)
		return 0
	}
	src := u.layers[n.lower]
	srcRel := n.lowerRel()
	var st unix.Stat_t
	if errno := fstatat(src, srcRel, &st); errno != 0 {
		return errno
	}
	dstRel := join(prel, name)

	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
		return u.copyUpHardlink(n, src, srcRel, &st, dstRel)
	}
	tmp := u.tmpName()
	if errno := u.copyEntry(src, srcRel, &st, u.workFd, tmp); errno != 0 {
		return errno
	}
	var tst unix.Stat_t
	unix.Fstatat(u.workFd, tmp, &tst, unix.AT_SYMLINK_NOFOLLOW)
	// Replace, never merge: a whiteout or stale entry at dstRel would be a
	// bug elsewhere, but renaming over it keeps the on-disk state sane.
	if err := unix.Renameat(u.workFd, tmp, u.upper.fd, dstRel); err != nil {
		unix.Unlinkat(u.workFd, tmp, 0)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			unix.Unlinkat(u.workFd, tmp, unix.AT_REMOVEDIR)
		}
		return err.(syscall.Errno)
	}
	u.rememberOrigin(tst.Ino, n.StableAttr().Ino)
	n.mu.Lock()
	n.hasUpper = true
	n.mu.Unlock()
	return 0
}

// copyUpHardlink copies a lower file with several names once, into the
// index, and links the name being changed to it. Other names find the
// index at lookup, so every name keeps showing one file.
func (u *unionFS) copyUpHardlink(n *node, src *layer, srcRel string, st *unix.Stat_t, dstRel string) syscall.Errno {
	key := u.indexKey(src, srcRel, st.Ino)
	if u.indexed(key) == nil {
		tmp := u.tmpName()
		if errno := u.copyEntry(src, srcRel, st, u.workFd, tmp); errno != 0 {
			return errno
		}
		if errno := u.markIndexCopy(tmp, key, int(st.Nlink)); errno != 0 {
			unix.Unlinkat(u.workFd, tmp, 0)
			return errno
		}
		if err := unix.Renameat(u.workFd, tmp, u.idxFd, key); err != nil {
			unix.Unlinkat(u.workFd, tmp, 0)
			return err.(syscall.Errno)
		}
		var ist unix.Stat_t
		unix.Fstatat(u.idxFd, key, &ist, unix.AT_SYMLINK_NOFOLLOW)
		u.rememberOrigin(ist.Ino, n.StableAttr().Ino)
		u.inoMu.Lock()
		u.index[key] = &indexEntry{nlink: int(st.Nlink)}
		u.indexByIno[ist.Ino] = key
		u.inoMu.Unlock()
	}
	if err := unix.Linkat(u.idxFd, key, u.upper.fd, dstRel, 0); err != nil && err != unix.EEXIST {
		return err.(syscall.Errno)
	}
	u.syncIndexNlink(key)
	n.mu.Lock()
	n.index = key
	n.hasUpper = true
	n.mu.Unlock()
	return 0
}

// copyEntry recreates src's entry as dstName under dirfd, with data,
// owner, mode, xattrs and times.
func (u *unionFS) copyEntry(src *layer, srcRel string, st *unix.Stat_t, dirfd int, dstName string) syscall.Errno {
	mode := st.Mode & 07777
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdirat(dirfd, dstName, 0o700); err != nil {
			return err.(syscall.Errno)
		}
	case unix.S_IFREG:
		if errno := copyData(src, srcRel, dirfd, dstName); errno != 0 {
			return errno
		}
	case unix.S_IFLNK:
		buf := make([]byte, 4096)
		sz, err := unix.Readlinkat(src.fd, srcRel, buf)
		if err != nil {
			return err.(syscall.Errno)
		}
		if err := unix.Symlinkat(string(buf[:sz]), dirfd, dstName); err != nil {
			return err.(syscall.Errno)
		}
	default:
		if err := unix.Mknodat(dirfd, dstName, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
			return err.(syscall.Errno)
		}
	}
	dstPath := u.workPath(dirfd, dstName)
	copyXattrs(xattrPath(src, srcRel), dstPath, u.privateXattr)
	if u.realOwners {
		if err := unix.Fchownat(dirfd, dstName, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil && err != unix.EPERM && err != unix.EINVAL {
			return err.(syscall.Errno)
		}
	} else if !src.override {
		// The owner cannot be stored for real: keep it beside the file.
		o := overrideStat{uid: st.Uid, gid: st.Gid, mode: mode}
		unix.Lsetxattr(dstPath, overrideXattr, []byte(o.format()), 0)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		// After chown, which clears set-id bits.
		if err := unix.Fchmodat(dirfd, dstName, mode, 0); err != nil {
			return err.(syscall.Errno)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	unix.UtimesNanoAt(dirfd, dstName, ts, unix.AT_SYMLINK_NOFOLLOW)
	return 0
}

// keepTimes records the times of upper dir rel and returns a function that
// puts them back.
func (u *unionFS) keepTimes(rel string) func() {
	var st unix.Stat_t
	if fstatat(u.upper, rel, &st) != 0 {
		return func() {}
	}
	return func() {
		unix.UtimesNanoAt(u.upper.fd, dirOf(rel), []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	}
}

func (u *unionFS) workPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// privateXattr reports xattrs that describe the layer, not the file, and
// so must not travel with a copy-up.
func (u *unionFS) privateXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

// copyData copies a regular file by reflink where the filesystem shares
// extents, else by copy_file_range, else by read/write.
func copyData(src *layer, srcRel string, dirfd int, dstName string) syscall.Errno {
	in, err := unix.Openat(src.fd, srcRel, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err.(syscall.Errno)
	}
	defer unix.Close(in)
	out, err := unix.Openat(dirfd, dstName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err.(syscall.Errno)
	}
	defer unix.Close(out)
	if unix.IoctlFileClone(out, in) == nil {
		return 0
	}
	var st unix.Stat_t
	unix.Fstat(in, &st)
	remaining := st.Size
	for remaining > 0 {
		chunk := remaining
		if chunk > 1<<30 {
			chunk = 1 << 30
		}
		nc, err := unix.CopyFileRange(in, nil, out, nil, int(chunk), 0)
		if err != nil {
			if err == unix.EXDEV || err == unix.EOPNOTSUPP || err == unix.ENOSYS || err == unix.EINVAL {
				return copyPlain(in, out)
			}
			return err.(syscall.Errno)
		}
		if nc == 0 {
			break
		}
		remaining -= int64(nc)
	}
	return 0
}

func copyPlain(in, out int) syscall.Errno {
	buf := make([]byte, 1<<20)
	for {
		nr, err := unix.Read(in, buf)
		if err != nil {
			return err.(syscall.Errno)
		}
		if nr == 0 {
			return 0
		}
		if _, err := unix.Write(out, buf[:nr]); err != nil {
			return err.(syscall.Errno)
		}
	}
}

// copyXattrs copies every xattr of from onto to, except skipped ones.
func copyXattrs(from, to string, skip func(string) bool) {
	sz, err := unix.Llistxattr(from, nil)
	if err != nil || sz == 0 {
		return
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(from, buf)
	if err != nil {
		return
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" || skip(name) {
			continue
		}
		vsz, err := unix.Lgetxattr(from, name, nil)
		if err != nil {
			continue
		}
		val := make([]byte, vsz)
		vsz, err = unix.Lgetxattr(from, name, val)
		if err != nil {
			continue
		}
		unix.Lsetxattr(to, name, val[:vsz], 0)
	}
}
