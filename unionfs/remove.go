package unionfs

import (
	"context"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
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
	*r = nr
	return index, 0
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	u := n.u
	r, errno := u.resolve(n, name, true)
	if errno != 0 {
		return errno
	}
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
// no entries (it may still hold whiteouts in the upper).
func (u *unionFS) emptyInUnion(parent *node, name string, r *resolved) syscall.Errno {
	probe := &node{u: u, hasUpper: r.hasUpper, opaque: r.opaque, dirLowers: r.dirLowers, lower: r.lower}
	probe.lowerPath = join(parent.lowerRel(), name)
	entries, errno := u.mergedAt(probe, join(parent.upperRel(), name))
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
	urel := parent.upperRel()
	dst := join(urel, name)
	whiteout := u.needsWhiteout(parent, name, r)
	if !r.hasUpper {
		if whiteout {
			return u.writeWhiteout(urel, name)
		}
		return 0
	}
	if !whiteout {
		if isDir {
			return u.removeUpperDir(u.upper.fd, dst)
		}
		return errnoOf(unix.Unlinkat(u.upper.fd, dst, 0))
	}
	if !u.charWhiteouts {
		if errno := u.writeWhiteout(urel, name); errno != 0 {
			return errno
		}
		if isDir {
			return u.removeUpperDir(u.upper.fd, dst)
		}
		return errnoOf(unix.Unlinkat(u.upper.fd, dst, 0))
	}
	tmp := u.tmpName()
	if err := unix.Mknodat(u.workFd, tmp, unix.S_IFCHR, 0); err != nil {
		return errnoOf(err)
	}
	if isDir {
		if err := unix.Renameat2(u.workFd, tmp, u.upper.fd, dst, unix.RENAME_EXCHANGE); err != nil {
			unix.Unlinkat(u.workFd, tmp, 0)
			return errnoOf(err)
		}
		return u.removeUpperDir(u.workFd, tmp)
	}
	if err := unix.Renameat(u.workFd, tmp, u.upper.fd, dst); err != nil {
		unix.Unlinkat(u.workFd, tmp, 0)
		return errnoOf(err)
	}
	return 0
}

// writeWhiteout marks name in upper dir urel as deleted.
func (u *unionFS) writeWhiteout(urel, name string) syscall.Errno {
	if u.charWhiteouts {
		err := unix.Mknodat(u.upper.fd, join(urel, name), unix.S_IFCHR, 0)
		if err == unix.EEXIST {
			return 0
		}
		return errnoOf(err)
	}
	fd, err := unix.Openat(u.upper.fd, join(urel, whiteoutPrefix+name), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return errnoOf(err)
	}
	unix.Close(fd)
	return 0
}

// removeUpperDir removes a directory the union shows as empty: it may
// hold whiteouts, never data.
func (u *unionFS) removeUpperDir(dirfd int, rel string) syscall.Errno {
	err := unix.Unlinkat(dirfd, rel, unix.AT_REMOVEDIR)
	if err == unix.ENOTEMPTY || err == unix.EEXIST {
		if err := os.RemoveAll(u.workPath(dirfd, rel)); err != nil {
			return errnoOf(unwrapErrno(err))
		}
		return 0
	}
	return errnoOf(err)
}

func unwrapErrno(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
