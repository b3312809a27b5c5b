package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

// Unpack extracts the uncompressed layer tar r into dir, which must be an
// existing empty directory, as described in the package doc: owners and
// modes go to ovl.OverrideXattr, nothing is written outside dir, and
// whiteout files are kept as plain files. It stops at the first refused
// entry with an error naming it; the caller removes dir then. maxSize
// bounds the bytes of file contents written.
func Unpack(dir string, r io.Reader, maxSize int64) (written int64, err error) {
	rootFd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("unpack into %s: %w", dir, err)
	}
	u := &unpacker{dir: dir, root: rootFd, cacheFd: -1, maxSize: maxSize}
	defer u.close()
	if err := u.setRootOverride(ovl.Override{Mode: unix.S_IFDIR | 0o755}); err != nil {
		return 0, err
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return u.written, fmt.Errorf("read layer tar: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return u.written, err
		}
	}
	// Directory times last: creating entries inside a dir changes its mtime.
	for i := len(u.dirTimes) - 1; i >= 0; i-- {
		d := u.dirTimes[i]
		if err := u.setTimes(d.rel, d.mtime); err != nil {
			return u.written, err
		}
	}
	return u.written, nil
}

type dirTime struct {
	rel   string
	mtime time.Time
}

type unpacker struct {
	dir      string
	root     int
	maxSize  int64
	written  int64
	dirTimes []dirTime
	// The last parent dir opened: tar entries come grouped by directory.
	cacheRel string
	cacheFd  int
	buf      []byte // copySparse's
}

func (u *unpacker) close() {
	u.dropCache()
	unix.Close(u.root)
}

func (u *unpacker) dropCache() {
	if u.cacheFd >= 0 {
		unix.Close(u.cacheFd)
	}
	u.cacheFd, u.cacheRel = -1, ""
}

// cleanRel turns a tar path into a path relative to the layer root. A
// leading "/" is dropped (tars of / have it); anything that climbs above the
// root is refused. "" means the root itself.
func cleanRel(name string) (string, error) {
	c := path.Clean("/" + name)
	if c == "/" {
		return "", nil
	}
	// Clean of "/"+name can hide a climb ("/../x" -> "/x"); check the raw
	// relative form too, as a tar entry "../x" is an attack, not a typo.
	if rc := path.Clean(strings.TrimLeft(name, "/")); rc == ".." || strings.HasPrefix(rc, "../") {
		return "", fmt.Errorf("path escapes the layer")
	}
	return c[1:], nil
}

func (u *unpacker) entry(hdr *tar.Header, tr io.Reader) error {
	rel, err := cleanRel(hdr.Name)
	if err != nil {
		return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
	}
	perm := uint32(hdr.Mode) & 0o7777
	ov := ovl.Override{UID: uint32(hdr.Uid), GID: uint32(hdr.Gid), Mode: perm}
	if rel == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("layer entry %q: the layer root must be a directory", hdr.Name)
		}
		ov.Mode |= unix.S_IFDIR
		u.dirTimes = append(u.dirTimes, dirTime{rel: "", mtime: hdr.ModTime})
		return u.setRootOverride(ov)
	}
	parent, base := path.Split(rel)
	pfd, err := u.openDir(strings.TrimSuffix(parent, "/"), hdr.Name)
	if err != nil {
		return err
	}
	e := &tarEntry{hdr: hdr, rel: rel, base: base, pfd: pfd, perm: perm, ov: ov}

	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.dirEntry(e)
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeChar, tar.TypeBlock: // tar.Reader reports the old TypeRegA as TypeReg
		return u.fileEntry(e, tr)
	case tar.TypeSymlink:
		return u.symlinkEntry(e)
	case tar.TypeLink:
		return u.hardLinkEntry(e)
	case tar.TypeFifo:
		return u.fifoEntry(e)
	case tar.TypeXGlobalHeader:
		return nil
	}
	return fmt.Errorf("layer entry %q: unsupported tar type %q", hdr.Name, string(hdr.Typeflag))
}

// tarEntry is one layer entry on its way to disk: its clean path, the
// held parent dir, and the owner and mode it records.
type tarEntry struct {
	hdr       *tar.Header
	rel, base string
	pfd       int
	perm      uint32
	ov        ovl.Override
}

// wrap names the entry and what failed; a full disk says so.
func (e *tarEntry) wrap(what string, err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("layer entry %q: %s: disk full: %w", e.hdr.Name, what, err)
	}
	return fmt.Errorf("layer entry %q: %s: %w", e.hdr.Name, what, err)
}

// dirEntry makes or keeps a directory, with its owner and mode in the
// override xattr; its time is set once its contents are in (dirTimes).
func (u *unpacker) dirEntry(e *tarEntry) error {
	hdr, rel, base, pfd, perm, ov, wrap := e.hdr, e.rel, e.base, e.pfd, e.perm, e.ov, e.wrap
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := u.remove(pfd, base, rel); err != nil {
			return wrap("replace", err)
		}
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return wrap("mkdir", err)
		}
	}
	ov.Mode |= unix.S_IFDIR
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return wrap("open dir", err)
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, diskMode(perm, true)); err != nil {
		return wrap("chmod", err)
	}
	if err := unix.Fsetxattr(fd, ovl.OverrideXattr, []byte(ov.Format()), 0); err != nil {
		return wrap("set "+ovl.OverrideXattr, err)
	}
	u.dirTimes = append(u.dirTimes, dirTime{rel: rel, mtime: hdr.ModTime})
	return nil
}

// fileEntry writes a regular file (holes kept as holes), or the empty file
// that stands for a device.
func (u *unpacker) fileEntry(e *tarEntry, tr io.Reader) error {
	hdr, rel, base, pfd, perm, ov, wrap := e.hdr, e.rel, e.base, e.pfd, e.perm, e.ov, e.wrap
	size := hdr.Size
	if hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock {
		// Devices become empty files whose xattr says what they are:
		// mknod is refused to unprivileged users, and a real device
		// node in a store owned by root is a hazard.
		size = 0
		ov.Rdev = unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if hdr.Typeflag == tar.TypeChar {
			ov.Mode |= unix.S_IFCHR
		} else {
			ov.Mode |= unix.S_IFBLK
		}
	} else {
		ov.Mode |= unix.S_IFREG
	}
	if size < 0 || size > u.maxSize-u.written {
		return fmt.Errorf("layer entry %q: %d bytes exceeds the layer size limit of %d bytes", hdr.Name, hdr.Size, u.maxSize)
	}
	// A sparse entry's holes take no disk, so its size says nothing
	// about the room it needs; a full disk still fails the write.
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(u.root, &sfs); err == nil && !isSparse(hdr) && uint64(size) > sfs.Bavail*uint64(sfs.Bsize) {
		return fmt.Errorf("layer entry %q: needs %d bytes, only %d free in %s", hdr.Name, size, sfs.Bavail*uint64(sfs.Bsize), u.dir)
	}
	if err := u.remove(pfd, base, rel); err != nil {
		return wrap("replace", err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return wrap("create", err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(u.dir, rel))
	defer f.Close()
	if size > 0 {
		n, err := u.copySparse(f, tr, size)
		u.written += n
		if err != nil {
			return wrap("write", err)
		}
	}
	if err := f.Chmod(os.FileMode(diskMode(perm, false))); err != nil {
		return wrap("chmod", err)
	}
	if err := unix.Fsetxattr(fd, ovl.OverrideXattr, []byte(ov.Format()), 0); err != nil {
		return wrap("set "+ovl.OverrideXattr, err)
	}
	ts := timespecs(hdr.ModTime)
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return wrap("set times", err)
	}
	return nil
}

// symlinkEntry makes a symlink; its target is data, never followed.
func (u *unpacker) symlinkEntry(e *tarEntry) error {
	hdr, rel, base, pfd, wrap := e.hdr, e.rel, e.base, e.pfd, e.wrap
	if err := u.remove(pfd, base, rel); err != nil {
		return wrap("replace", err)
	}
	// The target is data, never followed while unpacking: every later
	// path walk refuses symlinks.
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return wrap("symlink", err)
	}
	if err := unix.UtimesNanoAt(pfd, base, timespecs(hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return wrap("set times", err)
	}
	return nil
}

// hardLinkEntry links a name to an earlier entry of the same layer.
func (u *unpacker) hardLinkEntry(e *tarEntry) error {
	hdr, rel, base, pfd, wrap := e.hdr, e.rel, e.base, e.pfd, e.wrap
	trel, err := cleanRel(hdr.Linkname)
	if err != nil || trel == "" {
		return fmt.Errorf("layer entry %q: hard link to %q: target outside the layer", hdr.Name, hdr.Linkname)
	}
	tparent, tbase := path.Split(trel)
	tfd, err := u.openDirNoCreate(strings.TrimSuffix(tparent, "/"), hdr.Name)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("layer entry %q: hard link target %q is not in the layer", hdr.Name, hdr.Linkname)
	}
	if err != nil {
		return err
	}
	defer unix.Close(tfd)
	var tst unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("layer entry %q: hard link target %q is not in the layer: %w", hdr.Name, hdr.Linkname, err)
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("layer entry %q: hard link target %q is a directory", hdr.Name, hdr.Linkname)
	}
	var st unix.Stat_t
	if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Ino == tst.Ino && st.Dev == tst.Dev {
		return nil
	}
	if err := u.remove(pfd, base, rel); err != nil {
		return wrap("replace", err)
	}
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return wrap("hard link to "+hdr.Linkname, err)
	}
	return nil
}

// fifoEntry makes a fifo.
func (u *unpacker) fifoEntry(e *tarEntry) error {
	rel, base, pfd, perm, wrap := e.rel, e.base, e.pfd, e.perm, e.wrap
	if err := u.remove(pfd, base, rel); err != nil {
		return wrap("replace", err)
	}
	// A fifo is harmless and unprivileged users may make one; its
	// owner is lost (user xattrs are not allowed on fifos).
	if err := unix.Mkfifoat(pfd, base, diskMode(perm, false)&0o777); err != nil {
		return wrap("mkfifo", err)
	}
	return nil
}

// isSparse: archive/tar keeps the GNU sparse type of the old format, and
// leaves the PAX records of the GNU sparse formats in the header.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// sparseBlock is the unit in which runs of zeros become holes.
const sparseBlock = 4096

// copySparse copies size bytes from r into the new, empty file f and
// leaves every all-zero block a hole. archive/tar reads the holes of GNU
// and PAX sparse entries back as zeros, and a compressed layer can hold
// gigabytes of zeros in a few KiB: written out, either would take the
// full size on disk. The returned count is of bytes consumed, holes
// included: a layer's apparent size is what its limit bounds.
func (u *unpacker) copySparse(f *os.File, r io.Reader, size int64) (int64, error) {
	if u.buf == nil {
		u.buf = make([]byte, 64*sparseBlock)
	}
	var off int64
	for off < size {
		n, rerr := io.ReadFull(r, u.buf[:min(int64(len(u.buf)), size-off)])
		data := u.buf[:n]
		// Write each run of non-zero blocks with one pwrite.
		start := -1
		flush := func(end int) error {
			if start < 0 {
				return nil
			}
			_, err := f.WriteAt(data[start:end], off+int64(start))
			start = -1
			return err
		}
		for i := 0; i < len(data); i += sparseBlock {
			if !isZeros(data[i:min(i+sparseBlock, len(data))]) {
				if start < 0 {
					start = i
				}
			} else if err := flush(i); err != nil {
				return off + int64(i), err
			}
		}
		if err := flush(len(data)); err != nil {
			return off, err
		}
		off += int64(n)
		if rerr != nil {
			return off, rerr
		}
	}
	// Trailing holes: the file must still have its full length.
	return off, f.Truncate(size)
}

var zeroBlock [sparseBlock]byte

func isZeros(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

// diskMode is the mode a file gets on disk: the tar's permission bits,
// always usable by the store's owner, never setuid/setgid/sticky.
func diskMode(perm uint32, dir bool) uint32 {
	if dir {
		return perm&0o777 | 0o700
	}
	return perm&0o777 | 0o600
}

func timespecs(t time.Time) []unix.Timespec {
	ts, _ := unix.TimeToTimespec(t)
	return []unix.Timespec{ts, ts}
}

func (u *unpacker) setRootOverride(ov ovl.Override) error {
	fd, err := unix.Open(u.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("unpack into %s: %w", u.dir, err)
	}
	defer unix.Close(fd)
	unix.Fchmod(fd, diskMode(ov.Mode&0o7777, true))
	if err := unix.Fsetxattr(fd, ovl.OverrideXattr, []byte(ov.Format()), 0); err != nil {
		return fmt.Errorf("unpack into %s: set %s (does the filesystem support user xattrs?): %w", u.dir, ovl.OverrideXattr, err)
	}
	return nil
}

// openDir returns an O_PATH fd (owned by the cache; do not close) for the
// directory rel inside the layer, creating missing parents as root-owned
// 0755 dirs, and refusing to pass through any symlink.
func (u *unpacker) openDir(rel, entry string) (int, error) {
	if rel == "" {
		return u.root, nil
	}
	if u.cacheFd >= 0 && u.cacheRel == rel {
		return u.cacheFd, nil
	}
	fd, err := u.walk(rel, entry, true)
	if err != nil {
		return -1, err
	}
	u.dropCache()
	u.cacheFd, u.cacheRel = fd, rel
	return fd, nil
}

// openDirNoCreate is openDir for lookups; the caller closes the fd.
func (u *unpacker) openDirNoCreate(rel, entry string) (int, error) {
	if rel == "" {
		return unix.Dup(u.root)
	}
	return u.walk(rel, entry, false)
}

func (u *unpacker) walk(rel, entry string, create bool) (int, error) {
	fd, err := unix.Dup(u.root)
	if err != nil {
		return -1, err
	}
	done := ""
	for _, comp := range strings.Split(rel, "/") {
		done = path.Join(done, comp)
		nfd, err := unix.Openat(fd, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT && create {
			if err = unix.Mkdirat(fd, comp, 0o755); err == nil {
				err = setOverrideAt(fd, comp, ovl.Override{Mode: unix.S_IFDIR | 0o755})
			}
			if err != nil {
				unix.Close(fd)
				return -1, fmt.Errorf("layer entry %q: create parent %s: %w", entry, done, err)
			}
			nfd, err = unix.Openat(fd, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		unix.Close(fd)
		if err == unix.ENOTDIR || err == unix.ELOOP {
			return -1, fmt.Errorf("layer entry %q: %s is a symlink or not a directory; refusing to write through it", entry, done)
		}
		if err != nil {
			return -1, fmt.Errorf("layer entry %q: open %s: %w", entry, done, err)
		}
		fd = nfd
	}
	return fd, nil
}

func setOverrideAt(dirfd int, name string, ov ovl.Override) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsetxattr(fd, ovl.OverrideXattr, []byte(ov.Format()), 0)
}

// remove deletes whatever is at base in pfd (a later tar entry replaces an
// earlier one of the same name).
func (u *unpacker) remove(pfd int, base, rel string) error {
	err := unix.Unlinkat(pfd, base, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return err
	}
	// A directory: its path has just been walked without symlinks, and
	// nobody else writes into a layer being unpacked, so RemoveAll on the
	// full path stays inside.
	u.dropCache()
	return os.RemoveAll(filepath.Join(u.dir, rel))
}

func (u *unpacker) setTimes(rel string, mtime time.Time) error {
	if rel == "" {
		return unix.UtimesNanoAt(unix.AT_FDCWD, u.dir, timespecs(mtime), 0)
	}
	parent, base := path.Split(rel)
	fd, err := u.openDirNoCreate(strings.TrimSuffix(parent, "/"), rel)
	if err != nil {
		return nil // a later entry replaced a parent with a file or symlink
	}
	defer unix.Close(fd)
	err = unix.UtimesNanoAt(fd, base, timespecs(mtime), unix.AT_SYMLINK_NOFOLLOW)
	if err != nil && err != unix.ENOENT {
		return fmt.Errorf("layer entry %q: set times: %w", rel, err)
	}
	return nil
}
