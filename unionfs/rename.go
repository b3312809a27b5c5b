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

// renameOp is one rename on its way through its steps: check, copy up,
// then the change on disk (swap or move), under copyMu and the tree lock.
type renameOp struct {
	u                  *unionFS
	n, np              *node // old and new parent
	name, newName      string
	src, dst           *resolved
	srcIsDir, dstIsDir bool
	dstExists          bool
	exchange           bool
	// dstPureUpper: the target is a directory only in the upper, which
	// rename(2) itself checks for emptiness.
	dstPureUpper     bool
	srcNode, dstNode *node
	dstIndex         string // index key of a replaced hard-linked target
	se, de           entry  // the names in their held upper parents
	dd               dirRef // the new parent
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	u := n.u
	op := &renameOp{u: u, n: n, np: newParent.(*node), name: name, newName: newName, exchange: flags&unix.RENAME_EXCHANGE != 0}
	src, errno := u.resolve(n, name, true)
	if errno != 0 {
		return errno
	}
	defer src.close()
	dst, derr := u.resolve(op.np, newName, true)
	if derr != 0 && derr != syscall.ENOENT {
		return derr
	}
	defer dst.close()
	op.src, op.dst, op.dstExists = &src, &dst, derr == 0
	if errno := op.check(flags); errno != 0 {
		return errno
	}
	if errno := op.copyUp(ctx); errno != 0 {
		return errno
	}
	u.copyMu.Lock()
	defer u.copyMu.Unlock()
	n.dropListing()
	op.np.dropListing()
	// The parents are held by fd from here on: whatever else moves, the
	// rename happens in the directories the kernel named.
	sd, errno := n.upperDir()
	if errno != 0 {
		return errno
	}
	defer sd.Close()
	dd, errno := op.np.upperDir()
	if errno != 0 {
		return errno
	}
	defer dd.Close()
	op.se, op.de, op.dd = sd.at(name), dd.at(newName), dd
	defer u.holdTreeForRename(ctx)()
	if op.exchange {
		return op.swap()
	}
	return op.move()
}

// check refuses what overlayfs refuses, before anything is copied up.
func (op *renameOp) check(flags uint32) syscall.Errno {
	src, dst := op.src, op.dst
	op.srcIsDir = src.st.Mode&unix.S_IFMT == unix.S_IFDIR
	op.dstIsDir = op.dstExists && dst.st.Mode&unix.S_IFMT == unix.S_IFDIR
	switch {
	case flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0:
		// RENAME_WHITEOUT: overlayfs refuses it, and so must strata, or
		// the caller would believe a whiteout was left behind.
		return syscall.EINVAL
	case flags&unix.RENAME_NOREPLACE != 0 && op.dstExists:
		return syscall.EEXIST
	case op.exchange && !op.dstExists:
		return syscall.ENOENT
	case src.hasLowerDir() || (op.exchange && dst.hasLowerDir()):
		return syscall.EXDEV
	case !op.exchange && op.dstExists && op.dstIsDir && !op.srcIsDir:
		return syscall.EISDIR
	case !op.exchange && op.dstExists && !op.dstIsDir && op.srcIsDir:
		return syscall.ENOTDIR
	}
	// overlayfs leaves a pure-upper target to the upper filesystem, after
	// marking the source opaque (which the upper then shows even if the
	// rename fails).
	op.dstPureUpper = op.dstIsDir && dst.hasUpper && (dst.opaque || len(dst.dirLowers) == 0)
	if !op.exchange && op.dstIsDir && !op.dstPureUpper {
		return op.u.emptyInUnion(op.np, op.newName, dst)
	}
	return 0
}

// copyUp gives both parents, the source and (for an exchange) the target
// upper entries; a replaced hard-linked target moves into the index first.
func (op *renameOp) copyUp(ctx context.Context) syscall.Errno {
	u := op.u
	var errno syscall.Errno
	if op.srcNode, errno = op.n.childNode(ctx, op.name); errno != 0 {
		return errno
	}
	if errno := u.copyUp(op.n); errno != 0 {
		return errno
	}
	if errno := u.copyUpAs(op.srcNode, op.n, op.name); errno != 0 {
		return errno
	}
	if errno := u.copyUp(op.np); errno != 0 {
		return errno
	}
	if !op.dstExists {
		return 0
	}
	if op.dstNode, errno = op.np.childNode(ctx, op.newName); errno != 0 {
		return errno
	}
	if op.exchange {
		return u.copyUpAs(op.dstNode, op.np, op.newName)
	}
	if op.dstNode != op.srcNode {
		op.dstIndex, errno = u.prepareHardlink(ctx, op.np, op.newName, op.dst)
	}
	return errno
}

// swap is RENAME_EXCHANGE. Each directory that lands in a merged parent
// is marked opaque, as overlayfs marks it.
func (op *renameOp) swap() syscall.Errno {
	u := op.u
	if op.srcIsDir && !op.src.opaque && op.np.isMerged() {
		if errno := op.se.Setxattr(u.opaqueXattr, []byte("y"), 0); errno != 0 {
			return errno
		}
		op.srcNode.setOpaque()
	}
	if op.dstIsDir && !op.dst.opaque && op.n.isMerged() {
		if errno := op.de.Setxattr(u.opaqueXattr, []byte("y"), 0); errno != 0 {
			return errno
		}
		op.dstNode.setOpaque()
	}
	return renameEntries(op.se, op.de, unix.RENAME_EXCHANGE)
}

// move is a plain rename: over a whiteout or an emptied directory where
// one stands, leaving a whiteout where a lower still shows the old name.
func (op *renameOp) move() syscall.Errno {
	u, src, dst := op.u, op.src, op.dst
	// Clear the way: an upper directory at the target holds only
	// whiteouts; move it aside and delete it once the rename is done.
	var aside entry
	if op.dstIsDir && dst.hasUpper && !op.dstPureUpper {
		aside = u.workEntry(u.tmpName())
		if errno := renameEntries(op.de, aside, 0); errno != 0 {
			return errno
		}
	}
	wdev, wfile := u.whiteoutAt(op.de)
	// A directory moved under a merged parent is marked opaque, as
	// overlayfs marks it, and must be where lower entries of the target
	// name would otherwise show through.
	madeOpaque := op.srcIsDir && !src.opaque && (wdev || wfile || op.np.isMerged() || (op.dstExists && u.needsWhiteout(op.np, op.newName, dst)))
	if madeOpaque {
		if errno := op.se.Setxattr(u.opaqueXattr, []byte("y"), 0); errno != 0 {
			return errno
		}
	}
	srcWhiteout := u.needsWhiteout(op.n, op.name, src)
	var errno syscall.Errno
	if op.srcIsDir && wdev {
		errno = renameEntries(op.se, op.de, unix.RENAME_EXCHANGE)
		if errno == 0 {
			// se now holds the old whiteout of the target.
			if !srcWhiteout {
				op.se.Unlink(0)
			}
			srcWhiteout = false
		}
	} else if srcWhiteout && u.charWhiteouts {
		errno = renameEntries(op.se, op.de, unix.RENAME_WHITEOUT)
		if errno == 0 {
			srcWhiteout = false
		} else if errno == syscall.EINVAL || errno == syscall.EPERM {
			errno = renameEntries(op.se, op.de, 0)
		}
	} else {
		errno = renameEntries(op.se, op.de, 0)
	}
	if errno != 0 {
		if aside.name != "" {
			renameEntries(aside, op.de, 0)
		}
		return errno
	}
	if aside.name != "" {
		removeUpperDir(aside)
	}
	if wfile {
		op.dd.at(ovl.WhiteoutName(op.newName)).Unlink(0)
	}
	if srcWhiteout {
		if errno := u.writeWhiteout(op.se); errno != 0 {
			return errno
		}
	}
	if op.dstIndex != "" {
		u.addLinks(op.dstIndex, -1)
	}
	if madeOpaque {
		op.srcNode.setOpaque()
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
// renameLocker, which releases it once that is done; the returned func
// releases it only where no such hand-over is possible.
func (u *unionFS) holdTreeForRename(ctx context.Context) (release func()) {
	u.treeMu.Lock()
	if fc, ok := ctx.(*fuse.Context); ok && fc.Cancel != nil {
		u.renameOwner.Store(fc.Cancel)
		return func() {}
	}
	return u.treeMu.Unlock
}

// noRenameOwner is renameOwner's value while no rename holds treeMu.
var noRenameOwner <-chan struct{}

// renameLocker is the raw filesystem go-fuse serves: its own, with Rename
// releasing treeMu once go-fuse's tree shows what the rename did on disk.
// Requests are told apart by their cancel channel, which go-fuse makes
// per request.
type renameLocker struct {
	fuse.RawFileSystem
	u *unionFS
}

func (r renameLocker) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	st := r.RawFileSystem.Rename(cancel, in, oldName, newName)
	if r.u.renameOwner.CompareAndSwap(cancel, noRenameOwner) {
		r.u.treeMu.Unlock()
	}
	return st
}
