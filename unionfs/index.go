package unionfs

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

// The index keeps hard links whole. A lower file with several names is
// copied up once, into the index dir, and each name that changes is linked
// to that copy; names not yet linked find the copy at lookup.
//
// With trusted xattrs and all layers on the upper's filesystem, strata
// writes overlayfs's own index (index=on): WORK/index/<hex file handle of
// the lower origin>, with "trusted.overlay.origin" (the handle) and
// "trusted.overlay.nlink" ("U+n": the union's link count relative to the
// upper inode's), so the kernel reads what strata wrote and the reverse.
// Otherwise (userxattr, where overlayfs has no index, or layers on other
// filesystems) it keeps a private WORK/strata-index keyed by "dev-ino".

// indexEntry is one hard-linked file in the index.
type indexEntry struct {
	// nlink counts the file's names in the union, as overlayfs's
	// "overlay.nlink" does: neither the upper count (which includes the
	// index link) nor the lower count (which misses new links) is right.
	nlink int
}

func (u *unionFS) openIndex(work int) error {
	u.kernelIndex = !u.opts.UserXattr
	for _, l := range u.layers {
		if l.dev != u.upper.dev {
			u.kernelIndex = false
		}
	}
	name := "strata-index"
	if u.kernelIndex {
		name = "index"
	}
	fd, err := u.workSubdir(work, name)
	if err != nil {
		return err
	}
	u.idxFd = fd
	return nil
}

// originHandle is overlayfs's "struct ovl_fb" for a lower entry: version 0,
// magic 0xfb, length, flags (0: little-endian, lower), handle type, the
// filesystem uuid (null when layers share the upper's filesystem) and the
// file handle itself.
func originHandle(e entry) ([]byte, bool) {
	// Without AT_SYMLINK_FOLLOW the last component is not followed.
	h, _, err := unix.NameToHandleAt(e.dir, e.name, 0)
	if err != nil {
		return nil, false
	}
	return ovl.EncodeOrigin(h.Type(), h.Bytes()), true
}

// indexKey names the index entry of lower file e in l.
func (u *unionFS) indexKey(l *layer, e entry, raw uint64) string {
	if u.kernelIndex {
		if fb, ok := originHandle(e); ok {
			return ovl.IndexName(fb)
		}
	}
	return strconv.FormatUint(l.dev, 10) + "-" + strconv.FormatUint(raw, 10)
}

// indexed returns the index entry key, reading it from disk the first time
// (an earlier mount, strata's or the kernel's, may have made it).
func (u *unionFS) indexed(key string) *indexEntry {
	u.inoMu.Lock()
	e := u.index[key]
	u.inoMu.Unlock()
	if e != nil || u.idxFd < 0 {
		return e
	}
	var st unix.Stat_t
	if u.indexEntry(key).Stat(&st) != 0 {
		return nil
	}
	e = &indexEntry{nlink: u.readNlink(key, &st)}
	u.inoMu.Lock()
	if old := u.index[key]; old != nil {
		e = old
	} else {
		u.index[key] = e
		u.indexByIno[st.Ino] = key
	}
	u.inoMu.Unlock()
	return e
}

// readNlink reads the union link count of an index entry.
func (u *unionFS) readNlink(key string, st *unix.Stat_t) int {
	if v, ok := u.indexEntry(key).getxattrString(u.xattrPrefix + ovl.Nlink); ok && len(v) >= 2 {
		if d, err := strconv.Atoi(v[1:]); err == nil {
			if v[0] == 'U' {
				return int(st.Nlink) + d
			}
		}
	}
	return int(st.Nlink) - 1 // the index link itself
}

// indexOfUpper finds the index entry an upper file e (inode raw) is a
// name of, or "".
func (u *unionFS) indexOfUpper(e entry, raw uint64) string {
	u.inoMu.Lock()
	key := u.indexByIno[raw]
	u.inoMu.Unlock()
	if key != "" || !u.kernelIndex {
		return key
	}
	origin, ok := e.getxattrString(u.xattrPrefix + ovl.Origin)
	if !ok {
		return ""
	}
	key = ovl.IndexName([]byte(origin))
	var st unix.Stat_t
	if u.indexEntry(key).Stat(&st) != 0 || st.Ino != raw {
		return ""
	}
	if u.indexed(key) == nil {
		return ""
	}
	return key
}

// markIndexCopy labels a fresh copy (tmp in the work dir) as overlayfs
// labels an index entry, before it is renamed into the index.
func (u *unionFS) markIndexCopy(tmp entry, key string, nlink int) syscall.Errno {
	if !u.kernelIndex || strings.Contains(key, "-") {
		return 0
	}
	fb, ok := ovl.ParseIndexName(key)
	if !ok {
		return 0
	}
	if errno := tmp.Setxattr(u.xattrPrefix+ovl.Origin, fb, 0); errno != 0 {
		return errno
	}
	// The copy alone has one link; the union has nlink names.
	return tmp.Setxattr(u.xattrPrefix+ovl.Nlink, []byte(fmt.Sprintf("U%+d", nlink-1)), 0)
}

// syncIndexNlink stores the union link count of key relative to the upper
// inode's count, after a link or unlink changed either.
func (u *unionFS) syncIndexNlink(key string) {
	if !u.kernelIndex {
		return
	}
	e := u.indexed(key)
	if e == nil {
		return
	}
	ie := u.indexEntry(key)
	var st unix.Stat_t
	if ie.Stat(&st) != 0 {
		return
	}
	u.inoMu.Lock()
	v := fmt.Sprintf("U%+d", e.nlink-int(st.Nlink))
	u.inoMu.Unlock()
	ie.Setxattr(u.xattrPrefix+ovl.Nlink, []byte(v), 0)
}

// addLinks changes the union link count of an indexed file.
func (u *unionFS) addLinks(key string, delta int) {
	u.inoMu.Lock()
	if e := u.index[key]; e != nil {
		e.nlink += delta
	}
	u.inoMu.Unlock()
	u.syncIndexNlink(key)
}

// learnOrigin reads overlayfs's origin xattr of upper file e (inode raw)
// and, for the handle types that carry the inode number (ext4, xfs and most
// local filesystems: FILEID_INO32_GEN and _PARENT), remembers that number.
func (u *unionFS) learnOrigin(e entry, raw uint64) {
	u.inoMu.Lock()
	_, known := u.copiedUp[raw]
	u.inoMu.Unlock()
	if known {
		return
	}
	fb, ok := e.getxattrString(u.xattrPrefix + ovl.Origin)
	if !ok {
		return
	}
	if origin, ok := ovl.OriginIno([]byte(fb)); ok {
		u.rememberOrigin(raw, origin|u.upper.inoTag)
	}
}
