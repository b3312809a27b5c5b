package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// DefaultMaxLayerSize bounds the uncompressed size of one layer, so a
// hostile or broken layer cannot fill the disk. It counts apparent sizes:
// a sparse file's holes count in full though they take no disk. The CLI
// takes another bound from $STRATA_MAX_LAYER_SIZE.
const DefaultMaxLayerSize = 64 << 30

// Store is an image store rooted at one directory. It is safe for use by
// several goroutines and several strata processes at once.
type Store struct {
	root string
	// MaxLayerSize bounds the uncompressed bytes of one layer.
	MaxLayerSize int64
}

// Record is one image in the store's index.
type Record struct {
	ID       string    `json:"id"`       // config digest, "sha256:..."
	Manifest string    `json:"manifest"` // manifest digest
	Names    []string  `json:"names,omitempty"`
	DiffIDs  []string  `json:"diff_ids"` // bottom first, as in the OCI config
	Size     int64     `json:"size"`     // uncompressed bytes of all layers
	Created  time.Time `json:"created"`  // when it entered this store
}

type index struct {
	Images []*Record `json:"images"`
}

// Image is a resolved image: its layers are unpacked and stay so until it
// is removed and pruned.
type Image struct {
	Record
	store  *Store
	config *v1.ConfigFile
}

// DefaultRoot is $XDG_DATA_HOME/strata, else ~/.local/share/strata.
func DefaultRoot() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "strata"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("image store: no --root, $XDG_DATA_HOME or $HOME: %w", err)
	}
	return filepath.Join(home, ".local", "share", "strata"), nil
}

// Open opens the store at root, creating it when missing.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", root, err)
	}
	for _, d := range []string{abs, filepath.Join(abs, "blobs", "sha256"), filepath.Join(abs, "layers"), filepath.Join(abs, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image store %s: %w", d, err)
		}
	}
	return &Store{root: abs, MaxLayerSize: DefaultMaxLayerSize}, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// LayerDir is where the layer with diff ID diffID is (or would be) unpacked.
func (s *Store) LayerDir(diffID string) string {
	return filepath.Join(s.root, "layers", strings.TrimPrefix(diffID, "sha256:"))
}

func (s *Store) blobPath(digest string) string {
	return filepath.Join(s.root, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// lockFile flocks <root>/name; the returned func releases it.
func (s *Store) lockFile(name string, how int) (func(), error) {
	p := filepath.Join(s.root, name)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}

func (s *Store) readIndex() (*index, error) {
	p := filepath.Join(s.root, "images.json")
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return &index{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	var ix index
	if err := json.Unmarshal(data, &ix); err != nil {
		return nil, fmt.Errorf("parse %s: %w", p, err)
	}
	return &ix, nil
}

// updateIndex runs fn on the index under the exclusive lock and replaces
// images.json atomically when fn succeeds.
func (s *Store) updateIndex(fn func(*index) error) error {
	unlock, err := s.lockFile("images.lock", unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	ix, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := fn(ix); err != nil {
		return err
	}
	data, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.root, "images.json"), data)
}

// writeFileAtomic replaces path with data so that a crash or a full disk
// leaves either the old file or the new one, never a short one: the temp
// file is written and fsynced before the rename, the dir after it, and
// the temp is removed whenever it does not become path.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	// The rename is durable only once the dir is: without this a crash can
	// bring back the old index after strata reported success.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Images lists the images in the store, newest first.
func (s *Store) Images() ([]Record, error) {
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(ix.Images))
	for _, r := range ix.Images {
		out = append(out, *r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// find returns the record ref names: an ID, a unique ID prefix (with or
// without "sha256:"), or a name in any of the spellings NormalizeName
// accepts.
func (ix *index) find(ref string) (*Record, error) {
	if ref == "" {
		return nil, fmt.Errorf("image name is empty")
	}
	cands := candidateNames(ref)
	for _, c := range cands {
		for _, r := range ix.Images {
			for _, n := range r.Names {
				if n == c {
					return r, nil
				}
			}
		}
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	if isHex(hex) && len(hex) >= 3 {
		var hit *Record
		for _, r := range ix.Images {
			if strings.HasPrefix(strings.TrimPrefix(r.ID, "sha256:"), hex) {
				if hit != nil && hit != r {
					return nil, fmt.Errorf("image %s: ambiguous ID prefix", ref)
				}
				hit = r
			}
		}
		if hit != nil {
			return hit, nil
		}
	}
	return nil, fmt.Errorf("image %s: %w", ref, ErrNotFound)
}

// ErrNotFound is wrapped by errors for images that are not in the store.
var ErrNotFound = errors.New("no such image in the store")

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// Resolve finds an image by name or ID and checks that its layers are
// unpacked.
func (s *Store) Resolve(ref string) (*Image, error) {
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	r, err := ix.find(ref)
	if err != nil {
		return nil, err
	}
	cfg, err := s.readConfig(r.ID)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	img := &Image{Record: *r, store: s, config: cfg}
	for _, d := range img.Layers() {
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("image %s: layer %s missing (pull or load it again): %w", ref, d, err)
		}
	}
	return img, nil
}

func (s *Store) readConfig(id string) (*v1.ConfigFile, error) {
	f, err := os.Open(s.blobPath(id))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", id, err)
	}
	defer f.Close()
	cfg, err := v1.ParseConfigFile(f)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", id, err)
	}
	return cfg, nil
}

// Layers returns the unpacked layer directories, top (newest) first, ready
// for unionfs.Options.Lowers.
func (img *Image) Layers() []string {
	out := make([]string, len(img.DiffIDs))
	for i, d := range img.DiffIDs {
		out[len(out)-1-i] = img.store.LayerDir(d)
	}
	return out
}

// Config returns the runtime part of the image config: Env, WorkingDir,
// User, Entrypoint, Cmd, ...
func (img *Image) Config() v1.Config { return img.config.Config }

// ConfigFile returns the whole OCI image config.
func (img *Image) ConfigFile() *v1.ConfigFile { return img.config }

// Name is the image's first name, or its short ID when it has none.
func (img *Image) Name() string {
	if len(img.Names) > 0 {
		return img.Names[0]
	}
	return ShortID(img.ID)
}

// ShortID is the first 12 hex digits of an ID, as `strata images` shows it.
func ShortID(id string) string {
	h := strings.TrimPrefix(id, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}
