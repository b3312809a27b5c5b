package ovl

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// OverrideXattr is where containers/storage and fuse-overlayfs keep a
// file's true owner, mode and type when whoever wrote it could not set
// them on disk (an unprivileged user).
const OverrideXattr = "user.containers.override_stat"

// Override is the value of OverrideXattr.
//
// Written as containers/storage's FormatContainersOverrideXattrDevice:
//
//	"UID:GID:MODE:TYPE"  e.g. "0:0:0755:dir", "0:0:4755:file", "0:5:0620:char-136-0"
//
// UID and GID decimal; MODE the permission and set-id bits in octal, at
// least four digits; TYPE one of file, dir, symlink, pipe, socket,
// block-MAJ-MIN, char-MAJ-MIN. Read also: the three-field form of older
// writers ("UID:GID:MODE", TYPE then being the type on disk), and a MODE
// that carries S_IFMT bits, which fuse-overlayfs wrote once, standing for
// TYPE when there is none.
type Override struct {
	UID, GID uint32
	// Mode is the file type (S_IFREG, S_IFDIR, ...; 0: the type on disk)
	// and the permission bits, as in st_mode.
	Mode uint32
	Rdev uint64 // for S_IFCHR and S_IFBLK
}

// Format renders o in the four-field form. A zero type is written "file".
func (o Override) Format() string {
	var typ string
	switch o.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		typ = "dir"
	case unix.S_IFLNK:
		typ = "symlink"
	case unix.S_IFIFO:
		typ = "pipe"
	case unix.S_IFSOCK:
		typ = "socket"
	case unix.S_IFBLK:
		typ = fmt.Sprintf("block-%d-%d", unix.Major(o.Rdev), unix.Minor(o.Rdev))
	case unix.S_IFCHR:
		typ = fmt.Sprintf("char-%d-%d", unix.Major(o.Rdev), unix.Minor(o.Rdev))
	default:
		typ = "file"
	}
	return fmt.Sprintf("%d:%d:%04o:%s", o.UID, o.GID, o.Mode&0o7777, typ)
}

// ParseOverride reads any form described at Override. Bad syntax or an
// unknown TYPE is an error naming the value: an override that cannot be
// read must not be half applied.
func ParseOverride(v string) (Override, error) {
	v = strings.TrimRight(v, "\x00\n")
	f := strings.Split(v, ":")
	if len(f) != 3 && len(f) != 4 {
		return Override{}, fmt.Errorf("override_stat %q: want UID:GID:MODE[:TYPE]", v)
	}
	uid, err1 := strconv.ParseUint(f[0], 10, 32)
	gid, err2 := strconv.ParseUint(f[1], 10, 32)
	mode, err3 := strconv.ParseUint(f[2], 8, 32)
	if err1 != nil || err2 != nil || err3 != nil {
		return Override{}, fmt.Errorf("override_stat %q: want decimal UID and GID, octal MODE", v)
	}
	o := Override{UID: uint32(uid), GID: uint32(gid), Mode: uint32(mode) & (unix.S_IFMT | 0o7777)}
	if len(f) == 3 {
		return o, nil
	}
	o.Mode &= 0o7777
	switch typ := f[3]; {
	case typ == "file":
		o.Mode |= unix.S_IFREG
	case typ == "dir":
		o.Mode |= unix.S_IFDIR
	case typ == "symlink":
		o.Mode |= unix.S_IFLNK
	case typ == "pipe":
		o.Mode |= unix.S_IFIFO
	case typ == "socket":
		o.Mode |= unix.S_IFSOCK
	case strings.HasPrefix(typ, "block-"), strings.HasPrefix(typ, "char-"):
		kind, nums, _ := strings.Cut(typ, "-")
		maj, mnr, ok := strings.Cut(nums, "-")
		ma, errA := strconv.ParseUint(maj, 10, 32)
		mi, errB := strconv.ParseUint(mnr, 10, 32)
		if !ok || errA != nil || errB != nil {
			return Override{}, fmt.Errorf("override_stat %q: bad device type %q", v, typ)
		}
		o.Rdev = unix.Mkdev(uint32(ma), uint32(mi))
		if kind == "block" {
			o.Mode |= unix.S_IFBLK
		} else {
			o.Mode |= unix.S_IFCHR
		}
	default:
		return Override{}, fmt.Errorf("override_stat %q: unknown type %q", v, typ)
	}
	return o, nil
}

// Apply rewrites the owner and mode of st, an entry's attributes on disk,
// as o says. The type changes only where an empty regular file stands for
// a device, fifo or socket its writer could not create; a type that
// disagrees otherwise is the disk's.
func (o Override) Apply(st *unix.Stat_t) {
	st.Uid, st.Gid = o.UID, o.GID
	typ := st.Mode & unix.S_IFMT
	switch ot := o.Mode & unix.S_IFMT; {
	case typ == unix.S_IFREG && (ot == unix.S_IFCHR || ot == unix.S_IFBLK || ot == unix.S_IFIFO || ot == unix.S_IFSOCK):
		typ = ot
		st.Rdev = o.Rdev
	}
	st.Mode = typ | o.Mode&0o7777
}
