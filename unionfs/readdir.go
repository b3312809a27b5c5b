package unionfs

import (
	"context"
	"sort"
	"strings"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

// dirHandle is an open directory: the merged listing is taken once, at
// opendir, so offsets stay meaningful for telldir/seekdir however the
// directory changes meanwhile (POSIX lets a stream miss or keep entries
// changed after it was opened).
type dirHandle struct {
	entries []fuse.DirEntry
	pos     int
	n       *node
	// fd of the directory's top part, so fstat works after the directory
	// is removed or replaced by a rename.
	fd int
}

var (
	_ fs.FileGetattrer    = (*dirHandle)(nil)
	_ fs.FileReleasedirer = (*dirHandle)(nil)
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileFsyncdirer   = (*dirHandle)(nil)
)

// Readdirent hands out entries of a listing shared by all handles; their
// offsets were set when the listing was made, so nothing here writes to it.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if d.pos >= len(d.entries) {
		return nil, 0
	}
	e := d.entries[d.pos]
	d.pos++
	return &e, 0
}

// dropListing forgets the merged listing after strata changed the
// directory. If the kernel may hold a copy (it caches every listing once
// opendir is zero-message), that goes too: the kernel drops its own on
// the changes it makes, but not on those strata makes for it. The
// notification is sent from its own goroutine, as the kernel may hold
// locks on the directory until this request is answered.
func (n *node) dropListing() {
	n.mu.Lock()
	n.listing = nil
	cached := n.kernelListed
	n.kernelListed = false
	n.mu.Unlock()
	if cached {
		go n.NotifyContent(0, 0)
	}
}

func (d *dirHandle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	if d.fd < 0 {
		return d.n.Getattr(ctx, nil, out)
	}
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return errnoOf(err)
	}
	applyOverride(d.n.u.upper, entry{dir: d.fd, name: "."}, &st)
	d.n.fixIdentity(&st)
	statToAttr(&st, &out.Attr)
	d.n.setAttrTimeout(out)
	return 0
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	if d.fd >= 0 {
		unix.Close(d.fd)
	}
}

// Seekdir continues after the entry whose cookie is off (see
// listingCookies); the entry itself may be gone since.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.pos = sort.Search(len(d.entries), func(i int) bool { return d.entries[i].Off > off })
	return 0
}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if d.fd < 0 {
		return 0
	}
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return errnoOf(err)
	}
	defer unix.Close(fd)
	return errnoOf(unix.Fsync(fd))
}

// listingCookies gives each entry its name's cookie as its offset and
// sorts the listing by it. An offset is where a listing resumes, and a
// cookie stays the same while entries come and go around it, so a reader
// that resumes after a change neither repeats nor skips an entry that was
// there all along (an index would shift); that matters most once opendir
// is zero-message, where every READDIR takes the listing afresh.
func listingCookies(entries []fuse.DirEntry) {
	for i := range entries {
		entries[i].Off = nameCookie(entries[i].Name)
	}
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].Off != entries[j].Off {
			return entries[i].Off < entries[j].Off
		}
		return entries[i].Name < entries[j].Name
	})
	for i := 1; i < len(entries); i++ {
		if entries[i].Off <= entries[i-1].Off {
			entries[i].Off = entries[i-1].Off + 1 // a collision: rare, and still ordered
		}
	}
}

// nameCookie is FNV-1a of name, made positive as a loff_t and never 0,
// which means the start of a listing.
func nameCookie(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return h>>2 | 1
}

// takeListing returns the merged listing, made once and kept until the
// directory changes.
func (n *node) takeListing() ([]fuse.DirEntry, syscall.Errno) {
	n.mu.Lock()
	entries := n.listing
	n.mu.Unlock()
	if entries != nil {
		return entries, 0
	}
	entries, errno := n.merged()
	if errno != 0 {
		return nil, errno
	}
	listingCookies(entries)
	if entries == nil {
		entries = []fuse.DirEntry{}
	}
	n.mu.Lock()
	n.listing = entries
	n.mu.Unlock()
	return entries, 0
}

// dirNoFd in OpendirHandle's flags (no open flag uses the bit) asks for a
// handle that only lists: rawFS makes one per READDIR when opendir is
// zero-message, and it never needs the directory's fd.
const dirNoFd = 1 << 31

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	entries, errno := n.takeListing()
	if errno != 0 {
		return nil, 0, errno
	}
	if n.u.opts.Speed.CacheReaddir || flags&dirNoFd != 0 {
		n.mu.Lock()
		n.kernelListed = true
		n.mu.Unlock()
	}
	if flags&dirNoFd != 0 {
		return &dirHandle{entries: entries, n: n, fd: -1}, 0, 0
	}
	var fuseFlags uint32
	if n.u.opts.Speed.CacheReaddir {
		// Every change to this directory passes through the kernel, which
		// drops its cached listing itself.
		fuseFlags |= fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	}
	// Only a directory with an upper part can be removed or replaced
	// while open; hold its fd so fstat still works then. A lower-only
	// directory stays where it is.
	fd := -1
	n.mu.Lock()
	up := n.hasUpper
	n.mu.Unlock()
	if up {
		d, errno := n.upperDir()
		if errno != 0 {
			return nil, 0, errno
		}
		fd = d.fd
		if !d.own {
			var err error
			if fd, err = unix.Dup(d.fd); err != nil {
				return nil, 0, errnoOf(err)
			}
		}
	}
	return &dirHandle{entries: entries, n: n, fd: fd}, fuseFlags, 0
}

// rawDirent is one entry read by getdents64.
type rawDirent struct {
	name string
	ino  uint64
	typ  uint8
}

// readDirFd lists the open directory fd with getdents64, keeping d_ino
// and d_type, which os.ReadDir would make us stat for.
func readDirFd(dfd int, fn func(rawDirent)) syscall.Errno {
	buf := make([]byte, 32<<10)
	for {
		nread, err := unix.Getdents(dfd, buf)
		if err != nil {
			return errnoOf(err)
		}
		if nread <= 0 {
			return 0
		}
		for off := 0; off < nread; {
			d := (*unix.Dirent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+int(unsafe.Offsetof(d.Name)) : off+int(d.Reclen)]
			if i := indexByte(nameBytes, 0); i >= 0 {
				nameBytes = nameBytes[:i]
			}
			off += int(d.Reclen)
			name := string(nameBytes)
			if name == "." || name == ".." {
				continue
			}
			fn(rawDirent{name: name, ino: d.Ino, typ: d.Type})
		}
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func dtToMode(t uint8) uint32 {
	return uint32(t) << 12
}

// merged lists the directory as the union shows it: upper entries, then
// each lower's, without duplicates, whiteouts or whiteout markers, and
// stopping at an opaque layer.
func (n *node) merged() ([]fuse.DirEntry, syscall.Errno) {
	n.mu.Lock()
	up, removed := n.hasUpper, n.pin > 0
	n.mu.Unlock()
	if removed {
		return []fuse.DirEntry{}, 0 // a removed directory is empty
	}
	d := dirRef{fd: -1}
	if up && n.u.upper != nil {
		var errno syscall.Errno
		if d, errno = n.upperDir(); errno != 0 {
			return nil, errno
		}
		defer d.Close()
	}
	return n.u.mergedAt(n, d)
}

// mergedAt is merged for a directory whose upper part is ud (fd -1:
// none); n need not be in the tree.
func (u *unionFS) mergedAt(n *node, ud dirRef) ([]fuse.DirEntry, syscall.Errno) {
	n.mu.Lock()
	hasUpper, opaque, dirLowers, lrel := n.hasUpper, n.opaque, n.dirLowers, n.lowerRel()
	n.mu.Unlock()

	var out []fuse.DirEntry
	hidden := map[string]bool{}   // names settled by a higher layer
	upperDirs := map[string]int{} // upper subdirectories, by index in out
	if hasUpper && ud.fd >= 0 {
		dfd, err := unix.Openat(ud.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, errnoOf(err)
		}
		errno := readDirFd(dfd, func(e rawDirent) {
			if e.typ == unix.DT_CHR {
				var st unix.Stat_t
				if ud.at(e.name).Stat(&st) == 0 && ovl.IsWhiteoutDevice(&st) {
					hidden[e.name] = true
					return
				}
			}
			if !u.charWhiteouts && strings.HasPrefix(e.name, ovl.WhiteoutPrefix) {
				if target, ok := ovl.WhiteoutTarget(e.name); ok {
					hidden[target] = true
				}
				return
			}
			hidden[e.name] = true
			if e.typ == unix.DT_DIR && len(dirLowers) > 0 && !opaque {
				upperDirs[e.name] = len(out)
			}
			out = append(out, fuse.DirEntry{Name: e.name, Ino: u.ino(u.upper, e.ino), Mode: dtToMode(e.typ)})
		})
		unix.Close(dfd)
		if errno != 0 {
			return nil, errno
		}
		if opaque {
			return out, 0
		}
	}
	for _, li := range dirLowers {
		l := u.layers[li]
		var layerHidden []string
		opq := false
		dfd, err := openat2Beneath(l.fd, dirOf(lrel), unix.O_RDONLY|unix.O_DIRECTORY)
		if err == unix.ENOENT || err == unix.ENOTDIR {
			continue
		} else if err != nil {
			return nil, errnoOf(err)
		}
		ld := dirRef{fd: dfd}
		errno := readDirFd(dfd, func(e rawDirent) {
			if e.name == ovl.OpaqueMarker {
				opq = true
				return
			}
			if name, ok := ovl.WhiteoutTarget(e.name); ok {
				layerHidden = append(layerHidden, name)
				delete(upperDirs, name)
				return
			}
			if i, ok := upperDirs[e.name]; ok {
				// The first lower entry of the name decides, as in lookup.
				delete(upperDirs, e.name)
				if e.typ == unix.DT_DIR {
					out[i].Ino = u.upperDirIno(out[i].Ino, u.isOpaque(u.upper, ud.at(e.name)), l, e.ino)
				}
				return
			}
			if hidden[e.name] {
				return
			}
			if e.typ == unix.DT_CHR {
				var st unix.Stat_t
				if ld.at(e.name).Stat(&st) == 0 && ovl.IsWhiteoutDevice(&st) {
					layerHidden = append(layerHidden, e.name)
					return
				}
			}
			layerHidden = append(layerHidden, e.name)
			out = append(out, fuse.DirEntry{Name: e.name, Ino: u.ino(l, e.ino), Mode: dtToMode(e.typ)})
		})
		unix.Close(dfd)
		if errno != 0 {
			return nil, errno
		}
		for _, h := range layerHidden {
			hidden[h] = true
		}
		if opq {
			break // dirLowers already ends at an xattr-opaque layer
		}
	}
	return out, 0
}

func dirOf(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}
