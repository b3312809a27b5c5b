package unionfs

import (
	"strconv"
	"syscall"

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
	if child == nil {
		return -1
	}
	flags := unix.O_PATH
	switch r.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if !u.pinDirs() {
			return -1
		}
		flags |= unix.O_DIRECTORY
	case unix.S_IFREG:
		// A file with other names stays reachable through them.
		if !u.zeroOpen || r.st.Nlink > 1 {
			return -1
		}
	default:
		return -1
	}
	e := r.visible()
	fd, errno := e.Open(flags, 0)
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
	// A lower inode stays read-only however it is reached.
	n.pinLower = !n.hasUpper
	n.tmpPath = "/proc/self/fd/" + strconv.Itoa(fd)
	n.listing = []fuse.DirEntry{}
	n.mu.Unlock()
	if old > 0 {
		unix.Close(old - 1)
	}
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

// copyUpForWrite copies n up before a change to it. A lower file pinned
// after its last name went cannot be copied to a name: it gets a private
// upper copy with none, an O_TMPFILE file in the work dir, as it would
// have at an open for writing had that open reached strata.
func (n *node) copyUpForWrite() syscall.Errno {
	n.mu.Lock()
	pinnedLower := n.pin > 0 && n.pinLower
	n.mu.Unlock()
	if !pinnedLower {
		return n.u.copyUp(n)
	}
	u := n.u
	if u.upper == nil {
		return syscall.EROFS
	}
	u.copyMu.Lock()
	defer u.copyMu.Unlock()
	n.mu.Lock()
	pin, pinnedLower := n.pin-1, n.pin > 0 && n.pinLower
	n.mu.Unlock()
	if !pinnedLower {
		return 0
	}
	src, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pin), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return errnoOf(err)
	}
	defer unix.Close(src)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return errnoOf(err)
	}
	tmp, err := unix.Openat(u.workFd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return errnoOf(err)
	}
	for {
		nc, err := unix.CopyFileRange(src, nil, tmp, nil, 1<<30, 0)
		if err != nil {
			if errno := copyPlain(src, tmp); errno != 0 {
				unix.Close(tmp)
				return errno
			}
			break
		}
		if nc == 0 {
			break
		}
	}
	if u.realOwners {
		unix.Fchown(tmp, int(st.Uid), int(st.Gid))
	}
	unix.Fchmod(tmp, st.Mode&07777)
	n.mu.Lock()
	n.pin, n.pinLower = tmp+1, false
	n.tmpPath = "/proc/self/fd/" + strconv.Itoa(tmp)
	n.mu.Unlock()
	unix.Close(pin)
	return 0
}
