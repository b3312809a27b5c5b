package image

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Tag gives the image ref the additional name newName (moved from any
// image that had it).
func (s *Store) Tag(ref, newName string) error {
	n, err := NormalizeName(newName, true)
	if err != nil {
		return err
	}
	return s.updateIndex(func(ix *index) error {
		r, err := ix.find(ref)
		if err != nil {
			return err
		}
		ix.moveName(n, r)
		return nil
	})
}

// RemoveResult says what Remove did.
type RemoveResult struct {
	Untagged []string
	Deleted  string // image ID, when the image itself went
}

// ImageUsers are whoever holds images in use: the runtime's containers.
// The store knows nothing of containers; their owner says which image
// references each one holds, and records an image's ID for it when a
// forced rmi takes the names it used away.
type ImageUsers interface {
	// ImageRefs maps each user's ID to the references it holds: image
	// names or IDs, layer diff IDs or layer directories.
	ImageRefs() (map[string][]string, error)
	// KeepImage adds id to user's references.
	KeepImage(user, id string) error
}

// imageRefs is users' references, none for nil users.
func imageRefs(users ImageUsers) (map[string][]string, error) {
	if users == nil {
		return nil, nil
	}
	return users.ImageRefs()
}

// Remove removes ref: given a name of an image that has other names, only
// that name; otherwise the image. An image one of users uses is refused,
// or with force loses its names but stays until that user is gone.
// Layers stay until Prune.
func (s *Store) Remove(ref string, force bool, holders ImageUsers) (RemoveResult, error) {
	var res RemoveResult
	users, err := imageRefs(holders)
	if err != nil {
		return res, err
	}
	err = s.updateIndex(func(ix *index) error {
		r, err := ix.find(ref)
		if err != nil {
			return err
		}
		byName := ""
		for _, c := range candidateNames(ref) {
			for _, n := range r.Names {
				if n == c && byName == "" {
					byName = n
				}
			}
		}
		if byName != "" && len(r.Names) > 1 {
			ix.untag(r, byName)
			res.Untagged = []string{byName}
			return nil
		}
		for cid, refs := range users {
			for _, u := range refs {
				if ur, err := ix.find(u); err != nil || ur != r {
					continue
				}
				if !force {
					return fmt.Errorf("image %s is used by container %s: remove the container first, or force", ref, ShortID(cid))
				}
				// Forced: as Docker does, only the names go; the image
				// stays, nameless, so its layers outlive prune while
				// the container needs them. The containers that named it
				// get its ID, which no tag can move.
				for cid, refs := range users {
					for _, u := range refs {
						if ur, err := ix.find(u); err == nil && ur == r {
							if err := holders.KeepImage(cid, r.ID); err != nil {
								return err
							}
							break
						}
					}
				}
				res.Untagged = append(res.Untagged, r.Names...)
				r.Names = nil
				return nil
			}
		}
		res.Untagged = append(res.Untagged, r.Names...)
		res.Deleted = r.ID
		kept := ix.Images[:0]
		for _, o := range ix.Images {
			if o != r {
				kept = append(kept, o)
			}
		}
		ix.Images = kept
		return nil
	})
	return res, err
}

func (ix *index) untag(r *Record, name string) {
	kept := r.Names[:0]
	for _, n := range r.Names {
		if n != name {
			kept = append(kept, n)
		}
	}
	r.Names = kept
}

// PruneResult lists what Prune removed.
type PruneResult struct {
	Layers []string // diff IDs
	Blobs  int
	Bytes  int64
}

// Prune removes unpacked layers that no image and none of holders uses,
// blobs no image refers to, and leftovers of interrupted unpacks. It waits
// for pulls and loads in progress to finish.
func (s *Store) Prune(holders ImageUsers) (PruneResult, error) {
	var res PruneResult
	unlock, err := s.lockFile("gc.lock", unix.LOCK_EX)
	if err != nil {
		return res, err
	}
	defer unlock()
	ix, err := s.readIndex()
	if err != nil {
		return res, err
	}
	usedLayers := map[string]bool{}
	usedBlobs := map[string]bool{}
	for _, r := range ix.Images {
		usedBlobs[strings.TrimPrefix(r.ID, "sha256:")] = true
		usedBlobs[strings.TrimPrefix(r.Manifest, "sha256:")] = true
		for _, d := range r.DiffIDs {
			usedLayers[strings.TrimPrefix(d, "sha256:")] = true
		}
	}
	users, err := imageRefs(holders)
	if err != nil {
		return res, err
	}
	layersDir := filepath.Join(s.root, "layers")
	for _, refs := range users {
		for _, u := range refs {
			if r, err := ix.find(u); err == nil {
				for _, d := range r.DiffIDs {
					usedLayers[strings.TrimPrefix(d, "sha256:")] = true
				}
				continue
			}
			if rel, err := filepath.Rel(layersDir, u); err == nil && filepath.IsAbs(u) && !strings.HasPrefix(rel, "..") {
				usedLayers[strings.SplitN(rel, "/", 2)[0]] = true
				continue
			}
			usedLayers[strings.TrimPrefix(u, "sha256:")] = true
		}
	}
	entries, err := os.ReadDir(layersDir)
	if err != nil {
		return res, fmt.Errorf("list %s: %w", layersDir, err)
	}
	for _, e := range entries {
		if usedLayers[e.Name()] {
			continue
		}
		p := filepath.Join(layersDir, e.Name())
		// Make it look incomplete first, so a crash midway leaves no
		// half-deleted layer that passes for a whole one.
		doomed := filepath.Join(s.root, "tmp", "prune-"+e.Name())
		if err := os.Rename(p, doomed); err != nil {
			return res, fmt.Errorf("prune %s: %w", p, err)
		}
		res.Bytes += dirSize(doomed)
		if err := os.RemoveAll(doomed); err != nil {
			return res, fmt.Errorf("prune %s: %w", doomed, err)
		}
		res.Layers = append(res.Layers, "sha256:"+e.Name())
	}
	blobDir := filepath.Join(s.root, "blobs", "sha256")
	blobs, err := os.ReadDir(blobDir)
	if err != nil {
		return res, fmt.Errorf("list %s: %w", blobDir, err)
	}
	for _, b := range blobs {
		if !usedBlobs[b.Name()] {
			if err := os.Remove(filepath.Join(blobDir, b.Name())); err != nil {
				return res, fmt.Errorf("prune: %w", err)
			}
			res.Blobs++
		}
	}
	// With gc.lock held exclusively no unpack is running: all of tmp is debris.
	tmp := filepath.Join(s.root, "tmp")
	leftovers, _ := os.ReadDir(tmp)
	for _, l := range leftovers {
		os.RemoveAll(filepath.Join(tmp, l.Name()))
	}
	return res, nil
}
