package unionfs

import (
	"strconv"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Without handles (zero-message opendir, and opens), nothing of strata's
// holds an inode the kernel still has open once its last name goes: a
// directory removed or renamed over while open, a file unlinked while
// open. Such a node is pinned at removal: an fd of the inode, opened
// through the resolved entry before the name goes, reached afterwards
// through its /proc/self/fd link (as an O_TMPFILE file is), and closed
// when the kernel forgets the node.

// pinDirs: directories the kernel may hold open without a handle.
func (u *unionFS) pinDirs() bool {
	return u.opts.Speed.ZeroOpendir && u.opts.Speed.CacheReaddir
}

// holdRemoved opens the inode r shows, which is about to lose its name,
// if child is a node the kernel knows; -1 if there is nothing to pin.
func (u *unionFS) holdRemoved(child *node, r *resolved) int {
	if child == nil || r.st.Mode&unix.S_IFMT != unix.S_IFDIR || !u.pinDirs() {
		return -1
	}
	e := r.visible()
	fd, errno := e.Open(unix.O_PATH|unix.O_DIRECTORY, 0)
	if errno != 0 {
		return -1
	}
	return fd
}

// adoptRemoved makes fd (from holdRemoved; -1: none) where n lives from
// now on, its name gone. ok false: the removal failed, fd is dropped.
func (n *node) adoptRemoved(fd int, ok bool) {
	if fd < 0 {
		return
	}
	if !ok {
		unix.Close(fd)
		return
	}
	n.mu.Lock()
	old := n.pin
	n.pin = fd + 1
	n.tmpPath = "/proc/self/fd/" + strconv.Itoa(fd)
	n.listing = []fuse.DirEntry{}
	n.mu.Unlock()
	if old > 0 {
		unix.Close(old - 1)
	}
}

// removed reports whether n lost its last name (see adoptRemoved).
func (n *node) removed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pin > 0
}

// unpin closes the pinned fd once the kernel forgot the node.
func (n *node) unpin() {
	n.mu.Lock()
	fd := n.pin - 1
	n.pin = 0
	n.mu.Unlock()
	if fd >= 0 {
		unix.Close(fd)
	}
}

// knownChild is the node of name in n if the kernel has it, else nil.
func (n *node) knownChild(name string) *node {
	if ch := n.GetChild(name); ch != nil {
		return ch.Operations().(*node)
	}
	return nil
}
