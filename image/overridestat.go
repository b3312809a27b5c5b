package image

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// OverrideStatXattr is the xattr in which containers/storage and
// fuse-overlayfs keep a file's true owner and mode when the user who
// unpacked it could not set them on disk.
const OverrideStatXattr = "user.containers.override_stat"

// OverrideStat is the value of OverrideStatXattr.
//
// Format (containers/storage idtools.FormatContainersOverrideXattrDevice):
//
//	"UID:GID:MODE:TYPE"  e.g. "0:0:0755:dir", "0:0:4755:file", "0:5:0620:char-136-0"
//
// UID and GID are decimal; MODE is the permission bits including
// setuid/setgid/sticky (07777), in octal with at least four digits; TYPE is
// one of file, dir, symlink, pipe, socket, block-MAJOR-MINOR,
// char-MAJOR-MINOR. Older writers (fuse-overlayfs's own helper) omit TYPE
// ("UID:GID:MODE"); Parse accepts that and leaves Type zero, meaning "the
// type the file has on disk".
type OverrideStat struct {
	UID, GID int
	// Mode holds the file type (unix.S_IFREG, S_IFDIR, ...; 0 if unknown)
	// and the permission bits, as in stat's st_mode.
	Mode  uint32
	Major uint32 // device numbers, for S_IFCHR and S_IFBLK
	Minor uint32
}

// Format renders s in the four-field containers/storage format.
func (s OverrideStat) Format() string {
	var typ string
	switch s.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		typ = "dir"
	case unix.S_IFLNK:
		typ = "symlink"
	case unix.S_IFIFO:
		typ = "pipe"
	case unix.S_IFSOCK:
		typ = "socket"
	case unix.S_IFBLK:
		typ = fmt.Sprintf("block-%d-%d", s.Major, s.Minor)
	case unix.S_IFCHR:
		typ = fmt.Sprintf("char-%d-%d", s.Major, s.Minor)
	default:
		typ = "file"
	}
	return fmt.Sprintf("%d:%d:%04o:%s", s.UID, s.GID, s.Mode&0o7777, typ)
}

// ParseOverrideStat reads either format described at OverrideStat.
func ParseOverrideStat(v string) (OverrideStat, error) {
	v = strings.TrimRight(v, "\x00")
	f := strings.Split(v, ":")
	if len(f) != 3 && len(f) != 4 {
		return OverrideStat{}, fmt.Errorf("override_stat %q: want UID:GID:MODE[:TYPE]", v)
	}
	var s OverrideStat
	uid, err1 := strconv.ParseUint(f[0], 10, 32)
	gid, err2 := strconv.ParseUint(f[1], 10, 32)
	mode, err3 := strconv.ParseUint(f[2], 8, 32)
	if err1 != nil || err2 != nil || err3 != nil {
		return OverrideStat{}, fmt.Errorf("override_stat %q: want decimal UID and GID, octal MODE", v)
	}
	s.UID, s.GID, s.Mode = int(uid), int(gid), uint32(mode)&0o7777
	if len(f) == 3 {
		return s, nil
	}
	typ := f[3]
	switch {
	case typ == "file":
		s.Mode |= unix.S_IFREG
	case typ == "dir":
		s.Mode |= unix.S_IFDIR
	case typ == "symlink":
		s.Mode |= unix.S_IFLNK
	case typ == "pipe":
		s.Mode |= unix.S_IFIFO
	case typ == "socket":
		s.Mode |= unix.S_IFSOCK
	case strings.HasPrefix(typ, "block-"), strings.HasPrefix(typ, "char-"):
		kind, nums, _ := strings.Cut(typ, "-")
		maj, min, ok := strings.Cut(nums, "-")
		ma, errA := strconv.ParseUint(maj, 10, 32)
		mi, errB := strconv.ParseUint(min, 10, 32)
		if !ok || errA != nil || errB != nil {
			return OverrideStat{}, fmt.Errorf("override_stat %q: bad device type %q", v, typ)
		}
		s.Major, s.Minor = uint32(ma), uint32(mi)
		if kind == "block" {
			s.Mode |= unix.S_IFBLK
		} else {
			s.Mode |= unix.S_IFCHR
		}
	default:
		return OverrideStat{}, fmt.Errorf("override_stat %q: unknown type %q", v, typ)
	}
	return s, nil
}

// ReadOverrideStat returns the override of path (not following symlinks);
// ok is false when path has none.
func ReadOverrideStat(path string) (s OverrideStat, ok bool, err error) {
	buf := make([]byte, 128)
	n, err := unix.Lgetxattr(path, OverrideStatXattr, buf)
	if err == unix.ENODATA || err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
		return OverrideStat{}, false, nil
	}
	if err != nil {
		return OverrideStat{}, false, fmt.Errorf("read %s of %s: %w", OverrideStatXattr, path, err)
	}
	s, err = ParseOverrideStat(string(buf[:n]))
	if err != nil {
		return OverrideStat{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return s, true, nil
}
