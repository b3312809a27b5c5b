// Package unionfs is strata's union filesystem: read-only lower directories
// stacked under one writable upper directory, served over FUSE with
// go-fuse's fs API, and written on disk exactly as kernel overlayfs writes
// it, so that either can mount what the other left behind.
//
// # Layers and lookup
//
// A name resolves from the top: the upper directory first, then each lower
// in order. The first non-directory wins. Directories merge until one of
// them is opaque. A whiteout (a 0/0 character device, or, in lowers
// unpacked from OCI tarballs, a ".wh.NAME" file) ends the search with
// ENOENT; an opaque directory carries "trusted.overlay.opaque=y" (or
// "user.overlay.opaque=y" with userxattr) or holds ".wh..wh..opq".
//
// The on-disk format itself (what counts as a whiteout, opaque marks,
// overlay xattr names, override_stat, origin handles) is package ovl's,
// shared with the image store.
//
// # Confinement
//
// The container controls its upper directory and can rename anything in it
// at any moment, symlinks included, racing the server. So no layer path is
// ever handed to the kernel to walk: beneath.go resolves a path's parent by
// openat2 beneath the layer's held root, refusing symlinks, magic links and
// mount crossings, and acts on the last component through that directory
// fd without following it. Every syscall on a layer, the work dir or the
// index goes through it. Paths are made from go-fuse's tree under a read
// lock that a rename holds for writing until the tree matches the disk
// (renameLocker), so a path is never stale.
//
// # Copy-up
//
// The first change to a lower entry copies it into the upper directory:
// parents first, data by reflink or copy_file_range, then owner, mode,
// xattrs and times, all in a temporary name under WORK/work that is renamed
// into place last, so a crash never shows a half-copied file. A lower file
// with more than one name is copied once, into overlayfs's own index
// (WORK/index, see index.go), and every name of it then shares that copy:
// two names of one file stay one file, for strata and the kernel alike.
//
// # Identity
//
// Inode numbers are the backing files' numbers, tagged with the layer's
// filesystem when layers span several filesystems, and a copied-up file
// keeps the number of its lower origin for the life of the mount. go-fuse
// merges nodes by that number, so every name of a hard-linked file is one
// node. Nodes never trust a single remembered path: a lower entry's path
// never changes (lowers are immutable), and an upper entry's path is asked
// of the tree when needed, because renames move it.
//
// # Ownership
//
// As root, owners and modes are real. Where chown is impossible (an
// unprivileged mount, or a user namespace with one id), they live in
// "user.containers.override_stat" ("uid:gid:mode[:type]"), the format
// containers/storage and fuse-overlayfs use; lowers carrying that xattr on
// their root directory are read the same way.
package unionfs
