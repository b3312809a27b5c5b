package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
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
	l, _, rel := f.n.backing()
	if f.n.index != "" {
		f.n.stat(&st)
	} else {
		f.n.fixStat(l, rel, &st)
	}
	statToAttr(&st, &out.Attr)
	f.n.setAttrTimeout(out)
	return 0
}

func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return f.n.Setattr(ctx, f, in, out)
}

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
	_, dirfd, rel := n.backing()
	return n.openAt(dirfd, rel, flags)
}

func (n *node) openAt(dirfd int, rel string, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	flags &^= unix.O_CREAT | unix.O_EXCL | unix.O_NOCTTY
	fd, err := unix.Openat(dirfd, rel, int(flags)|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, errnoOf(err)
	}
	lf := fs.NewLoopbackFile(fd).(*fs.LoopbackFile)
	f := &file{loopbackOps: lf, fd: fd, n: n}
	var fuseFlags uint32
	if n.u.opts.Speed.KeepCache {
		// Content changes only through this mount, which the kernel sees.
		fuseFlags |= fuse.FOPEN_KEEP_CACHE
	}
	if n.u.opts.Speed.Passthrough {
		return &passthroughFile{file: f, pt: lf}, fuseFlags, 0
	}
	return f, fuseFlags, 0
}
