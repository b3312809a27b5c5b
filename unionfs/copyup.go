package unionfs

import (
	"strconv"
	"strings"
	"syscall"

	"github.com/strata-run/strata/unionfs/ovl"
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
	pd, errno := parent.upperDir()
	if errno != 0 {
		return errno
	}
	defer pd.Close()
	// Copy-up changes nothing the union shows, not even the parent's times.
	defer keepTimes(pd.at("."))()
	dst := pd.at(name)
	if index != "" {
		// The data is in the index already; give this name a link to it.
		if errno := linkEntries(u.indexEntry(index), dst); errno != 0 && errno != syscall.EEXIST {
			return errno
		}
		u.syncIndexNlink(index)
		return 0
	}
	l := u.layers[n.lower]
	src, errno := entryAt(l.fd, n.lowerRel())
	if errno != 0 {
		return errno
	}
	defer src.Close()
	var st unix.Stat_t
	if errno := src.Stat(&st); errno != 0 {
		return errno
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
		return u.copyUpHardlink(n, l, src, &st, dst)
	}
	tmp := u.workEntry(u.tmpName())
	if errno := u.copyEntry(l, src, &st, tmp); errno != 0 {
		removeAllAt(tmp.dir, tmp.name)
		return errno
	}
	var tst unix.Stat_t
	tmp.Stat(&tst)
	// Replace, never merge: a whiteout or stale entry at dst would be a
	// bug elsewhere, but renaming over it keeps the on-disk state sane.
	if errno := renameEntries(tmp, dst, 0); errno != 0 {
		removeAllAt(tmp.dir, tmp.name)
		return errno
	}
	u.rememberOrigin(tst.Ino, n.StableAttr().Ino)
	n.mu.Lock()
	n.hasUpper = true
	n.mu.Unlock()
	return 0
}

// copyUpHardlink copies a lower file with several names once, into the
// index, and links the name being changed (dst) to it. Other names find
// the index at lookup, so every name keeps showing one file.
func (u *unionFS) copyUpHardlink(n *node, l *layer, src entry, st *unix.Stat_t, dst entry) syscall.Errno {
	key := u.indexKey(l, src, st.Ino)
	if u.indexed(key) == nil {
		tmp := u.workEntry(u.tmpName())
		if errno := u.copyEntry(l, src, st, tmp); errno != 0 {
			tmp.Unlink(0)
			return errno
		}
		if errno := u.markIndexCopy(tmp, key, int(st.Nlink)); errno != 0 {
			tmp.Unlink(0)
			return errno
		}
		ie := u.indexEntry(key)
		if errno := renameEntries(tmp, ie, 0); errno != 0 {
			tmp.Unlink(0)
			return errno
		}
		var ist unix.Stat_t
		ie.Stat(&ist)
		u.rememberOrigin(ist.Ino, n.StableAttr().Ino)
		u.inoMu.Lock()
		u.index[key] = &indexEntry{nlink: int(st.Nlink)}
		u.indexByIno[ist.Ino] = key
		u.inoMu.Unlock()
	}
	if errno := linkEntries(u.indexEntry(key), dst); errno != 0 && errno != syscall.EEXIST {
		return errno
	}
	u.syncIndexNlink(key)
	n.mu.Lock()
	n.index = key
	n.hasUpper = true
	n.mu.Unlock()
	return 0
}

// copyEntry recreates src's entry as dst, with data, owner, mode, xattrs
// and times.
func (u *unionFS) copyEntry(l *layer, src entry, st *unix.Stat_t, dst entry) syscall.Errno {
	mode := st.Mode & 07777
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if errno := dst.Mkdir(0o700); errno != 0 {
			return errno
		}
	case unix.S_IFREG:
		if errno := copyData(src, dst); errno != 0 {
			return errno
		}
	case unix.S_IFLNK:
		target, errno := src.Readlink()
		if errno != 0 {
			return errno
		}
		if errno := dst.Symlink(string(target)); errno != 0 {
			return errno
		}
	default:
		if errno := dst.Mknod(st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); errno != 0 {
			return errno
		}
	}
	copyXattrs(src, dst, u.privateXattr)
	if u.realOwners {
		if errno := dst.Chown(int(st.Uid), int(st.Gid)); errno != 0 && errno != syscall.EPERM && errno != syscall.EINVAL {
			return errno
		}
	} else if !l.override {
		// The owner cannot be stored for real: keep it beside the file.
		o := ovl.Override{UID: st.Uid, GID: st.Gid, Mode: st.Mode, Rdev: st.Rdev}
		dst.Setxattr(ovl.OverrideXattr, []byte(o.Format()), 0)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		// After chown, which clears set-id bits.
		if errno := dst.Chmod(mode); errno != 0 {
			return errno
		}
	}
	dst.Utimes([]unix.Timespec{st.Atim, st.Mtim})
	return 0
}

// keepTimes records the times of e and returns a function that puts them
// back.
func keepTimes(e entry) func() {
	var st unix.Stat_t
	if e.Stat(&st) != 0 {
		return func() {}
	}
	return func() { e.Utimes([]unix.Timespec{st.Atim, st.Mtim}) }
}

// workEntry names a temporary in the held WORK/work dir.
func (u *unionFS) workEntry(name string) entry { return entry{dir: u.workFd, name: name} }

// indexEntry names an entry of the held index dir.
func (u *unionFS) indexEntry(key string) entry { return entry{dir: u.idxFd, name: key} }

// privateXattr reports xattrs that describe the layer, not the file, and
// so must not travel with a copy-up.
func (u *unionFS) privateXattr(name string) bool {
	return ovl.IsOverlayXattr(name)
}

// copyData copies a regular file by reflink where the filesystem shares
// extents, else by copy_file_range, else by read/write.
func copyData(src, dst entry) syscall.Errno {
	in, errno := src.Open(unix.O_RDONLY, 0)
	if errno != 0 {
		return errno
	}
	defer unix.Close(in)
	out, errno := dst.Open(unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if errno != 0 {
		return errno
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
			return errnoOf(err)
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
			return errnoOf(err)
		}
		if nr == 0 {
			return 0
		}
		if _, err := unix.Write(out, buf[:nr]); err != nil {
			return errnoOf(err)
		}
	}
}

// copyXattrs copies every xattr of from onto to, except skipped ones.
func copyXattrs(from, to entry, skip func(string) bool) {
	sz, errno := from.Listxattr(nil)
	if errno != 0 || sz == 0 {
		return
	}
	buf := make([]byte, sz)
	sz, errno = from.Listxattr(buf)
	if errno != 0 {
		return
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" || skip(name) {
			continue
		}
		vsz, errno := from.Getxattr(name, nil)
		if errno != 0 {
			continue
		}
		val := make([]byte, vsz)
		vsz, errno = from.Getxattr(name, val)
		if errno != 0 {
			continue
		}
		to.Setxattr(name, val[:vsz], 0)
	}
}
