package unionfs

import (
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// noRenameOwner is renameOwner's value while no rename holds treeMu.
var noRenameOwner <-chan struct{}

// rawFS is the raw filesystem go-fuse serves: its own bridge, wrapped for
// what the fs API cannot express. It counts requests by opcode (cheap
// enough to stay on: one atomic add), and Rename releases treeMu once
// go-fuse's tree shows what the rename did on disk (see
// holdTreeForRename). Requests are told apart by their cancel channel,
// which go-fuse makes per request.
type rawFS struct {
	fuse.RawFileSystem
	u     *unionFS
	count *opCounts
	srv   *fuse.Server
	// noOpendir: 0 undecided, 1 OPENDIR is answered ENOSYS, 2 it is served
	// (see zeroOpendir).
	noOpendir atomic.Int32
	noOpen    atomic.Int32 // the same for OPEN and FLUSH (see zeroOpen)
}

func (r *rawFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	r.count.add(opRename)
	st := r.RawFileSystem.Rename(cancel, in, oldName, newName)
	if r.u.renameOwner.CompareAndSwap(cancel, noRenameOwner) {
		r.u.treeMu.Unlock()
	}
	return st
}

// opCounts counts requests by FUSE opcode (the kernel's numbers).
type opCounts [opMax]atomic.Uint64

func (c *opCounts) add(op int) { c[op].Add(1) }

// The kernel's opcode numbers (include/uapi/linux/fuse.h); go-fuse keeps
// its own unexported.
const (
	opLookup        = 1
	opForget        = 2
	opGetattr       = 3
	opSetattr       = 4
	opReadlink      = 5
	opSymlink       = 6
	opMknod         = 8
	opMkdir         = 9
	opUnlink        = 10
	opRmdir         = 11
	opRename        = 12
	opLink          = 13
	opOpen          = 14
	opRead          = 15
	opWrite         = 16
	opStatfs        = 17
	opRelease       = 18
	opFsync         = 20
	opSetxattr      = 21
	opGetxattr      = 22
	opListxattr     = 23
	opRemovexattr   = 24
	opFlush         = 25
	opInit          = 26
	opOpendir       = 27
	opReaddir       = 28
	opReleasedir    = 29
	opFsyncdir      = 30
	opGetlk         = 31
	opSetlk         = 32
	opSetlkw        = 33
	opAccess        = 34
	opCreate        = 35
	opIoctl         = 39
	opFallocate     = 43
	opReaddirplus   = 44
	opLseek         = 46
	opCopyFileRange = 47
	opTmpfile       = 51
	opStatx         = 52
	opMax           = 64
)

var opNames = [opMax]string{
	opLookup: "LOOKUP", opForget: "FORGET", opGetattr: "GETATTR", opSetattr: "SETATTR",
	opReadlink: "READLINK", opSymlink: "SYMLINK", opMknod: "MKNOD", opMkdir: "MKDIR",
	opUnlink: "UNLINK", opRmdir: "RMDIR", opRename: "RENAME", opLink: "LINK", opOpen: "OPEN",
	opRead: "READ", opWrite: "WRITE", opStatfs: "STATFS", opRelease: "RELEASE", opFsync: "FSYNC",
	opSetxattr: "SETXATTR", opGetxattr: "GETXATTR", opListxattr: "LISTXATTR",
	opRemovexattr: "REMOVEXATTR", opFlush: "FLUSH", opInit: "INIT", opOpendir: "OPENDIR",
	opReaddir: "READDIR", opReleasedir: "RELEASEDIR", opFsyncdir: "FSYNCDIR", opGetlk: "GETLK",
	opSetlk: "SETLK", opSetlkw: "SETLKW", opAccess: "ACCESS", opCreate: "CREATE", opIoctl: "IOCTL",
	opFallocate: "FALLOCATE", opReaddirplus: "READDIRPLUS", opLseek: "LSEEK",
	opCopyFileRange: "COPY_FILE_RANGE", opTmpfile: "TMPFILE", opStatx: "STATX",
}

// snapshot returns the counts so far by opcode name, leaving out zeros.
func (c *opCounts) snapshot() map[string]uint64 {
	out := map[string]uint64{}
	for op := range c {
		if v := c[op].Load(); v != 0 {
			out[opNames[op]] = v
		}
	}
	return out
}
