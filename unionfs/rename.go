package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/strata-run/strata/unionfs/ovl"
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

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) (result syscall.Errno) {
	u := n.u
	np := newParent.(*node)
	src, errno := u.resolve(n, name, true)
	if errno != 0 {
		return errno
	}
	defer src.close()
	srcIsDir := src.st.Mode&unix.S_IFMT == unix.S_IFDIR
	dst, derr := u.resolve(np, newName, true)
	dstExists := derr == 0
	if derr != 0 && derr != syscall.ENOENT {
		return derr
	}
	defer dst.close()
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
			pin := u.holdRemoved(dstNode, &dst)
			defer func() { dstNode.adoptRemoved(pin, result == 0) }()
		}
	}
	u.copyMu.Lock()
	defer u.copyMu.Unlock()
	n.dropListing()
	np.dropListing()
	// The parents are held by fd from here on: whatever else moves, the
	// rename happens in the directories the kernel named.
	sd, errno := n.upperDir()
	if errno != 0 {
		return errno
	}
	defer sd.Close()
	dd, errno := np.upperDir()
	if errno != 0 {
		return errno
	}
	defer dd.Close()
	se, de := sd.at(name), dd.at(newName)
	defer u.holdTreeForRename(ctx)()
	if exchange {
		// Each directory that lands in a merged parent is marked opaque,
		// as overlayfs marks it.
		if srcIsDir && !src.opaque && np.isMerged() {
			if errno := se.Setxattr(u.opaqueXattr, []byte("y"), 0); errno != 0 {
				return errno
			}
			srcNode.setOpaque()
		}
		if dstIsDir && !dst.opaque && n.isMerged() {
			if errno := de.Setxattr(u.opaqueXattr, []byte("y"), 0); errno != 0 {
				return errno
			}
			dstNode.setOpaque()
		}
		return renameEntries(se, de, unix.RENAME_EXCHANGE)
	}

	// Clear the way: an upper directory at the target holds only
	// whiteouts; move it aside and delete it once the rename is done.
	var aside entry
	if dstIsDir && dst.hasUpper && !dstPureUpper {
		aside = u.workEntry(u.tmpName())
		if errno := renameEntries(de, aside, 0); errno != 0 {
			return errno
		}
	}
	wdev, wfile := u.whiteoutAt(de)
	// A directory moved under a merged parent is marked opaque, as
	// overlayfs marks it, and must be where lower entries of the target
	// name would otherwise show through.
	madeOpaque := srcIsDir && !src.opaque && (wdev || wfile || np.isMerged() || (dstExists && u.needsWhiteout(np, newName, &dst)))
	if madeOpaque {
		// Lower entries under the target name must stay hidden.
		if errno := se.Setxattr(u.opaqueXattr, []byte("y"), 0); errno != 0 {
			return errno
		}
	}
	srcWhiteout := u.needsWhiteout(n, name, &src)
	if srcIsDir && wdev {
		errno = renameEntries(se, de, unix.RENAME_EXCHANGE)
		if errno == 0 {
			// se now holds the old whiteout of the target.
			if !srcWhiteout {
				se.Unlink(0)
			}
			srcWhiteout = false
		}
	} else if srcWhiteout && u.charWhiteouts {
		errno = renameEntries(se, de, unix.RENAME_WHITEOUT)
		if errno == 0 {
			srcWhiteout = false
		} else if errno == syscall.EINVAL || errno == syscall.EPERM {
			errno = renameEntries(se, de, 0)
		}
	} else {
		errno = renameEntries(se, de, 0)
	}
	if errno != 0 {
		if aside.name != "" {
			renameEntries(aside, de, 0)
		}
		return errno
	}
	if aside.name != "" {
		removeUpperDir(aside)
	}
	if wfile {
		dd.at(ovl.WhiteoutName(newName)).Unlink(0)
	}
	if srcWhiteout {
		if errno := u.writeWhiteout(se); errno != 0 {
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

// holdTreeForRename takes treeMu for writing, so no operation makes a path
// from go-fuse's tree while the upper and the tree disagree. go-fuse moves
// its nodes only after Rename returns, so the lock is handed to
// rawFS.Rename, which releases it once that is done; the returned func
// releases it only where no such hand-over is possible.
func (u *unionFS) holdTreeForRename(ctx context.Context) (release func()) {
	u.treeMu.Lock()
	if fc, ok := ctx.(*fuse.Context); ok && fc.Cancel != nil {
		u.renameOwner.Store(fc.Cancel)
		return func() {}
	}
	return u.treeMu.Unlock
}
