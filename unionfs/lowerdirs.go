package unionfs

import (
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// A lookup resolves the parent's directory in every lower layer it merges,
// by openat2 beneath the layer root (beneath.go). Lowers never change
// while mounted, so a directory node keeps those fds for its life and a
// walk pays for each directory once, not once per entry. Upper
// directories are resolved per operation: renames move them.
//
// Only the kernel's own references keep these fds in use (every caller of
// lowerDir holds the node through a request), and the kernel forgets a
// node only when no request refers to it, so OnForget may close them.
// The number held is bounded; past it, lookups open and close as before.

// maxLowerDirFds bounds the cached fds of all nodes (RLIMIT_NOFILE is only
// 20000 on some hosts, and open files need their share).
const maxLowerDirFds = 4096

type lowerDirFd struct {
	layer int
	rel   string
	fd    int
}

var lowerDirFds atomic.Int64

// lowerDir is directory rel of layer li, n's part there: a cached fd the
// caller must not close (own false), or a fresh one it must.
func (n *node) lowerDir(li int, rel string) (dirRef, syscall.Errno) {
	n.mu.Lock()
	for _, c := range n.lowerFds {
		if c.layer == li && c.rel == rel {
			n.mu.Unlock()
			return dirRef{fd: c.fd}, 0
		}
	}
	n.mu.Unlock()
	d, errno := dirAt(n.u.layers[li].fd, rel)
	if errno != 0 || !d.own || n == n.u.root {
		return d, errno
	}
	if lowerDirFds.Add(1) > maxLowerDirFds {
		lowerDirFds.Add(-1)
		return d, 0
	}
	n.mu.Lock()
	n.lowerFds = append(n.lowerFds, lowerDirFd{layer: li, rel: rel, fd: d.fd})
	n.mu.Unlock()
	return dirRef{fd: d.fd}, 0
}

// closeLowerDirs releases n's cached lower directory fds.
func (n *node) closeLowerDirs() {
	n.mu.Lock()
	fds := n.lowerFds
	n.lowerFds = nil
	n.mu.Unlock()
	for _, c := range fds {
		unix.Close(c.fd)
		lowerDirFds.Add(-1)
	}
}
