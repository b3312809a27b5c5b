package image

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

// CommitLayer adds the layer tar at tarPath on top of base as a new image
// named name (the runtime's commit makes the tar from a container's upper).
func (s *Store) CommitLayer(base *Image, tarPath, name string) (*Image, error) {
	img, err := s.newImage(base, nil, tarPath, name, "strata commit")
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", name, err)
	}
	return img, nil
}

// Change is one line of `strata diff`.
type Change struct {
	Kind byte   // 'A' added, 'C' changed, 'D' deleted
	Path string // absolute, inside the container
}

func (c Change) String() string { return string(c.Kind) + " " + c.Path }

// DiffDir lists what the overlayfs-format upper dir changes relative to
// base, sorted by path, leaving out the layer-relative paths in skip. The
// upper is walked through fds (walkTree) and the lowers are looked up
// beneath their roots, so neither a running container nor a layer can
// point diff at a host file.
func DiffDir(upper string, base *Image, skip map[string]bool) ([]Change, error) {
	lowers, err := openLowers(base.Layers())
	if err != nil {
		return nil, fmt.Errorf("diff %s: %w", upper, err)
	}
	defer lowers.close()
	var out []Change
	err = walkTree(upper, func(e *walkEntry) (bool, error) {
		rel := e.rel
		if skip[rel] {
			return false, nil
		}
		dir, name := path.Split(rel)
		if name == ovl.OpaqueMarker {
			return false, nil
		}
		if target, ok := ovl.WhiteoutTarget(name); ok {
			rel = dir + target
			if !skip[rel] {
				out = append(out, Change{'D', "/" + rel})
			}
			return false, nil
		}
		if ovl.IsWhiteoutDevice(&e.st) {
			out = append(out, Change{'D', "/" + rel})
			return false, nil
		}
		kind := byte('A')
		if lowers.has(rel) {
			kind = 'C'
		}
		out = append(out, Change{kind, "/" + rel})
		// A dir private to a subordinate id (openErr) is listed, its
		// contents are not: commit reads them from a user namespace.
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("diff %s: %w", upper, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// layerFds are the roots of a stack of lowers, top first, held open.
type layerFds []int

func openLowers(dirs []string) (layerFds, error) {
	var fds layerFds
	for _, d := range dirs {
		fd, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			fds.close()
			return nil, fmt.Errorf("open layer %s: %w", d, err)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

func (l layerFds) close() {
	for _, fd := range l {
		unix.Close(fd)
	}
}

// has reports whether rel is visible in the union of the lowers (top
// first), honouring OCI whiteouts and opaque markers. A layer's contents
// are its author's: a symlink on the way (ELOOP) or a non-dir (ENOTDIR)
// is a non-directory that hides whatever lies below it, as in overlayfs,
// and is never followed.
func (l layerFds) has(rel string) bool {
	parts := strings.Split(rel, "/")
	var st unix.Stat_t
	for _, root := range l {
		// A whiteout or opaque marker on any ancestor in this layer hides
		// everything below it in the layers beneath.
		hidden := false
		for i := range parts {
			prefix := path.Join(parts[:i]...)
			if lstatBeneath(root, path.Join(prefix, ovl.WhiteoutName(parts[i])), &st) == nil {
				return false
			}
			if i < len(parts)-1 {
				if lstatBeneath(root, path.Join(prefix, parts[i], ovl.OpaqueMarker), &st) == nil {
					hidden = true
				}
			}
		}
		err := lstatBeneath(root, rel, &st)
		switch {
		case err == nil:
			return true
		case err != unix.ENOENT:
			return false
		case hidden:
			return false
		}
	}
	return false
}
