package unionfs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is one union inode. Where its data lives is derived, never cached as
// a path: see the package doc.
type node struct {
	fs.Inode
	u *unionFS

	mu       sync.Mutex
	hasUpper bool // an upper entry exists (for an indexed file: the index copy)
	// lower/lowerPath locate the topmost lower entry; lower paths never
	// change while mounted, so remembering them is safe.
	lower     int
	lowerPath string
	dirLowers []int // directories: lower layers merged, top first
	opaque    bool  // directories: the upper dir hides all lowers
	// index is the name under WORK/strata-index of a hard-linked copy-up;
	// it is where the data of every name of this file lives.
	index string
	// lastParent/lastName: the name this node was last looked up by, which
	// is the name a copy-up of a hard-linked file links into the upper.
	lastParent *node
	lastName   string
	// tmpPath reaches an O_TMPFILE file that has no name yet, or an
	// inode whose last name went while the kernel held it (see pin.go).
	tmpPath string
	pin     int   // fd+1 of a removed inode strata holds for the kernel; 0: none
	io      *ioFd // the backing fd of handle-less I/O (see iofd.go)
	// pinLower: the pinned inode is a lower file's, never to be written.
	pinLower bool
	// listing caches the merged directory listing (nil: not taken); every
	// change to the directory passes through this node and drops it.
	listing []fuse.DirEntry
	// kernelListed: the kernel was handed a listing it may cache (see
	// dropListing).
	kernelListed bool
	// lowerSize: the size of the lower file (it cannot change), which
	// decides at open whether passthrough pays.
	lowerSize int64
	// lowerFds: this directory's parts in its lowers, held (lowerdirs.go).
	lowerFds []lowerDirFd
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeReadlinker     = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeGetxattrer     = (*node)(nil)
	_ fs.NodeSetxattrer     = (*node)(nil)
	_ fs.NodeListxattrer    = (*node)(nil)
	_ fs.NodeRemovexattrer  = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
)

func (n *node) lowerRel() string {
	if n.lowerPath == "" {
		return "."
	}
	return n.lowerPath
}

// isMerged: the directory has an upper part and shows lower parts too.
func (n *node) isMerged() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hasUpper && !n.opaque && len(n.dirLowers) > 0
}

// upperRel is the node's path in the upper layer now. The root is ".".
// It is made from go-fuse's tree, which a rename changes only after the
// rename is done on disk: hold u.treeMu (read) from making the path to
// resolving it, so the two always agree (see rawFS).
func (n *node) upperRel() string {
	if n == n.u.root {
		return "."
	}
	p := n.Path(&n.u.root.Inode)
	if p == "" {
		return "."
	}
	return p
}

// upperEntry resolves the node's own upper entry beneath the upper root.
func (n *node) upperEntry() (entry, syscall.Errno) {
	n.u.treeMu.RLock()
	defer n.u.treeMu.RUnlock()
	return entryAt(n.u.upper.fd, n.upperRel())
}

// upperDir opens the node's upper directory, for acting on its entries.
func (n *node) upperDir() (dirRef, syscall.Errno) {
	n.u.treeMu.RLock()
	defer n.u.treeMu.RUnlock()
	return dirAt(n.u.upper.fd, n.upperRel())
}

// backing resolves where the node's data and attributes live at this
// moment: the layer and the entry there. The caller closes the entry.
func (n *node) backing() (*layer, entry, syscall.Errno) {
	n.mu.Lock()
	index, hasUpper, lower, lpath, tmp := n.index, n.hasUpper, n.lower, n.lowerRel(), n.tmpPath
	n.mu.Unlock()
	switch {
	case tmp != "":
		return n.u.upper, entry{dir: unix.AT_FDCWD, name: tmp, magic: true}, 0
	case index != "":
		return n.u.upper, entry{dir: n.u.idxFd, name: index}, 0
	case hasUpper:
		e, errno := n.upperEntry()
		return n.u.upper, e, errno
	default:
		l := n.u.layers[lower]
		e, errno := entryAt(l.fd, lpath)
		return l, e, errno
	}
}

// stat fills st with the node's attributes as the union shows them.
func (n *node) stat(st *unix.Stat_t) syscall.Errno {
	l, e, errno := n.backing()
	if errno != 0 {
		return errno
	}
	defer e.Close()
	if errno := e.Stat(st); errno != 0 {
		return errno
	}
	applyOverride(l, e, st)
	n.fixIdentity(st)
	return 0
}

func (n *node) fixIdentity(st *unix.Stat_t) {
	st.Ino = n.StableAttr().Ino
	n.mu.Lock()
	index := n.index
	merged := st.Mode&unix.S_IFMT == unix.S_IFDIR && len(n.dirLowers)+boolInt(n.hasUpper && !n.opaque) > 1
	n.mu.Unlock()
	if merged {
		st.Nlink = 1
	}
	if index != "" {
		if e := n.u.indexed(index); e != nil {
			n.u.inoMu.Lock()
			st.Nlink = uint64(e.nlink)
			n.u.inoMu.Unlock()
		}
	}
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	r, errno := n.u.resolve(n, name, false)
	if errno != 0 {
		return nil, errno
	}
	defer r.close()
	return n.u.newChild(ctx, n, name, &r, out), 0
}

// newChild turns a resolved entry into a node (shared with every other
// name of the same inode) and fills out.
func (u *unionFS) newChild(ctx context.Context, parent *node, name string, r *resolved, out *fuse.EntryOut) *fs.Inode {
	var ino uint64
	var indexKey string
	isReg := r.st.Mode&unix.S_IFMT == unix.S_IFREG
	if r.hasUpper {
		if isReg && u.kernelIndex {
			// A file the kernel copied up names its origin; it keeps the
			// origin's inode number there, and so must it here.
			u.learnOrigin(r.up, r.st.Ino)
		}
		ino = u.ino(u.upper, r.st.Ino)
		if r.st.Mode&unix.S_IFMT == unix.S_IFDIR && r.lower >= 0 {
			ino = u.upperDirIno(ino, r.opaque, u.layers[r.lower], r.lowerIno)
		}
		if isReg && r.st.Nlink > 1 {
			indexKey = u.indexOfUpper(r.up, r.st.Ino)
		}
	} else {
		ino = u.ino(r.layer, r.st.Ino)
		if isReg && r.st.Nlink > 1 && u.upper != nil {
			if key := u.indexKey(r.layer, r.low, r.st.Ino); u.indexed(key) != nil {
				indexKey = key
			}
		}
	}
	child := &node{u: u, lower: r.lower, dirLowers: r.dirLowers, opaque: r.opaque, hasUpper: r.hasUpper, lowerSize: r.st.Size}
	if r.lower >= 0 {
		child.lowerPath = r.lrel
	}
	if indexKey != "" {
		child.index = indexKey
		child.hasUpper = true
	}
	// The override may change the type (a device stored as an empty
	// file), and the inode's type is fixed at creation: apply it first.
	st := r.st
	applyOverride(r.layer, r.visible(), &st)
	// go-fuse merges inodes by number only after Lookup returns, keeping
	// the node it already had; the state of the node we return must
	// therefore go to that one. strata keeps its own registry of live
	// nodes, so every name of a hard link meets the same node here.
	u.nodesMu.Lock()
	existing := u.nodes[ino]
	//lint:ignore SA1019 OnForget drops a node from the registry only after go-fuse has processed the kernel's FORGET; Forgotten covers the moment in between, so a lookup then gets a fresh node instead of a dying one.
	if existing == nil || existing.Forgotten() || existing.StableAttr().Mode != st.Mode&unix.S_IFMT {
		parent.NewInode(ctx, child, fs.StableAttr{Mode: st.Mode & unix.S_IFMT, Ino: ino})
		u.nodes[ino] = child
		existing = child
	}
	u.nodesMu.Unlock()
	if existing != child {
		// Refresh what may have changed underneath it (a copy-up through
		// another name, a directory's layers).
		existing.mu.Lock()
		if r.hasUpper && existing.index == "" {
			existing.hasUpper = true
		}
		if existing.index == "" && indexKey != "" {
			existing.index, existing.hasUpper = indexKey, true
		}
		if r.st.Mode&unix.S_IFMT == unix.S_IFDIR {
			existing.dirLowers, existing.opaque, existing.hasUpper = r.dirLowers, r.opaque, r.hasUpper
			existing.lower, existing.lowerPath = r.lower, child.lowerPath
		}
		if existing.lower < 0 && r.lower >= 0 {
			existing.lower, existing.lowerPath = r.lower, child.lowerPath
		}
		existing.mu.Unlock()
	}
	ch := &existing.Inode
	existing.mu.Lock()
	existing.lastParent, existing.lastName = parent, name
	existing.mu.Unlock()
	if existing.index != "" {
		existing.stat(&st)
	} else {
		existing.fixIdentity(&st)
	}
	statToAttr(&st, &out.Attr)
	u.setTimeouts(r.hasUpper, out)
	if isReg && st.Nlink > 1 {
		// Which name of a hard link a caller uses decides which name a
		// copy-up links into the upper; only lookups tell, so the kernel
		// must not cache these names.
		out.SetEntryTimeout(0)
	}
	return ch
}

// visible is the entry of r.layer that the union shows.
func (r *resolved) visible() entry {
	if r.hasUpper {
		return r.up
	}
	return r.low
}

func (u *unionFS) setTimeouts(upper bool, out *fuse.EntryOut) {
	t := u.opts.Speed.LowerTimeout
	if upper {
		t = u.opts.Speed.UpperTimeout
	}
	out.SetEntryTimeout(t)
	out.SetAttrTimeout(t)
}

var _ fs.NodeOnForgetter = (*node)(nil)

// OnForget drops the node from the registry once the kernel forgot it.
func (n *node) OnForget() {
	n.closeLowerDirs()
	n.dropIO()
	n.unpin()
	n.u.nodesMu.Lock()
	if ino := n.StableAttr().Ino; n.u.nodes[ino] == n {
		delete(n.u.nodes, ino)
	}
	n.u.nodesMu.Unlock()
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if fg, ok := f.(fs.FileGetattrer); ok && f != nil {
		return fg.Getattr(ctx, out)
	}
	var st unix.Stat_t
	if errno := n.stat(&st); errno != 0 {
		return errno
	}
	statToAttr(&st, &out.Attr)
	n.setAttrTimeout(out)
	return 0
}

func (n *node) setAttrTimeout(out *fuse.AttrOut) {
	n.mu.Lock()
	upper := n.hasUpper
	n.mu.Unlock()
	if upper {
		out.SetTimeout(n.u.opts.Speed.UpperTimeout)
	} else {
		out.SetTimeout(n.u.opts.Speed.LowerTimeout)
	}
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	_, e, errno := n.backing()
	if errno != 0 {
		return nil, errno
	}
	defer e.Close()
	return e.Readlink()
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var s syscall.Statfs_t
	if err := syscall.Fstatfs(n.u.layers[0].fd, &s); err != nil {
		return errnoOf(err)
	}
	out.FromStatfsT(&s)
	return 0
}
