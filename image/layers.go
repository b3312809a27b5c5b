package image

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// decompress sniffs r's first bytes and returns a reader of the plain tar:
// gzip, zstd and uncompressed layers are accepted whatever the media type
// claims, as registries and tools mislabel them often enough.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// limitReader fails once more than n bytes were read: a decompression bomb
// gets an error, not a full disk.
type limitReader struct {
	r     io.Reader
	n     int64
	limit int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.limit {
		return n, fmt.Errorf("uncompressed layer exceeds the limit of %d bytes", l.limit)
	}
	return n, err
}

// AddLayer unpacks the layer r (gzip, zstd or plain tar) into the store and
// returns its diff ID and uncompressed size. When want is set the diff ID
// must match it. An existing layer with the same diff ID is kept and the
// new copy discarded, so concurrent adds of one layer are harmless.
func (s *Store) AddLayer(r io.Reader, want string) (diffID string, size int64, err error) {
	unlock, err := s.lockFile("gc.lock", unix.LOCK_SH)
	if err != nil {
		return "", 0, err
	}
	defer unlock()
	l, err := s.addLayer(r, want)
	return l.DiffID, l.Size, err
}

// layerInfo describes a layer just added.
type layerInfo struct {
	DiffID  string
	Size    int64 // bytes of file contents
	TarSize int64 // bytes of the uncompressed tar stream
}

func (s *Store) addLayer(r io.Reader, want string) (layerInfo, error) {
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "layer-")
	if err != nil {
		return layerInfo{}, fmt.Errorf("unpack layer: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(tmp)
		}
	}()
	plain, err := decompress(r)
	if err != nil {
		return layerInfo{}, fmt.Errorf("unpack layer: %w", err)
	}
	defer plain.Close()
	h := sha256.New()
	lr := &limitReader{r: io.TeeReader(plain, h), limit: s.MaxLayerSize + 1<<20}
	size, err := Unpack(tmp, lr, s.MaxLayerSize)
	if err == nil {
		// The diff ID covers the whole stream, including the tar's padding.
		_, err = io.Copy(io.Discard, lr)
	}
	if err != nil {
		return layerInfo{}, fmt.Errorf("unpack layer: %w", err)
	}
	diffID := digestOf(h)
	if want != "" && want != diffID {
		return layerInfo{}, fmt.Errorf("unpack layer: content has diff ID %s, the image config says %s", diffID, want)
	}
	info := layerInfo{DiffID: diffID, Size: size, TarSize: lr.n}
	dst := s.LayerDir(diffID)
	if err := os.Rename(tmp, dst); err != nil {
		if _, serr := os.Stat(dst); serr == nil {
			return info, nil // someone else unpacked it first
		}
		return layerInfo{}, fmt.Errorf("unpack layer %s: %w", dst, err)
	}
	keep = true
	return info, nil
}

// HasLayer reports whether the layer with this diff ID is unpacked.
func (s *Store) HasLayer(diffID string) bool {
	_, err := os.Stat(s.LayerDir(diffID))
	return err == nil
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

func digestBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// putBlob stores b by its digest (manifests and configs).
func (s *Store) putBlob(b []byte) (string, error) {
	d := digestBytes(b)
	p := s.blobPath(d)
	if _, err := os.Stat(p); err == nil {
		return d, nil
	}
	return d, writeFileAtomic(p, b)
}

func (s *Store) hasBlob(digest string) bool {
	_, err := os.Stat(s.blobPath(digest))
	return err == nil
}

// register records an image whose config, manifest and layers are already
// in the store, and moves names from any other image to it.
func (s *Store) register(rec Record) error {
	for _, d := range rec.DiffIDs {
		if !s.HasLayer(d) {
			return fmt.Errorf("register image %s: layer %s is not unpacked", ShortID(rec.ID), d)
		}
	}
	return s.updateIndex(func(ix *index) error {
		names := rec.Names
		var cur *Record
		for _, r := range ix.Images {
			if r.ID == rec.ID {
				cur = r
			}
		}
		if cur == nil {
			fresh := rec
			fresh.Names = nil
			cur = &fresh
			ix.Images = append(ix.Images, cur)
		}
		cur.Manifest, cur.DiffIDs, cur.Size = rec.Manifest, rec.DiffIDs, rec.Size
		for _, n := range names {
			ix.moveName(n, cur)
		}
		return nil
	})
}

// moveName gives name to r, taking it from whichever image had it.
func (ix *index) moveName(name string, r *Record) {
	for _, o := range ix.Images {
		kept := o.Names[:0]
		for _, n := range o.Names {
			if n != name {
				kept = append(kept, n)
			}
		}
		o.Names = kept
	}
	r.Names = append(r.Names, name)
}
