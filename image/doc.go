// Package image is strata's OCI image store: it pulls images from registries,
// loads OCI layouts and docker archives, imports plain root filesystems,
// unpacks every layer once into a content-addressed directory, and answers
// "which directories, in which order, and with which config" when a
// container or a mount needs an image.
//
// # Using it
//
//	store, err := image.Open(root)          // root: see DefaultRoot
//	img, err := store.Resolve("alpine")     // name, name:tag, ID or ID prefix
//	lowers := img.Layers()                  // unpacked dirs, TOP FIRST
//	cfg := img.Config()                     // Env, WorkingDir, User, Entrypoint, Cmd
//	srv, err := unionfs.Mount(mnt, unionfs.Options{Lowers: lowers, ...})
//
// Layers() is ordered like overlayfs's lowerdir (and unionfs.Options.Lowers):
// element 0 is the newest layer. The directories are immutable once Resolve
// returns them; never write into them.
//
// # On disk
//
//	<root>/images.json          name -> image record, replaced atomically
//	<root>/images.lock          flock: held exclusively while images.json changes
//	<root>/gc.lock              flock: shared while layers are added, exclusive for prune
//	<root>/blobs/sha256/<hex>   manifests and configs, by digest
//	<root>/layers/<hex>/        one unpacked layer, named by its diff ID (the
//	                            sha256 of the uncompressed tar); no ':' so the
//	                            path is safe in an overlay lowerdir= string
//	<root>/tmp/                 unpacks in progress; renamed into layers/ last,
//	                            so a layer dir that exists is always complete
//	<root>/containers/<id>/     the runtime's (see rootless): upper/ is what
//	                            diff and commit read; the file "image" names
//	                            the image, one reference a line (name, ID, diff
//	                            ID or layer dir), so prune keeps what
//	                            containers use; an ID is safest, as names move
//
// # Layers are unpacked unprivileged
//
// A layer is unpacked as whoever runs strata, so the owner, the setuid,
// setgid and sticky bits, and device nodes of the tar cannot always be put
// on disk. Every regular file and directory therefore carries the xattr
// user.containers.override_stat (see unionfs/ovl.Override) holding the owner, mode
// and file type from the tar, in the format containers/storage writes and
// fuse-overlayfs reads; the union filesystem shows those values. On disk,
// files stay readable and writable by their owner and directories
// searchable, setuid/setgid bits are never set, and device nodes become
// empty regular files whose xattr names the device type and numbers. The
// layer's root dir carries the xattr as well, which is how fuse-overlayfs
// detects the format for a whole layer. Root unpacks the same way, so one
// store serves root and rootless mounts alike and no setuid-root file ever
// lands on the host.
//
// OCI whiteouts stay as they are in the tar: ".wh.NAME" files and
// ".wh..wh..opq" markers, which the union filesystem honours in lowers.
//
// Hostile layers cannot write outside their directory: ".." escapes, paths
// through symlinks (even ones that stay inside), hard links that leave the
// layer, and entries bigger than the store's limit are refused with an
// error naming the entry, and the partial layer is removed.
package image
