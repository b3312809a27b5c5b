package unionfs

import "github.com/hanwen/go-fuse/v2/fuse"

// The counting half of rawFS: each request passes here once, by the
// opcode the kernel sent. WRITE is counted in Writev, which go-fuse tries
// first; RENAME (both opcodes) in rawFS.Rename; FORGET per node, as
// go-fuse splits BATCH_FORGET.

func (r *rawFS) Forget(nodeid, nlookup uint64) {
	r.count.add(opForget)
	r.RawFileSystem.Forget(nodeid, nlookup)
}

func (r *rawFS) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	r.count.add(opLookup)
	return r.RawFileSystem.Lookup(cancel, header, name, out)
}

func (r *rawFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	r.count.add(opGetattr)
	return r.RawFileSystem.GetAttr(cancel, in, out)
}

func (r *rawFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	r.count.add(opSetattr)
	return r.RawFileSystem.SetAttr(cancel, in, out)
}

func (r *rawFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	r.count.add(opMknod)
	return r.RawFileSystem.Mknod(cancel, in, name, out)
}

func (r *rawFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	r.count.add(opMkdir)
	return r.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (r *rawFS) Unlink(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	r.count.add(opUnlink)
	return r.RawFileSystem.Unlink(cancel, header, name)
}

func (r *rawFS) Rmdir(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	r.count.add(opRmdir)
	return r.RawFileSystem.Rmdir(cancel, header, name)
}

func (r *rawFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	r.count.add(opLink)
	return r.RawFileSystem.Link(cancel, in, name, out)
}

func (r *rawFS) Symlink(cancel <-chan struct{}, header *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	r.count.add(opSymlink)
	return r.RawFileSystem.Symlink(cancel, header, target, name, out)
}

func (r *rawFS) Readlink(cancel <-chan struct{}, header *fuse.InHeader) ([]byte, fuse.Status) {
	r.count.add(opReadlink)
	return r.RawFileSystem.Readlink(cancel, header)
}

func (r *rawFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	r.count.add(opAccess)
	return r.RawFileSystem.Access(cancel, in)
}

func (r *rawFS) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	r.count.add(opGetxattr)
	return r.RawFileSystem.GetXAttr(cancel, header, attr, dest)
}

func (r *rawFS) ListXAttr(cancel <-chan struct{}, header *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	r.count.add(opListxattr)
	return r.RawFileSystem.ListXAttr(cancel, header, dest)
}

func (r *rawFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	r.count.add(opSetxattr)
	return r.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (r *rawFS) RemoveXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string) fuse.Status {
	r.count.add(opRemovexattr)
	return r.RawFileSystem.RemoveXAttr(cancel, header, attr)
}

func (r *rawFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	r.count.add(opCreate)
	return r.RawFileSystem.Create(cancel, in, name, out)
}

func (r *rawFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	r.count.add(opTmpfile)
	return r.RawFileSystem.Tmpfile(cancel, in, out)
}

func (r *rawFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	r.count.add(opOpen)
	return r.open(cancel, in, out)
}

func (r *rawFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	r.count.add(opRead)
	return r.RawFileSystem.Read(cancel, in, buf)
}

func (r *rawFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	r.count.add(opLseek)
	return r.RawFileSystem.Lseek(cancel, in, out)
}

func (r *rawFS) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	r.count.add(opGetlk)
	return r.RawFileSystem.GetLk(cancel, in, out)
}

func (r *rawFS) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	r.count.add(opSetlk)
	return r.RawFileSystem.SetLk(cancel, in)
}

func (r *rawFS) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	r.count.add(opSetlkw)
	return r.RawFileSystem.SetLkw(cancel, in)
}

func (r *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	r.count.add(opRelease)
	r.RawFileSystem.Release(cancel, in)
}

func (r *rawFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	r.count.add(opWrite)
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		// go-fuse hands the node no write flags: the request's cancel
		// channel tells node.Write which writes asked (see killpriv.go).
		r.u.killReqs.Store(cancel, true)
		defer r.u.killReqs.Delete(cancel)
	}
	return r.RawFileSystem.Writev(cancel, in, data)
}

func (r *rawFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	r.count.add(opCopyFileRange)
	return r.RawFileSystem.CopyFileRange(cancel, in)
}

func (r *rawFS) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	r.count.add(opIoctl)
	return r.RawFileSystem.Ioctl(cancel, in, inbuf, out, outbuf)
}

func (r *rawFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	r.count.add(opFlush)
	return r.flush(cancel, in)
}

func (r *rawFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	r.count.add(opFsync)
	return r.RawFileSystem.Fsync(cancel, in)
}

func (r *rawFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	r.count.add(opFallocate)
	return r.RawFileSystem.Fallocate(cancel, in)
}

func (r *rawFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	r.count.add(opOpendir)
	return r.openDir(cancel, in, out)
}

func (r *rawFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	r.count.add(opReaddir)
	return r.readDir(cancel, in, out)
}

func (r *rawFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	r.count.add(opReaddirplus)
	return r.readDirPlus(cancel, in, out)
}

func (r *rawFS) ReleaseDir(in *fuse.ReleaseIn) {
	r.count.add(opReleasedir)
	r.releaseDir(in)
}

func (r *rawFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	r.count.add(opFsyncdir)
	return r.fsyncDir(cancel, in)
}

func (r *rawFS) StatFs(cancel <-chan struct{}, header *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	r.count.add(opStatfs)
	return r.RawFileSystem.StatFs(cancel, header, out)
}

func (r *rawFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	r.count.add(opStatx)
	return r.RawFileSystem.Statx(cancel, in, out)
}
