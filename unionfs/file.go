package unionfs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

// loopbackOps is the part of go-fuse's loopback file strata reuses as is.
// It leaves out PassthroughFd, which file offers only when enabled.
type loopbackOps interface {
	fs.FileReader
	fs.FileWriter
	fs.FileFlusher
	fs.FileFsyncer
	fs.FileReleaser
	fs.FileGetlker
	fs.FileSetlker
	fs.FileSetlkwer
	fs.FileLseeker
	fs.FileAllocater
}

// file is an open union file: reads and writes go straight to the backing
// fd; attributes go through the node, which knows the union's view.
type file struct {
	loopbackOps
	fd int
	n  *node
	l  *layer // where fd is
}

var (
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileSetattrer = (*file)(nil)
)

func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	var st unix.Stat_t
	if err := unix.Fstat(f.fd, &st); err != nil {
		return errnoOf(err)
	}
	if f.l.override {
		// The open file itself, not a path to it: nothing to resolve.
		var buf [256]byte
		if sz, err := unix.Fgetxattr(f.fd, ovl.OverrideXattr, buf[:]); err == nil {
			applyOverrideValue(string(buf[:sz]), &st)
		}
	}
	f.n.fixIdentity(&st)
	statToAttr(&st, &out.Attr)
	f.n.setAttrTimeout(out)
	return 0
}

func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return f.n.Setattr(ctx, f, in, out)
}

// passthroughMinSize: smaller files are served from the page cache
// (keep_cache); registering a backing file costs two more ioctls per open,
// which only pays where reads are long.
const passthroughMinSize = 1 << 20

// passthroughFile lets the kernel do reads and writes on the backing fd
// itself (FUSE passthrough, Linux 6.9+, real root only).
type passthroughFile struct {
	*file
	pt fs.FilePassthroughFder
}

func (p *passthroughFile) PassthroughFd() (int, bool) { return p.pt.PassthroughFd() }

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_TRUNC) != 0 {
		if errno := n.u.copyUp(n); errno != 0 {
			return nil, 0, errno
		}
	}
	return n.openBacking(flags)
}

func (n *node) openBacking(flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	n.mu.Lock()
	lowerOnly, lower, rel := !n.hasUpper && n.tmpPath == "", n.lower, n.lowerRel()
	n.mu.Unlock()
	if flags&unix.O_ACCMODE == unix.O_RDONLY && lowerOnly && n.u.opts.Speed.KeepCache {
		if !n.u.opts.Speed.Passthrough || n.lowerSize < passthroughMinSize {
			flags &^= unix.O_CREAT | unix.O_EXCL | unix.O_NOCTTY | unix.O_TRUNC
			return &lazyFile{n: n, l: n.u.layers[lower], rel: rel, flags: flags},
				fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
		}
	}
	l, e, errno := n.backing()
	if errno != 0 {
		return nil, 0, errno
	}
	defer e.Close()
	return n.openAt(l, e, flags)
}

// openAt opens e, an entry of layer l, for n.
func (n *node) openAt(l *layer, e entry, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	flags &^= unix.O_CREAT | unix.O_EXCL | unix.O_NOCTTY
	fd, err := openBeneath(e.dir, e.name, flags)
	if err != nil {
		return nil, 0, errnoOf(err)
	}
	lf := fs.NewLoopbackFile(fd).(*fs.LoopbackFile)
	f := &file{loopbackOps: lf, fd: fd, n: n, l: l}
	var fuseFlags uint32
	if n.u.opts.Speed.KeepCache {
		// Content changes only through this mount, which the kernel sees.
		fuseFlags |= fuse.FOPEN_KEEP_CACHE
	}
	if flags&unix.O_ACCMODE == unix.O_RDONLY {
		// Nothing to write back on close of a read-only open; each FLUSH
		// would be a round trip for nothing.
		fuseFlags |= fuse.FOPEN_NOFLUSH
	}
	if n.u.opts.Speed.Passthrough {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Size >= passthroughMinSize {
			return &passthroughFile{file: f, pt: lf}, fuseFlags, 0
		}
	}
	return f, fuseFlags, 0
}

// lazyFile is a read-only open of a lower file that touches the backing
// file only when the kernel first needs it. Reads of cached pages
// (keep_cache) never arrive here, so a warm open and close costs no
// syscall at all. Safe because a lower entry never moves or changes while
// mounted: the path remembered at open stays valid.
type lazyFile struct {
	n     *node
	l     *layer
	rel   string
	flags uint32

	once  sync.Once
	f     *file
	errno syscall.Errno
}

var (
	_ fs.FileReader    = (*lazyFile)(nil)
	_ fs.FileReleaser  = (*lazyFile)(nil)
	_ fs.FileGetattrer = (*lazyFile)(nil)
	_ fs.FileGetlker   = (*lazyFile)(nil)
	_ fs.FileSetlker   = (*lazyFile)(nil)
	_ fs.FileSetlkwer  = (*lazyFile)(nil)
	_ fs.FileLseeker   = (*lazyFile)(nil)
	_ fs.FileFsyncer   = (*lazyFile)(nil)
)

func (lf *lazyFile) open() (*file, syscall.Errno) {
	lf.once.Do(func() {
		fd, err := openBeneath(lf.l.fd, lf.rel, lf.flags)
		if err != nil {
			lf.errno = errnoOf(err)
			return
		}
		lf.f = &file{loopbackOps: fs.NewLoopbackFile(fd).(*fs.LoopbackFile), fd: fd, n: lf.n, l: lf.l}
	})
	return lf.f, lf.errno
}

func (lf *lazyFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f, errno := lf.open()
	if errno != 0 {
		return nil, errno
	}
	return f.Read(ctx, dest, off)
}

func (lf *lazyFile) Release(ctx context.Context) syscall.Errno {
	if lf.f != nil {
		return lf.f.Release(ctx)
	}
	return 0
}

func (lf *lazyFile) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return lf.n.Getattr(ctx, nil, out)
}

func (lf *lazyFile) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	f, errno := lf.open()
	if errno != 0 {
		return errno
	}
	return f.Getlk(ctx, owner, lk, flags, out)
}

func (lf *lazyFile) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	f, errno := lf.open()
	if errno != 0 {
		return errno
	}
	return f.Setlk(ctx, owner, lk, flags)
}

func (lf *lazyFile) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	f, errno := lf.open()
	if errno != 0 {
		return errno
	}
	return f.Setlkw(ctx, owner, lk, flags)
}

func (lf *lazyFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	f, errno := lf.open()
	if errno != 0 {
		return 0, errno
	}
	return f.Lseek(ctx, off, whence)
}

func (lf *lazyFile) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }

// openBeneath opens rel below dirfd without following any symlink on the
// way, not even in the last component: a union path never crosses a
// symlink inside a layer (the kernel resolves the union's own symlinks
// before asking), so one met here was swapped in by a racing rename, and
// following it could open a file outside the layers.
func openBeneath(dirfd int, rel string, flags uint32) (int, error) {
	if dirfd == unix.AT_FDCWD {
		// An O_TMPFILE file reached through its /proc/self/fd link.
		return unix.Openat(dirfd, rel, int(flags)|unix.O_CLOEXEC, 0)
	}
	// openat2 refuses flag bits open(2) ignores, and the kernel passes
	// some along (__FMODE_EXEC for an exec): keep only real open flags.
	return openat2Beneath(dirfd, rel, uint64(flags&openFlags))
}

const openFlags = unix.O_ACCMODE | unix.O_APPEND | unix.O_NONBLOCK | unix.O_DIRECT |
	unix.O_NOATIME | unix.O_SYNC | unix.O_DSYNC | unix.O_LARGEFILE | unix.O_TRUNC
