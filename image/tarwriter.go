package image

import (
	"archive/tar"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

// LayerOptions say how a directory becomes a layer tar.
type LayerOptions struct {
	// Overlay: the directory is an overlayfs-format upper. 0/0 character
	// devices become ".wh.NAME"; dirs marked overlay.opaque=y get a
	// ".wh..wh..opq" entry (unionfs/ovl decides what counts).
	Overlay bool
	// UIDs and GIDs turn the owners on disk into the owners the layer
	// records: an id inside a range is recorded as Container+(id-Host),
	// others as they are. They are the runtime's id maps when a rootless
	// user reads a container's files from the host, so the layer holds the
	// owners the container saw; nil records owners as they are on disk.
	UIDs, GIDs []IDRange
	// Skip lists layer-relative paths to leave out.
	Skip map[string]bool
}

// IDRange maps Size ids from Host on the host to Container on.
type IDRange struct{ Container, Host, Size int }

func recordedID(ranges []IDRange, id int) int {
	for _, r := range ranges {
		if id >= r.Host && id < r.Host+r.Size {
			return r.Container + id - r.Host
		}
	}
	return id
}

// WriteLayerTar writes dir as an OCI layer tar to w, in lexical order.
// Owner, mode and device type come from override_stat where present.
// dir may be a running container's upper: it is read only through walkTree,
// so a symlink becomes a symlink entry and is never followed.
func WriteLayerTar(w io.Writer, dir string, o LayerOptions) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	err := walkTree(dir, func(e *walkEntry) (bool, error) {
		rel, st, p := e.rel, &e.st, filepath.Join(dir, e.rel)
		if o.Skip[rel] {
			return false, nil
		}
		if e.openErr != nil {
			return false, fmt.Errorf("read %s: %w", p, e.openErr)
		}
		if o.Overlay && ovl.IsWhiteoutDevice(st) {
			return false, tw.WriteHeader(whiteoutHeader(rel, st))
		}
		hdr := &tar.Header{
			Name:    rel,
			Mode:    int64(st.Mode & 0o7777),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: time.Unix(st.Mtim.Unix()).UTC(),
			Format:  tar.FormatPAX,
		}
		hdr.Uid, hdr.Gid = recordedID(o.UIDs, hdr.Uid), recordedID(o.GIDs, hdr.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
		case unix.S_IFREG:
			hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
			if st.Nlink > 1 {
				key := [2]uint64{uint64(st.Dev), st.Ino}
				if first, ok := links[key]; ok {
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				} else {
					links[key] = rel
				}
			}
		case unix.S_IFLNK:
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
		case unix.S_IFIFO:
			hdr.Typeflag = tar.TypeFifo
		case unix.S_IFCHR, unix.S_IFBLK:
			hdr.Typeflag = tar.TypeChar
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				hdr.Typeflag = tar.TypeBlock
			}
			hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		default:
			return false, nil // sockets do not go into layers
		}
		if e.fd >= 0 {
			// Only regular files and dirs can carry user xattrs.
			if ov, ok, err := fdOverride(e.fd); err != nil {
				return false, fmt.Errorf("read %s of %s: %w", ovl.OverrideXattr, p, err)
			} else if ok {
				hdr.Uid, hdr.Gid, hdr.Mode = int(ov.UID), int(ov.GID), int64(ov.Mode&0o7777)
				if t := ov.Mode & unix.S_IFMT; (t == unix.S_IFCHR || t == unix.S_IFBLK) && hdr.Typeflag == tar.TypeReg {
					hdr.Typeflag, hdr.Size = tar.TypeChar, 0
					if t == unix.S_IFBLK {
						hdr.Typeflag = tar.TypeBlock
					}
					hdr.Devmajor, hdr.Devminor = int64(unix.Major(ov.Rdev)), int64(unix.Minor(ov.Rdev))
				}
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return false, fmt.Errorf("tar %s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			// The fd that was fstat'ed is the one read: its size is the
			// header's, whatever happens to the name meanwhile.
			if _, err := io.CopyN(tw, fdReader(e.fd), hdr.Size); err != nil {
				return false, fmt.Errorf("read %s: %w", p, err)
			}
		}
		if hdr.Typeflag == tar.TypeDir && o.Overlay && isOpaque(e.fd) {
			opq := &tar.Header{Name: rel + "/" + ovl.OpaqueMarker, Typeflag: tar.TypeReg, ModTime: hdr.ModTime, Format: tar.FormatPAX}
			if err := tw.WriteHeader(opq); err != nil {
				return false, fmt.Errorf("tar %s: %w", p, err)
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func whiteoutHeader(rel string, st *unix.Stat_t) *tar.Header {
	dir, base := filepath.Split(rel)
	return &tar.Header{
		Name:     dir + ovl.WhiteoutName(base),
		Typeflag: tar.TypeReg,
		ModTime:  time.Unix(st.Mtim.Unix()).UTC(),
		Format:   tar.FormatPAX,
	}
}

// isOpaque reports whether the dir open at fd is an opaque overlay dir.
func isOpaque(fd int) bool {
	if fd < 0 {
		return false
	}
	for _, x := range []string{ovl.TrustedPrefix + ovl.Opaque, ovl.UserPrefix + ovl.Opaque} {
		if v, ok, _ := fdXattr(fd, x); ok && ovl.IsOpaqueValue(v) {
			return true
		}
	}
	return false
}
