package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// childNode returns the node of name in parent, looking it up if the
// kernel has not.
func (n *node) childNode(ctx context.Context, name string) (*node, syscall.Errno) {
	if ch := n.GetChild(name); ch != nil {
		return ch.Operations().(*node), 0
	}
	var out fuse.EntryOut
	ch, errno := n.Lookup(ctx, name, &out)
	if errno != 0 {
		return nil, errno
	}
	return ch.Operations().(*node), 0
}

// hasLowerDir: a directory with lower parts cannot move without a
// redirect, which strata does not write; overlayfs answers EXDEV too, and
// mv(1) then copies.
func (r *resolved) hasLowerDir() bool {
	return r.st.Mode&unix.S_IFMT == unix.S_IFDIR && !r.opaque && len(r.dirLowers) > 0
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	u := n.u
	np := newParent.(*node)
	src, errno := u.resolve(n, name, true)
	if errno != 0 {
		return errno
	}
	srcIsDir := src.st.Mode&unix.S_IFMT == unix.S_IFDIR
	dst, derr := u.resolve(np, newName, true)
	dstExists := derr == 0
	if derr != 0 && derr != syscall.ENOENT {
		return derr
	}
	dstIsDir := dstExists && dst.st.Mode&unix.S_IFMT == unix.S_IFDIR
	exchange := flags&unix.RENAME_EXCHANGE != 0
	switch {
	case flags&unix.RENAME_NOREPLACE != 0 && dstExists:
		return syscall.EEXIST
	case exchange && !dstExists:
		return syscall.ENOENT
	case src.hasLowerDir() || (exchange && dst.hasLowerDir()):
		return syscall.EXDEV
	case !exchange && dstExists && dstIsDir && !srcIsDir:
		return syscall.EISDIR
	case !exchange && dstExists && !dstIsDir && srcIsDir:
		return syscall.ENOTDIR
	}
	// A target directory only in the upper is checked by rename(2) itself;
	// overlayfs leaves it to the upper filesystem too, after marking the
	// source opaque (which the upper then shows even if rename fails).
	dstPureUpper := dstIsDir && dst.hasUpper && (dst.opaque || len(dst.dirLowers) == 0)
	if !exchange && dstIsDir && !dstPureUpper {
		if errno := u.emptyInUnion(np, newName, &dst); errno != 0 {
			return errno
		}
	}
	srcNode, errno := n.childNode(ctx, name)
	if errno != 0 {
		return errno
	}
	if errno := u.copyUp(n); errno != 0 {
		return errno
	}
	if errno := u.copyUpAs(srcNode, n, name); errno != 0 {
		return errno
	}
	if errno := u.copyUp(np); errno != 0 {
		return errno
	}
	var dstNode *node
	dstIndex := ""
	if dstExists {
		if dstNode, errno = np.childNode(ctx, newName); errno != 0 {
			return errno
		}
		if exchange {
			if errno := u.copyUpAs(dstNode, np, newName); errno != 0 {
				return errno
			}
		} else if dstNode != srcNode {
			if dstIndex, errno = u.prepareHardlink(ctx, np, newName, &dst); errno != 0 {
				return errno
			}
		}
	}
	u.copyMu.Lock()
	defer u.copyMu.Unlock()
	n.dropListing()
	np.dropListing()
	surel, durel := n.upperRel(), np.upperRel()
	srcRel, dstRel := join(surel, name), join(durel, newName)
	if exchange {
		// Each directory that lands in a merged parent is marked opaque,
		// as overlayfs marks it.
		if srcIsDir && !src.opaque && np.isMerged() {
			if err := unix.Lsetxattr(xattrPath(u.upper, srcRel), u.opaqueXattr, []byte("y"), 0); err != nil {
				return errnoOf(err)
			}
			srcNode.setOpaque()
		}
		if dstIsDir && !dst.opaque && n.isMerged() {
			if err := unix.Lsetxattr(xattrPath(u.upper, dstRel), u.opaqueXattr, []byte("y"), 0); err != nil {
				return errnoOf(err)
			}
			dstNode.setOpaque()
		}
		return errnoOf(unix.Renameat2(u.upper.fd, srcRel, u.upper.fd, dstRel, unix.RENAME_EXCHANGE))
	}

	// Clear the way: an upper directory at the target holds only
	// whiteouts; move it aside and delete it once the rename is done.
	var aside string
	if dstIsDir && dst.hasUpper && !dstPureUpper {
		aside = u.tmpName()
		if err := unix.Renameat(u.upper.fd, dstRel, u.workFd, aside); err != nil {
			return errnoOf(err)
		}
	}
	wdev, wfile := u.whiteoutAt(durel, newName)
	// A directory moved under a merged parent is marked opaque, as
	// overlayfs marks it, and must be where lower entries of the target
	// name would otherwise show through.
	madeOpaque := srcIsDir && !src.opaque && (wdev || wfile || np.isMerged() || (dstExists && u.needsWhiteout(np, newName, &dst)))
	if madeOpaque {
		// Lower entries under the target name must stay hidden.
		if err := unix.Lsetxattr(xattrPath(u.upper, srcRel), u.opaqueXattr, []byte("y"), 0); err != nil {
			return errnoOf(err)
		}
	}
	srcWhiteout := u.needsWhiteout(n, name, &src)
	var err error
	if srcIsDir && wdev {
		err = unix.Renameat2(u.upper.fd, srcRel, u.upper.fd, dstRel, unix.RENAME_EXCHANGE)
		if err == nil {
			// srcRel now holds the old whiteout of the target.
			if !srcWhiteout {
				unix.Unlinkat(u.upper.fd, srcRel, 0)
			}
			srcWhiteout = false
		}
	} else if srcWhiteout && u.charWhiteouts {
		err = unix.Renameat2(u.upper.fd, srcRel, u.upper.fd, dstRel, unix.RENAME_WHITEOUT)
		if err == nil {
			srcWhiteout = false
		} else if err == unix.EINVAL || err == unix.EPERM {
			err = unix.Renameat(u.upper.fd, srcRel, u.upper.fd, dstRel)
		}
	} else {
		err = unix.Renameat(u.upper.fd, srcRel, u.upper.fd, dstRel)
	}
	if err != nil {
		if aside != "" {
			unix.Renameat(u.workFd, aside, u.upper.fd, dstRel)
		}
		return errnoOf(err)
	}
	if aside != "" {
		u.removeUpperDir(u.workFd, aside)
	}
	if wfile {
		unix.Unlinkat(u.upper.fd, join(durel, whiteoutPrefix+newName), 0)
	}
	if srcWhiteout {
		if errno := u.writeWhiteout(surel, name); errno != 0 {
			return errno
		}
	}
	if dstIndex != "" {
		u.addLinks(dstIndex, -1)
	}
	if madeOpaque {
		srcNode.setOpaque()
	}
	return 0
}

func (n *node) setOpaque() {
	n.mu.Lock()
	n.opaque = true
	n.mu.Unlock()
}
