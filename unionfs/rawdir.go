package unionfs

import (
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Zero-message opendir (FUSE_NO_OPENDIR_SUPPORT): OPENDIR answered ENOSYS
// once makes the kernel stop sending OPENDIR and RELEASEDIR for the whole
// mount; it then reads directories with Fh 0 and caches every listing
// (keep_cache and cache_dir are implied). go-fuse's bridge has nothing to
// read for Fh 0, so each such READDIR gets a listing handle of its own
// here, in-process, made from the node's cached merged listing; its
// offsets are name cookies (see listingCookies), which stay valid across
// requests however the directory changes between them.

// zeroOpendir reports whether this mount answers OPENDIR with ENOSYS: the
// mode is on, the kernel can do without, and the kernel may cache
// listings (without cache_readdir every OPENDIR must reach us).
func (r *rawFS) zeroOpendir() bool {
	switch r.noOpendir.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	sp := r.u.opts.Speed
	on := sp.ZeroOpendir && sp.CacheReaddir && r.srv != nil &&
		r.srv.KernelSettings().Flags64()&fuse.CAP_NO_OPENDIR_SUPPORT != 0
	if on {
		r.noOpendir.Store(1)
	} else {
		r.noOpendir.Store(2)
	}
	return on
}

// zeroOpen reports whether this mount answers OPEN and FLUSH with ENOSYS
// (see iofd.go).
func (r *rawFS) zeroOpen() bool {
	switch r.noOpen.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	on := r.u.zeroOpen && r.srv != nil &&
		r.srv.KernelSettings().Flags64()&fuse.CAP_NO_OPEN_SUPPORT != 0
	if on {
		r.noOpen.Store(1)
	} else {
		r.noOpen.Store(2)
	}
	return on
}

func (r *rawFS) open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if r.zeroOpen() {
		return fuse.ENOSYS
	}
	return r.RawFileSystem.Open(cancel, in, out)
}

// flush: with zero-message opens nothing is written back at close (I/O
// goes straight to the backing fd), and ENOSYS stops FLUSH for good.
func (r *rawFS) flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if r.zeroOpen() {
		return fuse.ENOSYS
	}
	return r.RawFileSystem.Flush(cancel, in)
}

func (r *rawFS) Init(s *fuse.Server) {
	r.srv = s
	r.RawFileSystem.Init(s)
}

func (r *rawFS) openDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if r.zeroOpendir() {
		return fuse.ENOSYS
	}
	return r.RawFileSystem.OpenDir(cancel, in, out)
}

// withDirHandle runs fn with an in-process handle of the directory in.
func (r *rawFS) withDirHandle(cancel <-chan struct{}, in *fuse.InHeader, flags uint32, fn func(fh uint64) fuse.Status) fuse.Status {
	oi := fuse.OpenIn{InHeader: *in, Flags: flags}
	var oo fuse.OpenOut
	if st := r.RawFileSystem.OpenDir(cancel, &oi, &oo); !st.Ok() {
		return st
	}
	st := fn(oo.Fh)
	r.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: *in, Fh: oo.Fh})
	return st
}

func (r *rawFS) readDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh != 0 {
		return r.RawFileSystem.ReadDir(cancel, in, out)
	}
	return r.withDirHandle(cancel, &in.InHeader, dirNoFd, func(fh uint64) fuse.Status {
		h := *in
		h.Fh = fh
		return r.RawFileSystem.ReadDir(cancel, &h, out)
	})
}

func (r *rawFS) readDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh != 0 {
		return r.RawFileSystem.ReadDirPlus(cancel, in, out)
	}
	return r.withDirHandle(cancel, &in.InHeader, dirNoFd, func(fh uint64) fuse.Status {
		h := *in
		h.Fh = fh
		return r.RawFileSystem.ReadDirPlus(cancel, &h, out)
	})
}

// releaseDir: Fh 0 was never opened.
func (r *rawFS) releaseDir(in *fuse.ReleaseIn) {
	if in.Fh != 0 {
		r.RawFileSystem.ReleaseDir(in)
	}
}

// fsyncDir of a directory with no handle syncs it through one made for
// the purpose, which holds the directory's upper fd.
func (r *rawFS) fsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if in.Fh != 0 {
		return r.RawFileSystem.FsyncDir(cancel, in)
	}
	return r.withDirHandle(cancel, &in.InHeader, 0, func(fh uint64) fuse.Status {
		h := *in
		h.Fh = fh
		return r.RawFileSystem.FsyncDir(cancel, &h)
	})
}
