package unionfs

import (
	"errors"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Every syscall strata makes on a layer goes through this file.
//
// The container controls its upper directory: any name, any symlink, any
// rename, at any moment, racing the server. A path such as "a/b/f" handed
// to a *at call would let the kernel follow a symlink swapped in at "a"
// and act on a host file instead. So a layer path is only ever resolved by
// openat2 beneath the layer's held root, refusing symlinks, magic links and
// mount crossings in every component, into a directory fd; the last
// component is then acted on through that fd, with no-follow semantics.
// A union path never legitimately crosses a symlink inside a layer (the
// kernel resolves the union's own symlinks before it asks strata), so a
// symlink met on the way is an attack or a stale path, and fails.

// resolveFlags are the rules every layer path is resolved by.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS |
	unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openat2Beneath opens rel below dirfd by resolveFlags, retrying the
// EAGAIN openat2 returns when a rename raced the lookup.
func openat2Beneath(dirfd int, rel string, flags uint64) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: resolveFlags})
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// dirBeneath opens directory rel of the layer rooted at root as an O_PATH
// fd. The root itself ("." or "") is returned as is, not owned.
func dirBeneath(root int, rel string) (fd int, owned bool, errno syscall.Errno) {
	if rel == "" || rel == "." {
		return root, false, 0
	}
	fd, err := openat2Beneath(root, rel, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return -1, false, errnoOf(err)
	}
	return fd, true, 0
}

// entry is one entry of a layer reached without following any link: the
// directory holding it, resolved beneath the layer's root, and its name,
// a single component. Methods act on the entry itself, never through it.
type entry struct {
	dir  int
	name string
	own  bool // dir was opened for this entry; Close closes it
	// magic: name is "/proc/self/fd/N" of an fd strata holds (an
	// O_TMPFILE file with no name yet); following that link reaches the
	// verified file and nothing else.
	magic bool
}

// entryAt resolves rel (a path below the layer rooted at root) to its
// parent directory fd and last component. rel "." is the root itself.
func entryAt(root int, rel string) (entry, syscall.Errno) {
	if rel == "" || rel == "." {
		return entry{dir: root, name: "."}, 0
	}
	dir, name := ".", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, name = rel[:i], rel[i+1:]
	}
	fd, owned, errno := dirBeneath(root, dir)
	if errno != 0 {
		return entry{dir: -1}, errno
	}
	return entry{dir: fd, name: name, own: owned}, 0
}

// sibling names another entry of the same directory, sharing the fd: only
// the first holder closes it.
func (e entry) sibling(name string) entry { return entry{dir: e.dir, name: name} }

// openDir opens the entry, a directory, as a dirRef for its own entries.
func (e entry) openDir() (dirRef, syscall.Errno) {
	if e.name == "." {
		return dirRef{fd: e.dir}, 0
	}
	fd, err := openat2Beneath(e.dir, e.name, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return dirRef{fd: -1}, errnoOf(err)
	}
	return dirRef{fd: fd, own: true}, 0
}

// dirRef is a directory of a layer held open, resolved as entries are.
type dirRef struct {
	fd  int
	own bool
}

// at names an entry of the directory; the entry does not own the fd.
func (d dirRef) at(name string) entry { return entry{dir: d.fd, name: name} }

func (d dirRef) Close() {
	if d.own {
		unix.Close(d.fd)
	}
}

// dirAt opens directory rel of the layer rooted at root.
func dirAt(root int, rel string) (dirRef, syscall.Errno) {
	fd, owned, errno := dirBeneath(root, rel)
	return dirRef{fd: fd, own: owned}, errno
}

// Close releases the directory fd if the entry owns it.
func (e entry) Close() {
	if e.own {
		unix.Close(e.dir)
	}
}

// nofollow is the *at flag that keeps the last component unfollowed; a
// magic entry must be followed to reach its file.
func (e entry) nofollow() int {
	if e.magic {
		return 0
	}
	return unix.AT_SYMLINK_NOFOLLOW
}

func (e entry) Stat(st *unix.Stat_t) syscall.Errno {
	return errnoOf(unix.Fstatat(e.dir, e.name, st, e.nofollow()))
}

func (e entry) exists() bool {
	var st unix.Stat_t
	return e.Stat(&st) == 0
}

// procPath names the entry for the calls that have no *at form (xattrs,
// chmod on old kernels): the held directory's /proc/self/fd link, then the
// one component, which the l* calls do not follow.
func (e entry) procPath() string {
	if e.magic {
		return e.name
	}
	return "/proc/self/fd/" + strconv.Itoa(e.dir) + "/" + e.name
}

func (e entry) Getxattr(attr string, dest []byte) (int, syscall.Errno) {
	var sz int
	var err error
	if e.magic {
		sz, err = unix.Getxattr(e.name, attr, dest)
	} else {
		sz, err = unix.Lgetxattr(e.procPath(), attr, dest)
	}
	return sz, errnoOf(err)
}

func (e entry) getxattrString(attr string) (string, bool) {
	var buf [256]byte
	n, errno := e.Getxattr(attr, buf[:])
	if errno != 0 {
		return "", false
	}
	return string(buf[:n]), true
}

func (e entry) Setxattr(attr string, data []byte, flags int) syscall.Errno {
	if e.magic {
		return errnoOf(unix.Setxattr(e.name, attr, data, flags))
	}
	return errnoOf(unix.Lsetxattr(e.procPath(), attr, data, flags))
}

func (e entry) Listxattr(dest []byte) (int, syscall.Errno) {
	var sz int
	var err error
	if e.magic {
		sz, err = unix.Listxattr(e.name, dest)
	} else {
		sz, err = unix.Llistxattr(e.procPath(), dest)
	}
	return sz, errnoOf(err)
}

func (e entry) Removexattr(attr string) syscall.Errno {
	if e.magic {
		return errnoOf(unix.Removexattr(e.name, attr))
	}
	return errnoOf(unix.Lremovexattr(e.procPath(), attr))
}

// Chown changes the owner (-1 keeps one) of the entry itself.
func (e entry) Chown(uid, gid int) syscall.Errno {
	return errnoOf(unix.Fchownat(e.dir, e.name, uid, gid, e.nofollow()))
}

// Chmod sets the mode of the entry itself. fchmodat2 (Linux 6.6) refuses
// to follow the last component; before it, the entry is pinned by an
// O_PATH fd first and changed through that fd's /proc link, which can only
// reach the file the fd holds.
func (e entry) Chmod(mode uint32) syscall.Errno {
	if e.magic {
		return errnoOf(unix.Chmod(e.name, mode))
	}
	err := unix.Fchmodat(e.dir, e.name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err != unix.EOPNOTSUPP {
		return errnoOf(err)
	}
	fd, err := unix.Openat(e.dir, e.name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return errnoOf(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return errnoOf(err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return syscall.EOPNOTSUPP // a symlink has no mode of its own
	}
	return errnoOf(unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode))
}

func (e entry) Utimes(ts []unix.Timespec) syscall.Errno {
	return errnoOf(unix.UtimesNanoAt(e.dir, e.name, ts, e.nofollow()))
}

// Open opens the entry itself; a symlink there fails with ELOOP.
func (e entry) Open(flags int, perm uint32) (int, syscall.Errno) {
	if !e.magic {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Openat(e.dir, e.name, flags|unix.O_CLOEXEC, perm)
	return fd, errnoOf(err)
}

func (e entry) Truncate(size int64) syscall.Errno {
	fd, errno := e.Open(unix.O_WRONLY, 0)
	if errno != 0 {
		return errno
	}
	defer unix.Close(fd)
	return errnoOf(unix.Ftruncate(fd, size))
}

func (e entry) Readlink() ([]byte, syscall.Errno) {
	buf := make([]byte, 256)
	for {
		sz, err := unix.Readlinkat(e.dir, e.name, buf)
		if err != nil {
			return nil, errnoOf(err)
		}
		if sz < len(buf) {
			return buf[:sz], 0
		}
		buf = make([]byte, len(buf)*4)
	}
}

func (e entry) Unlink(flags int) syscall.Errno {
	return errnoOf(unix.Unlinkat(e.dir, e.name, flags))
}

func (e entry) Mkdir(perm uint32) syscall.Errno {
	return errnoOf(unix.Mkdirat(e.dir, e.name, perm))
}

func (e entry) Mknod(mode uint32, dev int) syscall.Errno {
	return errnoOf(unix.Mknodat(e.dir, e.name, mode, dev))
}

func (e entry) Symlink(target string) syscall.Errno {
	return errnoOf(unix.Symlinkat(target, e.dir, e.name))
}

// renameEntries renames from onto to (flags as renameat2). Both names are
// single components in held directories, and rename never follows either.
func renameEntries(from, to entry, flags uint) syscall.Errno {
	if flags == 0 {
		return errnoOf(unix.Renameat(from.dir, from.name, to.dir, to.name))
	}
	return errnoOf(unix.Renameat2(from.dir, from.name, to.dir, to.name, flags))
}

// linkEntries makes to a new name of from. linkat without
// AT_SYMLINK_FOLLOW links a symlink itself, never its target; a magic
// source (an unnamed O_TMPFILE file) is reached through its /proc link.
func linkEntries(from, to entry) syscall.Errno {
	flags := 0
	if from.magic {
		flags = unix.AT_SYMLINK_FOLLOW
	}
	return errnoOf(unix.Linkat(from.dir, from.name, to.dir, to.name, flags))
}

// removeAllAt removes name in dir and everything below it, walking by fds
// and never following a symlink: what it deletes was in dir when called.
func removeAllAt(dir int, name string) syscall.Errno {
	err := unix.Unlinkat(dir, name, 0)
	if err == nil || err == unix.ENOENT {
		return 0
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return errnoOf(err)
	}
	if err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR); err == nil || err == unix.ENOENT {
		return 0
	} else if err != unix.ENOTEMPTY && err != unix.EEXIST {
		return errnoOf(err)
	}
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return errnoOf(err)
	}
	var names []string
	errno := readDirFd(fd, func(e rawDirent) { names = append(names, e.name) })
	for _, n := range names {
		if e := removeAllAt(fd, n); e != 0 && errno == 0 {
			errno = e
		}
	}
	unix.Close(fd)
	if errno != 0 {
		return errno
	}
	return errnoOf(unix.Unlinkat(dir, name, unix.AT_REMOVEDIR))
}

// errnoOf is the errno a FUSE reply carries for err: the syscall's own,
// also when wrapped. It is fs.ToErrno without that one's logging of errors
// it cannot map (the library logs nothing by default); those are EIO.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}
