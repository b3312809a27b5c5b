package unionfs

import (
	"container/list"
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Zero-message opens (FUSE_NO_OPEN_SUPPORT, the zeroopen mount option):
// OPEN answered ENOSYS once makes the kernel stop sending OPEN and RELEASE
// for the whole mount (keep_cache implied), and FLUSH answered ENOSYS once
// stops FLUSH; READ and WRITE then arrive with Fh 0 and go-fuse hands
// them to the node with no handle. The node keeps one backing fd for
// them, opened through an entry resolved beneath its layer like every
// other access, and a mount-wide LRU bounds how many stay open. A lower
// file is copied up at its first WRITE, SETATTR or fallocate instead of
// at an open for writing, which never arrives.

var (
	_ fs.NodeReader    = (*node)(nil)
	_ fs.NodeWriter    = (*node)(nil)
	_ fs.NodeFsyncer   = (*node)(nil)
	_ fs.NodeFlusher   = (*node)(nil)
	_ fs.NodeAllocater = (*node)(nil)
	_ fs.NodeLseeker   = (*node)(nil)
)

// fsyncFdatasync is FUSE_FSYNC_FDATASYNC, which go-fuse does not name.
const fsyncFdatasync = 1

// ioFd is a node's backing fd for I/O without a handle.
type ioFd struct {
	// mu is read-held while fd is in use, write-held to change it, so
	// eviction never closes an fd under a read or write.
	mu       sync.RWMutex
	fd       int // -1: none
	writable bool
	upper    bool          // fd is of the upper copy (or a pinned inode)
	elem     *list.Element // place in fdCache.lru; fdCache.mu
}

// fdCache bounds the backing fds open for handle-less I/O.
type fdCache struct {
	mu  sync.Mutex
	lru list.List // of *ioFd, most recently used first
	max int
}

// fdBudget is how many backing fds handle-less I/O may keep: half of what
// the process may open once its soft limit is raised to the hard one
// (only 20000 on some hosts), the other half left to handles, layers and
// the server itself.
func fdBudget() int {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return 512
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
			unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
		}
	}
	return max(64, int(lim.Cur/2))
}

// use marks io most recently used, entering it if it is not in the LRU,
// and closes the fds that fall off the end.
func (c *fdCache) use(io *ioFd) {
	c.mu.Lock()
	if io.elem != nil {
		c.lru.MoveToFront(io.elem)
		c.mu.Unlock()
		return
	}
	io.elem = c.lru.PushFront(io)
	var victims []*ioFd
	for c.lru.Len() > c.max {
		back := c.lru.Back()
		v := back.Value.(*ioFd)
		c.lru.Remove(back)
		v.elem = nil
		victims = append(victims, v)
	}
	c.mu.Unlock()
	for _, v := range victims {
		v.close()
	}
}

func (c *fdCache) drop(io *ioFd) {
	c.mu.Lock()
	if io.elem != nil {
		c.lru.Remove(io.elem)
		io.elem = nil
	}
	c.mu.Unlock()
	io.close()
}

func (io *ioFd) close() {
	io.mu.Lock()
	if io.fd >= 0 {
		unix.Close(io.fd)
		io.fd = -1
	}
	io.mu.Unlock()
}

// ioFd returns the node's backing fd, read-held: the caller releases it
// with RUnlock. write copies the file up first and wants a writable fd.
func (n *node) ioFd(write bool) (*ioFd, syscall.Errno) {
	if write {
		if errno := n.copyUpForWrite(); errno != 0 {
			return nil, errno
		}
	}
	for {
		n.mu.Lock()
		io := n.io
		if io == nil {
			io = &ioFd{fd: -1}
			n.io = io
		}
		up := n.hasUpper || (n.tmpPath != "" && !n.pinLower)
		n.mu.Unlock()
		n.u.fds.use(io)
		io.mu.RLock()
		if io.fd >= 0 && io.upper == up && (io.writable || !write) {
			return io, 0
		}
		io.mu.RUnlock()
		io.mu.Lock()
		if !(io.fd >= 0 && io.upper == up && (io.writable || !write)) {
			if io.fd >= 0 {
				unix.Close(io.fd)
				io.fd = -1
			}
			fd, writable, errno := n.openIO(up, write)
			if errno != 0 {
				io.mu.Unlock()
				return nil, errno
			}
			io.fd, io.writable, io.upper = fd, writable, up
		}
		io.mu.Unlock()
	}
}

// openIO opens the node's backing file: an upper copy read-write where
// the server may (a later write then needs no second open), a lower one
// read-only.
func (n *node) openIO(up, write bool) (int, bool, syscall.Errno) {
	_, e, errno := n.backing()
	if errno != 0 {
		return -1, false, errno
	}
	defer e.Close()
	if up {
		fd, err := openBeneath(e.dir, e.name, unix.O_RDWR)
		if err == nil {
			return fd, true, 0
		}
		if write || (err != unix.EACCES && err != unix.EPERM && err != unix.EROFS) {
			return -1, false, errnoOf(err)
		}
	} else if write {
		return -1, false, syscall.EROFS // copyUp failed to say so
	}
	fd, err := openBeneath(e.dir, e.name, unix.O_RDONLY)
	return fd, false, errnoOf(err)
}

// dropIO closes the node's backing fd when the kernel forgets the node.
func (n *node) dropIO() {
	n.mu.Lock()
	io := n.io
	n.io = nil
	n.mu.Unlock()
	if io != nil {
		n.u.fds.drop(io)
	}
}

func (n *node) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if f != nil {
		if r, ok := f.(fs.FileReader); ok {
			return r.Read(ctx, dest, off)
		}
		return nil, syscall.ENOTSUP
	}
	io, errno := n.ioFd(false)
	if errno != 0 {
		return nil, errno
	}
	defer io.mu.RUnlock()
	nr, err := unix.Pread(io.fd, dest, off)
	if err != nil {
		return nil, errnoOf(err)
	}
	return fuse.ReadResultData(dest[:nr]), 0
}

func (n *node) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	nw, errno := n.write(ctx, f, data, off)
	if errno == 0 && n.u.killRequested(ctx) {
		errno = n.killSuidgid(ctx)
	}
	return nw, errno
}

func (n *node) write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if f != nil {
		if w, ok := f.(fs.FileWriter); ok {
			return w.Write(ctx, data, off)
		}
		return 0, syscall.ENOTSUP
	}
	io, errno := n.ioFd(true)
	if errno != 0 {
		return 0, errno
	}
	defer io.mu.RUnlock()
	nw, err := unix.Pwrite(io.fd, data, off)
	if err != nil {
		return 0, errnoOf(err)
	}
	return uint32(nw), 0
}

func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if f != nil {
		if s, ok := f.(fs.FileFsyncer); ok {
			return s.Fsync(ctx, flags)
		}
		return syscall.ENOTSUP
	}
	// Any fd of the inode flushes what earlier (maybe evicted) ones wrote.
	io, errno := n.ioFd(false)
	if errno != 0 {
		return errno
	}
	defer io.mu.RUnlock()
	if flags&fsyncFdatasync != 0 {
		return errnoOf(unix.Fdatasync(io.fd))
	}
	return errnoOf(unix.Fsync(io.fd))
}

func (n *node) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno {
	if fl, ok := f.(fs.FileFlusher); ok && f != nil {
		return fl.Flush(ctx)
	}
	return 0
}

func (n *node) Allocate(ctx context.Context, f fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	if f != nil {
		if a, ok := f.(fs.FileAllocater); ok {
			return a.Allocate(ctx, off, size, mode)
		}
		return syscall.ENOTSUP
	}
	io, errno := n.ioFd(true)
	if errno != 0 {
		return errno
	}
	defer io.mu.RUnlock()
	return errnoOf(unix.Fallocate(io.fd, mode, int64(off), int64(size)))
}

func (n *node) Lseek(ctx context.Context, f fs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	if f != nil {
		if s, ok := f.(fs.FileLseeker); ok {
			return s.Lseek(ctx, off, whence)
		}
		return 0, syscall.ENOTSUP
	}
	io, errno := n.ioFd(false)
	if errno != 0 {
		return 0, errno
	}
	defer io.mu.RUnlock()
	// SEEK_DATA/SEEK_HOLE answer from off alone; the shared fd's own
	// offset is never used for I/O (pread/pwrite), so moving it is harmless.
	res, err := unix.Seek(io.fd, int64(off), int(whence))
	return uint64(res), errnoOf(err)
}
