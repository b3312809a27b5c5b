package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

var (
	_ fs.NodeUnlinker = (*node)(nil)
	_ fs.NodeRmdirer  = (*node)(nil)
	_ fs.NodeRenamer  = (*node)(nil)
)

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	u := n.u
	r, errno := u.resolve(n, name, true)
	if errno != 0 {
		return errno
	}
	defer func() { r.close() }()
	if errno := u.copyUp(n); errno != 0 {
		return errno
	}
	index, errno := u.prepareHardlink(ctx, n, name, &r)
	if errno != 0 {
		return errno
	}
	u.copyMu.Lock()
	defer u.copyMu.Unlock()
	if errno := u.remove(n, name, &r, false); errno != 0 {
		return errno
	}
	if index != "" {
		u.addLinks(index, -1)
	}
	return 0
}

// prepareHardlink: before a name of a hard-linked file goes away, the file
// is copied up into the index (as overlayfs does), so the union's link
// count has a place to live. It returns the index key, or "" for a file
// with one name, and refreshes r.
func (u *unionFS) prepareHardlink(ctx context.Context, parent *node, name string, r *resolved) (string, syscall.Errno) {
	if r.st.Mode&unix.S_IFMT != unix.S_IFREG || (r.st.Nlink < 2 && !r.hasUpper) {
		return "", 0
	}
	child, errno := parent.childNode(ctx, name)
	if errno != 0 {
		return "", errno
	}
	child.mu.Lock()
	index := child.index
	child.mu.Unlock()
	if index == "" && (r.hasUpper || r.st.Nlink < 2) {
		return "", 0
	}
	if errno := u.copyUpAs(child, parent, name); errno != 0 {
		return "", errno
	}
	child.mu.Lock()
	index = child.index
	child.mu.Unlock()
	nr, errno := u.resolve(parent, name, true)
	if errno != 0 {
		return "", errno
	}
	r.close()
	*r = nr
	return index, 0
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	u := n.u
	r, errno := u.resolve(n, name, true)
	if errno != 0 {
		return errno
	}
	defer r.close()
	if r.st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return syscall.ENOTDIR
	}
	if errno := u.emptyInUnion(n, name, &r); errno != 0 {
		return errno
	}
	if errno := u.copyUp(n); errno != 0 {
		return errno
	}
	u.copyMu.Lock()
	defer u.copyMu.Unlock()
	return u.remove(n, name, &r, true)
}

// emptyInUnion fails with ENOTEMPTY unless directory name of parent shows
// no entries (it may still hold whiteouts in the upper). r is name's
// resolution in parent.
func (u *unionFS) emptyInUnion(parent *node, name string, r *resolved) syscall.Errno {
	probe := &node{u: u, hasUpper: r.hasUpper, opaque: r.opaque, dirLowers: r.dirLowers, lower: r.lower}
	probe.lowerPath = join(parent.lowerRel(), name)
	ud := dirRef{fd: -1}
	if r.hasUpper {
		var errno syscall.Errno
		if ud, errno = r.up.openDir(); errno != 0 {
			return errno
		}
		defer ud.Close()
	}
	entries, errno := u.mergedAt(probe, ud)
	if errno != 0 {
		return errno
	}
	if len(entries) > 0 {
		return syscall.ENOTEMPTY
	}
	return 0
}

// needsWhiteout: does deleting name from parent have to hide a lower entry?
func (u *unionFS) needsWhiteout(parent *node, name string, r *resolved) bool {
	if r.inLower {
		return true
	}
	if r.opaque || (r.hasUpper && r.st.Mode&unix.S_IFMT != unix.S_IFDIR) {
		// resolve stopped before the lowers.
		return u.lowerPositive(parent, name)
	}
	return false
}

// remove deletes name from the union; copyMu is held and parent has an
// upper dir. Where a lower still shows the name, a whiteout replaces the
// upper entry in one rename, so no moment shows the lower entry again.
func (u *unionFS) remove(parent *node, name string, r *resolved, isDir bool) syscall.Errno {
	parent.dropListing()
	pd, errno := parent.upperDir()
	if errno != 0 {
		return errno
	}
	defer pd.Close()
	dst := pd.at(name)
	whiteout := u.needsWhiteout(parent, name, r)
	if !r.hasUpper {
		if whiteout {
			return u.writeWhiteout(dst)
		}
		return 0
	}
	if !whiteout {
		if isDir {
			return removeUpperDir(dst)
		}
		return dst.Unlink(0)
	}
	if !u.charWhiteouts {
		if errno := u.writeWhiteout(dst); errno != 0 {
			return errno
		}
		if isDir {
			return removeUpperDir(dst)
		}
		return dst.Unlink(0)
	}
	tmp := u.workEntry(u.tmpName())
	if errno := tmp.Mknod(unix.S_IFCHR, 0); errno != 0 {
		return errno
	}
	if isDir {
		if errno := renameEntries(tmp, dst, unix.RENAME_EXCHANGE); errno != 0 {
			tmp.Unlink(0)
			return errno
		}
		return removeUpperDir(tmp)
	}
	if errno := renameEntries(tmp, dst, 0); errno != 0 {
		tmp.Unlink(0)
		return errno
	}
	return 0
}

// writeWhiteout marks e, a name in an upper dir, as deleted.
func (u *unionFS) writeWhiteout(e entry) syscall.Errno {
	if u.charWhiteouts {
		errno := e.Mknod(unix.S_IFCHR, 0)
		if errno == syscall.EEXIST {
			return 0
		}
		return errno
	}
	fd, errno := e.sibling(ovl.WhiteoutName(e.name)).Open(unix.O_CREAT|unix.O_WRONLY, 0o600)
	if errno != 0 {
		return errno
	}
	unix.Close(fd)
	return 0
}

// removeUpperDir removes a directory the union shows as empty: it may
// hold whiteouts, never data.
func removeUpperDir(e entry) syscall.Errno {
	errno := e.Unlink(unix.AT_REMOVEDIR)
	if errno == syscall.ENOTEMPTY || errno == syscall.EEXIST {
		return removeAllAt(e.dir, e.name)
	}
	return errno
}
