package image

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// tarOptions say how a directory becomes a layer tar.
type tarOptions struct {
	// overlay: dir is an overlayfs-format upper. 0/0 character devices and
	// files marked overlay.whiteout become ".wh.NAME"; dirs marked
	// overlay.opaque=y get a ".wh..wh..opq" entry.
	overlay bool
	// rootOwned: files owned by the caller are recorded as owned by root,
	// as they appear inside a rootless container.
	rootOwned bool
	// skip lists layer-relative paths to leave out.
	skip map[string]bool
}

// writeLayerTar writes dir as an OCI layer tar to w, in lexical order.
// Owner, mode and device type come from OverrideStatXattr where present.
func writeLayerTar(w io.Writer, dir string, o tarOptions) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	ids := newIDUnmapper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if o.skip[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if o.overlay && isOverlayWhiteout(p, &st) {
			return tw.WriteHeader(whiteoutHeader(rel, &st))
		}
		hdr := &tar.Header{
			Name:    rel,
			Mode:    int64(st.Mode & 0o7777),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: time.Unix(st.Mtim.Unix()).UTC(),
			Format:  tar.FormatPAX,
		}
		if o.rootOwned {
			hdr.Uid, hdr.Gid = ids.uid(hdr.Uid), ids.gid(hdr.Gid)
		}
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
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("readlink %s: %w", p, err)
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		case unix.S_IFIFO:
			hdr.Typeflag = tar.TypeFifo
		case unix.S_IFCHR, unix.S_IFBLK:
			hdr.Typeflag = tar.TypeChar
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				hdr.Typeflag = tar.TypeBlock
			}
			hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		default:
			return nil // sockets do not go into layers
		}
		if ov, ok, err := ReadOverrideStat(p); err != nil {
			return err
		} else if ok {
			hdr.Uid, hdr.Gid, hdr.Mode = ov.UID, ov.GID, int64(ov.Mode&0o7777)
			if t := ov.Mode & unix.S_IFMT; (t == unix.S_IFCHR || t == unix.S_IFBLK) && hdr.Typeflag == tar.TypeReg {
				hdr.Typeflag, hdr.Size = tar.TypeChar, 0
				if t == unix.S_IFBLK {
					hdr.Typeflag = tar.TypeBlock
				}
				hdr.Devmajor, hdr.Devminor = int64(ov.Major), int64(ov.Minor)
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar %s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			_, err = io.CopyN(tw, f, hdr.Size)
			f.Close()
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
		}
		if hdr.Typeflag == tar.TypeDir && o.overlay && isOpaque(p) {
			opq := &tar.Header{Name: rel + "/" + opaqueMarker, Typeflag: tar.TypeReg, ModTime: hdr.ModTime, Format: tar.FormatPAX}
			if err := tw.WriteHeader(opq); err != nil {
				return fmt.Errorf("tar %s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// isOverlayWhiteout: a 0/0 char device, or an empty file carrying
// overlay.whiteout (the xattr form kernels since 6.7 also read).
func isOverlayWhiteout(p string, st *unix.Stat_t) bool {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return st.Rdev == 0
	case unix.S_IFREG:
		return st.Size == 0 && (hasXattr(p, "trusted.overlay.whiteout") || hasXattr(p, "user.overlay.whiteout"))
	}
	return false
}

func whiteoutHeader(rel string, st *unix.Stat_t) *tar.Header {
	dir, base := filepath.Split(rel)
	return &tar.Header{
		Name:     dir + whiteoutPrefix + base,
		Typeflag: tar.TypeReg,
		ModTime:  time.Unix(st.Mtim.Unix()).UTC(),
		Format:   tar.FormatPAX,
	}
}

func isOpaque(p string) bool {
	for _, x := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		buf := make([]byte, 8)
		if n, err := unix.Lgetxattr(p, x, buf); err == nil && strings.TrimRight(string(buf[:n]), "\x00") == "y" {
			return true
		}
	}
	return false
}

func hasXattr(p, name string) bool {
	_, err := unix.Lgetxattr(p, name, nil)
	return err == nil
}

// idUnmapper turns host ids into the ids a rootless container sees: the
// caller is root, and the caller's first /etc/subuid range is 1..count,
// as the runtime maps them. Root needs no unmapping.
type idUnmapper struct {
	euid, egid     int
	us, uc, gs, gc int
}

func newIDUnmapper() idUnmapper {
	m := idUnmapper{euid: os.Geteuid(), egid: os.Getegid(), us: -1, gs: -1}
	if m.euid != 0 {
		m.us, m.uc = subIDStart("/etc/subuid", m.euid)
		m.gs, m.gc = subIDStart("/etc/subgid", m.euid)
	}
	return m
}

func (m idUnmapper) uid(h int) int { return unmapID(h, m.euid, m.us, m.uc) }
func (m idUnmapper) gid(h int) int { return unmapID(h, m.egid, m.gs, m.gc) }

func unmapID(h, own, start, count int) int {
	if own == 0 {
		return h
	}
	if h == own {
		return 0
	}
	if start >= 0 && h >= start && h < start+count {
		return h - start + 1
	}
	return h
}
