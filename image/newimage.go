package image

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// DefaultEnv is the PATH images made here get (as Docker's images do).
const DefaultEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Import makes a one-layer image named name from a root filesystem: a
// directory, or a tar (plain, gzip or zstd). Owners of a directory's files
// are recorded through o's id ranges (the runtime's maps make the caller's
// files root's, as they look inside a rootless container).
func (s *Store) Import(src, name string, o LayerOptions) (*Image, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	tarPath := src
	if fi.IsDir() {
		tarPath, err = s.LayerTar(src, o)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", src, err)
		}
		defer os.Remove(tarPath)
	}
	cfg := &v1.ConfigFile{Config: v1.Config{Env: []string{DefaultEnv}, Cmd: []string{"/bin/sh"}}}
	img, err := s.newImage(nil, cfg, tarPath, name, "strata import "+filepath.Base(src))
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	return img, nil
}

// TempLayerFile makes an empty file for a layer tar in the store's tmp dir
// (on the store's filesystem, so adding it is a rename).
func (s *Store) TempLayerFile() (*os.File, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "layer-*.tar")
	if err != nil {
		return nil, fmt.Errorf("layer tar in %s: %w", s.root, err)
	}
	return f, nil
}

// LayerTar writes dir as a layer tar into the store's tmp dir and returns
// its path; the caller removes it.
func (s *Store) LayerTar(dir string, o LayerOptions) (string, error) {
	f, err := s.TempLayerFile()
	if err != nil {
		return "", err
	}
	err = WriteLayerTar(f, dir, o)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// newImage adds the layer tarPath on top of base (nil: from scratch) as a
// new image named name. cfg supplies the runtime config for images from
// scratch; with a base, the base's config is kept.
func (s *Store) newImage(base *Image, cfg *v1.ConfigFile, tarPath, name, createdBy string) (*Image, error) {
	var names []string
	if name != "" {
		n, err := NormalizeName(name, true)
		if err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	unlock, err := s.lockFile("gc.lock", unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	info, err := s.addLayer(f, "")
	f.Close()
	if err != nil {
		return nil, err
	}

	now := time.Now().UTC().Truncate(time.Second)
	m := &v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1}
	var diffIDs []string
	if base != nil {
		cfg = base.ConfigFile().DeepCopy()
		raw, err := os.ReadFile(s.blobPath(base.Manifest))
		if err != nil {
			return nil, fmt.Errorf("base image manifest: %w", err)
		}
		bm, err := v1.ParseManifest(bytesReader(raw))
		if err != nil {
			return nil, fmt.Errorf("base image manifest: %w", err)
		}
		for _, l := range bm.Layers {
			l.MediaType = ociLayerType(l.MediaType)
			m.Layers = append(m.Layers, l)
		}
		diffIDs = append(diffIDs, base.DiffIDs...)
	}
	if cfg.OS == "" {
		cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	}
	cfg.Created = v1.Time{Time: now}
	cfg.RootFS.Type = "layers"
	h, err := v1.NewHash(info.DiffID)
	if err != nil {
		return nil, err
	}
	cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, h)
	cfg.History = append(cfg.History, v1.History{Created: v1.Time{Time: now}, CreatedBy: createdBy})
	diffIDs = append(diffIDs, info.DiffID)
	m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.OCIUncompressedLayer, Size: info.TarSize, Digest: h})

	rawCfg, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgDigest, err := s.putBlob(rawCfg)
	if err != nil {
		return nil, err
	}
	ch, _ := v1.NewHash(cfgDigest)
	m.Config = v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(rawCfg)), Digest: ch}
	rawManifest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	mDigest, err := s.putBlob(rawManifest)
	if err != nil {
		return nil, err
	}
	rec := Record{ID: cfgDigest, Manifest: mDigest, Names: names, DiffIDs: diffIDs, Created: now}
	for _, d := range diffIDs {
		rec.Size += dirSize(s.LayerDir(d))
	}
	if err := s.register(rec); err != nil {
		return nil, err
	}
	return s.Resolve(cfgDigest)
}

// ociLayerType maps Docker layer media types to their OCI twins, so a
// commit on a Docker image yields a consistent OCI manifest.
func ociLayerType(t types.MediaType) types.MediaType {
	switch t {
	case types.DockerLayer:
		return types.OCILayer
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer
	case types.DockerForeignLayer:
		return types.OCIRestrictedLayer
	}
	return t
}
