package unionfs

import (
	"context"
	"strconv"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

var (
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeMkdirer   = (*node)(nil)
	_ fs.NodeMknoder   = (*node)(nil)
	_ fs.NodeSymlinker = (*node)(nil)
	_ fs.NodeLinker    = (*node)(nil)
)

// owner is who a new entry belongs to: the caller, with the group of a
// set-group-id parent.
func (u *unionFS) owner(ctx context.Context, parent *node) (uid, gid uint32, sgid bool) {
	if c, ok := fuse.FromContext(ctx); ok {
		uid, gid = c.Uid, c.Gid
	} else {
		uid, gid = uint32(unix.Geteuid()), uint32(unix.Getegid())
	}
	var pst unix.Stat_t
	if parent.stat(&pst) == 0 && pst.Mode&unix.S_ISGID != 0 {
		gid, sgid = pst.Gid, true
	}
	return uid, gid, sgid
}

// whiteoutAt reports how e (a name in an upper dir) is deleted: by a 0/0
// device at the name itself, by a ".wh." file beside it, or not at all.
func (u *unionFS) whiteoutAt(e entry) (device, file bool) {
	var st unix.Stat_t
	if e.Stat(&st) == 0 && ovl.IsWhiteoutDevice(&st) {
		return true, false
	}
	if !u.charWhiteouts && e.sibling(ovl.WhiteoutName(e.name)).exists() {
		return false, true
	}
	return false, false
}

// place creates a new upper entry for name in parent by calling make on a
// temporary in the work dir, setting its owner, and moving it into place
// atomically, over a whiteout if one stands there. A directory created
// over a whiteout becomes opaque, so the deleted lower one stays hidden.
func (u *unionFS) place(ctx context.Context, parent *node, name string, mode uint32,
	make func(dirfd int, name string, perm uint32) error) syscall.Errno {
	return u.placeEntry(ctx, parent, name, mode, true, make)
}

// placeEntry is place; own=false leaves owner and mode alone (a new hard
// link is an existing inode). make gets the held work dir and a fresh name
// there; every *at call it makes must not follow that name.
func (u *unionFS) placeEntry(ctx context.Context, parent *node, name string, mode uint32, own bool,
	make func(dirfd int, name string, perm uint32) error) syscall.Errno {
	if errno := u.copyUp(parent); errno != 0 {
		return errno
	}
	u.copyMu.Lock()
	defer u.copyMu.Unlock()
	parent.dropListing()
	pd, errno := parent.upperDir()
	if errno != 0 {
		return errno
	}
	defer pd.Close()
	dst := pd.at(name)
	wdev, wfile := u.whiteoutAt(dst)
	isDir := mode&unix.S_IFMT == unix.S_IFDIR
	// A new directory must hide a lower one of the same name that an
	// earlier rmdir deleted. In a merged parent overlayfs marks every new
	// directory opaque (it saves lookups below); the upper must match.
	// (The kernel skips that optimisation with userxattr.)
	opaque := isDir && (wdev || wfile || (parent.isMerged() && !u.opts.UserXattr))

	tmp := u.workEntry(u.tmpName())
	// Made with its final permissions where the server may (the umask is
	// 0); an unprivileged server keeps owner access so it can still open
	// what it made, and setNewOwner corrects the mode.
	perm := mode & 0o777
	if !u.asRoot {
		perm |= 0o600
		if isDir {
			perm |= 0o700
		}
	}
	if err := make(tmp.dir, tmp.name, perm); err != nil {
		return errnoOf(err)
	}
	cleanup := func() { removeAllAt(tmp.dir, tmp.name) }
	if own {
		// A new inode may reuse the number of a deleted copy-up: it is
		// nobody's copy, whatever the map remembers.
		var nst unix.Stat_t
		if tmp.Stat(&nst) == 0 {
			u.forgetOrigin(nst.Ino)
		}
		if errno := u.setNewOwner(ctx, parent, tmp, mode, perm); errno != 0 {
			cleanup()
			return errno
		}
	}
	if opaque {
		if errno := tmp.Setxattr(u.opaqueXattr, []byte("y"), 0); errno != 0 {
			cleanup()
			return errno
		}
	}
	if wdev && isDir {
		// rename(2) cannot put a directory over a device: swap, then drop
		// the whiteout that lands in the work dir.
		errno = renameEntries(tmp, dst, unix.RENAME_EXCHANGE)
		if errno == 0 {
			tmp.Unlink(0)
		}
	} else if wdev {
		errno = renameEntries(tmp, dst, 0)
	} else {
		errno = renameEntries(tmp, dst, unix.RENAME_NOREPLACE)
	}
	if errno != 0 {
		cleanup()
		return errno
	}
	if wfile {
		pd.at(ovl.WhiteoutName(name)).Unlink(0)
	}
	return 0
}

// lowerPositive reports whether a lower merged into parent shows name,
// i.e. whether deleting it from the upper needs a whiteout.
func (u *unionFS) lowerPositive(parent *node, name string) bool {
	parent.mu.Lock()
	lowers, lrel := parent.dirLowers, parent.lowerRel()
	parent.mu.Unlock()
	for _, li := range lowers {
		d, errno := dirAt(u.layers[li].fd, lrel)
		if errno != 0 {
			continue
		}
		var st unix.Stat_t
		positive, hidden := d.at(name).Stat(&st) == 0, d.at(ovl.WhiteoutName(name)).exists()
		d.Close()
		if positive {
			return !ovl.IsWhiteoutDevice(&st)
		}
		if hidden {
			return false
		}
	}
	return false
}

// setNewOwner gives a new entry e (made with permissions made) the
// caller's owner and the requested mode, with as few calls as it can: most
// entries are made by the server's own user with their final mode already.
func (u *unionFS) setNewOwner(ctx context.Context, parent *node, e entry, mode, made uint32) syscall.Errno {
	uid, gid, sgid := u.owner(ctx, parent)
	perm := mode & 07777
	if sgid && mode&unix.S_IFMT == unix.S_IFDIR {
		perm |= unix.S_ISGID
	}
	if u.realOwners {
		if uid != u.euid || gid != u.egid {
			if errno := e.Chown(int(uid), int(gid)); errno != 0 {
				return errno
			}
		}
	} else {
		var st unix.Stat_t
		e.Stat(&st)
		if st.Uid != uid || st.Gid != gid || perm&^0o777 != 0 {
			o := ovl.Override{UID: uid, GID: gid, Mode: mode&unix.S_IFMT | perm}
			if errno := e.Setxattr(ovl.OverrideXattr, []byte(o.Format()), 0); errno != 0 {
				return errno
			}
		}
	}
	if mode&unix.S_IFMT != unix.S_IFLNK && (perm != made || perm&07000 != 0) {
		// Also after chown, which clears set-id bits.
		if errno := e.Chmod(perm); errno != 0 {
			return errno
		}
	}
	return 0
}

// added looks up a just-created name and hands the kernel its entry.
func (n *node) added(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	r, errno := n.u.resolve(n, name, false)
	if errno != 0 {
		return nil, errno
	}
	defer r.close()
	return n.u.newChild(ctx, n, name, &r, out), 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	errno := n.u.place(ctx, n, name, mode|unix.S_IFDIR, func(dirfd int, tmp string, perm uint32) error {
		return unix.Mkdirat(dirfd, tmp, perm)
	})
	if errno != 0 {
		return nil, errno
	}
	return n.added(ctx, name, out)
}

func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	errno := n.u.place(ctx, n, name, mode, func(dirfd int, tmp string, perm uint32) error {
		return unix.Mknodat(dirfd, tmp, mode&unix.S_IFMT|perm, int(dev))
	})
	if errno != 0 {
		return nil, errno
	}
	return n.added(ctx, name, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	errno := n.u.place(ctx, n, name, unix.S_IFLNK|0o777, func(dirfd int, tmp string, perm uint32) error {
		return unix.Symlinkat(target, dirfd, tmp)
	})
	if errno != 0 {
		return nil, errno
	}
	return n.added(ctx, name, out)
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	errno := n.u.place(ctx, n, name, mode|unix.S_IFREG, func(dirfd int, tmp string, perm uint32) error {
		fd, err := unix.Openat(dirfd, tmp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, perm)
		if err == nil {
			unix.Close(fd)
		}
		return err
	})
	if errno != 0 {
		return nil, nil, 0, errno
	}
	ch, errno := n.added(ctx, name, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	// The new node joins the tree only when Create returns, so it has no
	// path yet: open it in the parent's directory.
	child := ch.Operations().(*node)
	pd, errno := n.upperDir()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	fh, fuseFlags, errno := child.openAt(n.u.upper, pd.at(name), flags&^(unix.O_CREAT|unix.O_EXCL|unix.O_TRUNC))
	pd.Close()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, fh, fuseFlags, 0
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	u := n.u
	t := target.(*node)
	if errno := u.copyUp(t); errno != 0 {
		return nil, errno
	}
	_, src, errno := t.backing()
	if errno != 0 {
		return nil, errno
	}
	errno = u.placeEntry(ctx, n, name, unix.S_IFREG, false, func(dirfd int, tmp string, _ uint32) error {
		if errno := linkEntries(src, entry{dir: dirfd, name: tmp}); errno != 0 {
			return errno
		}
		return nil
	})
	src.Close()
	if errno == 0 && t.tmpPath != "" {
		// Named now: from here on it lives at its path like any file.
		t.mu.Lock()
		t.tmpPath = ""
		t.mu.Unlock()
	}
	if errno == 0 && t.index != "" {
		u.addLinks(t.index, 1)
	}
	if errno != 0 {
		return nil, errno
	}
	return n.added(ctx, name, out)
}

var _ fs.NodeTmpfiler = (*node)(nil)

// Tmpfile opens an unnamed file in the upper directory. It gets a name only
// if the caller links it through /proc/self/fd, which arrives as Link.
func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	if errno := u.copyUp(n); errno != 0 {
		return nil, nil, 0, errno
	}
	pd, errno := n.upperDir()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	fd, err := unix.Openat(pd.fd, ".", int(flags)|unix.O_TMPFILE|unix.O_CLOEXEC, mode&07777)
	pd.Close()
	if err != nil {
		return nil, nil, 0, errnoOf(err)
	}
	uid, gid, _ := u.owner(ctx, n)
	if u.realOwners {
		unix.Fchown(fd, int(uid), int(gid))
	}
	// A second descriptor keeps the inode reachable for Link and Getattr
	// after the caller's handle is gone.
	keep, err := unix.Dup(fd)
	if err != nil {
		unix.Close(fd)
		return nil, nil, 0, errnoOf(err)
	}
	var st unix.Stat_t
	unix.Fstat(fd, &st)
	u.forgetOrigin(st.Ino)
	child := &node{u: u, lower: -1, hasUpper: true, tmpPath: "/proc/self/fd/" + strconv.Itoa(keep)}
	ch := n.NewInode(ctx, child, fs.StableAttr{Mode: unix.S_IFREG, Ino: u.ino(u.upper, st.Ino)})
	child.fixIdentity(&st)
	statToAttr(&st, &out.Attr)
	lf := fs.NewLoopbackFile(fd).(*fs.LoopbackFile)
	return ch, &file{loopbackOps: lf, fd: fd, n: child, l: u.upper}, 0, 0
}
