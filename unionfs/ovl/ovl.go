// Package ovl is the on-disk format of kernel overlayfs and of the OCI
// layers strata stacks, in one place: what counts as a whiteout or an
// opaque directory, the overlay xattr names, the override_stat codec that
// containers/storage and fuse-overlayfs share, and the origin file handles
// the kernel's index is keyed by.
//
// It knows nothing of FUSE or of images. The union filesystem reads and
// writes layers with it; image/ turns uppers into layer tarballs and
// tarballs into lower directories with it; neither keeps a copy of a rule.
//
// # What counts as a whiteout
//
// Two forms, and only these, in every layer:
//   - a character device 0/0 named NAME (what overlayfs writes);
//   - an empty file named ".wh.NAME" (OCI layers; also what strata writes
//     in an upper where mknod is refused).
//
// A directory is opaque when it carries OPAQUE xattr "y" (trusted. or,
// with userxattr, user.) or holds ".wh..wh..opq". Empty files carrying an
// overlay.whiteout xattr (the form some image tools write for kernels since
// 6.7) are not whiteouts to strata: neither the kernel nor strata writes
// them into an upper, and treating them alike everywhere keeps what a
// mount shows and what a commit records the same.
package ovl

import (
	"strings"

	"golang.org/x/sys/unix"
)

const (
	// WhiteoutPrefix marks an OCI whiteout: ".wh.NAME" deletes NAME.
	WhiteoutPrefix = ".wh."
	// OpaqueMarker in a directory hides everything below it (OCI form).
	OpaqueMarker = ".wh..wh..opq"

	// TrustedPrefix and UserPrefix start overlayfs's own xattrs; UserPrefix
	// is overlayfs's userxattr mode, for mounts without CAP_SYS_ADMIN.
	TrustedPrefix = "trusted.overlay."
	UserPrefix    = "user.overlay."

	// Names below a prefix.
	Opaque = "opaque" // "y": the directory hides lower ones
	Origin = "origin" // the lower file a copy-up came from (a file handle)
	Nlink  = "nlink"  // an index entry's union link count, "U+n"
)

// XattrPrefix is the overlay xattr prefix for the userxattr setting.
func XattrPrefix(userxattr bool) string {
	if userxattr {
		return UserPrefix
	}
	return TrustedPrefix
}

// IsOverlayXattr reports whether name is overlayfs bookkeeping (either
// prefix), which describes the layer rather than the file and so never
// travels with a copy-up or shows through a mount.
func IsOverlayXattr(name string) bool {
	return strings.HasPrefix(name, TrustedPrefix) || strings.HasPrefix(name, UserPrefix)
}

// IsWhiteoutDevice reports whether st is overlayfs's whiteout: a character
// device numbered 0/0.
func IsWhiteoutDevice(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// WhiteoutTarget returns the name an OCI whiteout file deletes. ok is
// false for names that are not whiteouts, and for the opaque marker.
func WhiteoutTarget(name string) (target string, ok bool) {
	if name == OpaqueMarker || !strings.HasPrefix(name, WhiteoutPrefix) {
		return "", false
	}
	return name[len(WhiteoutPrefix):], true
}

// WhiteoutName is the OCI whiteout file that deletes name.
func WhiteoutName(name string) string { return WhiteoutPrefix + name }

// IsOpaqueValue reports whether an opaque xattr's value marks the
// directory opaque.
func IsOpaqueValue(v []byte) bool {
	return strings.TrimRight(string(v), "\x00") == "y"
}
