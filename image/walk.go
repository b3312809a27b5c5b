package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

// A container's upper and a layer's contents belong to whoever made them:
// while strata reads them, any name may become a symlink to a host path
// (a running container can exchange a dir with one at any moment). So
// they are read only through directory fds held from the root down, each
// name looked up beneath its parent's fd with no symlink, magic link or
// mount crossing, and each file judged by fstat of the fd that is then
// read. filepath-securejoin would give the same guarantee; openat2 is
// all this needs (every lookup here is one component, or a path below a
// held layer root), and Linux has had it since 5.6.

// resolveBeneath keeps a lookup below the dir fd it starts from.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openBeneath opens rel below dirfd without following a symlink in any
// component, the last one included (a symlink there is ELOOP, unless
// flags hold O_PATH, which opens the symlink itself).
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	for range 100 {
		fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{
			Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
			Resolve: resolveBeneath,
		})
		switch err {
		case unix.EAGAIN, unix.EINTR:
			continue // a rename raced the lookup; the kernel asks for a retry
		case unix.ENOSYS:
			return openWalk(dirfd, rel, flags)
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// openWalk is openBeneath for kernels without openat2: one component at a
// time, each with O_NOFOLLOW.
func openWalk(dirfd int, rel string, flags int) (int, error) {
	parts := strings.Split(rel, "/")
	fd, err := unix.Dup(dirfd)
	if err != nil {
		return -1, err
	}
	for i, c := range parts {
		if c == ".." {
			unix.Close(fd)
			return -1, unix.EXDEV
		}
		fl := unix.O_PATH | unix.O_DIRECTORY
		if i == len(parts)-1 {
			fl = flags
		}
		nfd, err := unix.Openat(fd, c, fl|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = nfd
	}
	return fd, nil
}

// lstatBeneath stats rel below the dir fd root, never through a symlink;
// rel itself may be one.
func lstatBeneath(root int, rel string, st *unix.Stat_t) error {
	fd, err := openBeneath(root, rel, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fstat(fd, st)
}

// walkEntry is one name under the walked root.
type walkEntry struct {
	rel string
	// st is of fd when there is one, else of the name (it does not
	// follow symlinks).
	st unix.Stat_t
	// fd is open for reading on regular files and directories, -1 on
	// everything else and when openErr is set.
	fd int
	// link is a symlink's target, read through its parent's fd.
	link string
	// openErr says why a regular file or dir could not be opened
	// (typically EACCES: private to an id the caller is not).
	openErr error
}

// walkTree calls fn for every entry below root (root itself excluded),
// parents before children, names of a dir in byte order. fn returns
// whether to walk into a directory. The fds of an entry are closed when fn
// (and the walk below a dir) returns.
func walkTree(root string, fn func(e *walkEntry) (descend bool, err error)) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(fd)
	return walkDir(root, fd, "", fn)
}

func walkDir(root string, dirfd int, rel string, fn func(e *walkEntry) (bool, error)) error {
	names, err := readNames(dirfd)
	if err != nil {
		return fmt.Errorf("read dir %s: %w", path.Join(root, rel), err)
	}
	for _, name := range names {
		e, err := openEntry(dirfd, name)
		if errors.Is(err, unix.ENOENT) {
			continue // gone since the dir was read
		}
		crel := path.Join(rel, name)
		if err != nil {
			return fmt.Errorf("%s: %w", path.Join(root, crel), err)
		}
		e.rel = crel
		descend, err := fn(e)
		if err == nil && descend && e.fd >= 0 && e.st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = walkDir(root, e.fd, crel, fn)
		}
		if e.fd >= 0 {
			unix.Close(e.fd)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readNames lists the names in the dir open at fd, sorted.
func readNames(fd int) ([]string, error) {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dfd), ".")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// openEntry looks name up in dirfd with an O_PATH fd that holds the very
// inode: a symlink is read through it, a dir reopened through it, so
// neither can be swapped for something else in between. A regular file
// cannot be reopened through an O_PATH fd without /proc, so it is opened
// by name again beneath dirfd with O_NOFOLLOW and judged by fstat of that
// fd; should a racing exchange have put a symlink or special file there
// meanwhile, the name is looked at again. Other types are never opened,
// so no device or fifo is touched.
func openEntry(dirfd int, name string) (*walkEntry, error) {
	for range 100 {
		e := &walkEntry{fd: -1}
		pfd, err := openBeneath(dirfd, name, unix.O_PATH)
		if err != nil {
			return nil, err
		}
		err = unix.Fstat(pfd, &e.st)
		typ := e.st.Mode & unix.S_IFMT
		switch {
		case err != nil:
		case typ == unix.S_IFLNK:
			e.link, err = readlinkat(pfd, "")
		case typ == unix.S_IFDIR:
			e.fd, err = unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err == nil {
				err = unix.Fstat(e.fd, &e.st)
			}
		}
		unix.Close(pfd)
		if err == unix.EACCES || err == unix.EPERM {
			e.fd, e.openErr = -1, err
			return e, nil
		}
		if err != nil {
			if e.fd >= 0 {
				unix.Close(e.fd)
			}
			return nil, err
		}
		if typ != unix.S_IFREG {
			return e, nil
		}
		fd, err := openBeneath(dirfd, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
		switch err {
		case nil:
		case unix.ELOOP, unix.ENXIO, unix.ENODEV:
			continue // swapped for a symlink or a device
		case unix.EACCES, unix.EPERM:
			e.openErr = err
			return e, nil
		default:
			return nil, err
		}
		if err := unix.Fstat(fd, &e.st); err != nil {
			unix.Close(fd)
			return nil, err
		}
		if t := e.st.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
			unix.Close(fd)
			continue // a fifo now
		}
		e.fd = fd
		return e, nil
	}
	return nil, fmt.Errorf("keeps being replaced while being read")
}

// fdReader reads an fd it does not own (an os.File would close it when
// collected).
type fdReader int

func (r fdReader) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// fdXattr reads xattr name of the open fd; ok is false when it has none.
func fdXattr(fd int, name string) (val []byte, ok bool, err error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Fgetxattr(fd, name, buf)
		switch err {
		case nil:
			return buf[:n], true, nil
		case unix.ERANGE:
			buf = make([]byte, 2*len(buf))
			continue
		case unix.ENODATA, unix.ENOTSUP:
			return nil, false, nil
		}
		return nil, false, err
	}
}

// fdOverride reads the override_stat of an open fd; ok is false when it
// has none.
func fdOverride(fd int) (o ovl.Override, ok bool, err error) {
	v, ok, err := fdXattr(fd, ovl.OverrideXattr)
	if err != nil || !ok {
		return ovl.Override{}, false, err
	}
	o, err = ovl.ParseOverride(string(v))
	return o, err == nil, err
}
