package image

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// Loaded is one image Load added, with the names this load gave it.
type Loaded struct {
	*Image
	Loaded []string
}

// Load adds the images of an OCI image layout (a directory, or a tar of
// one) or a docker-archive (`docker save`, `podman save`) to the store and
// returns them. Images get the names the archive gives them; an OCI layout
// entry that carries only a tag is named localhost/<file name>:<tag>.
func (s *Store) Load(src string, progress func(ProgressEvent)) ([]Loaded, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", src, err)
	}
	// Held shared throughout, so prune leaves the extracted layout alone.
	unlock, err := s.lockFile("gc.lock", unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	repo := localRepo(src)
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(src, "oci-layout")); err != nil {
			return nil, fmt.Errorf("load %s: not an OCI image layout (no oci-layout file)", src)
		}
		return s.loadLayout(src, repo, progress)
	}
	kind, err := archiveKind(src)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", src, err)
	}
	switch kind {
	case "oci":
		tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "load-")
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", src, err)
		}
		defer os.RemoveAll(tmp)
		if err := extractPlain(src, tmp); err != nil {
			return nil, fmt.Errorf("load %s: %w", src, err)
		}
		return s.loadLayout(tmp, repo, progress)
	case "docker":
		return s.loadDockerArchive(src, progress)
	}
	return nil, fmt.Errorf("load %s: neither an OCI layout nor a docker-archive (no oci-layout or manifest.json inside)", src)
}

// localRepo makes "localhost/<name>" from a file name, for images that
// come without a repository.
func localRepo(src string) string {
	b := strings.ToLower(filepath.Base(filepath.Clean(src)))
	for _, ext := range []string{".tar", ".oci", ".tgz"} {
		b = strings.TrimSuffix(b, ext)
	}
	b = regexp.MustCompile(`[^a-z0-9._-]+`).ReplaceAllString(b, "-")
	b = strings.Trim(b, "._-")
	if b == "" {
		b = "image"
	}
	return "localhost/" + b
}

func archiveKind(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("read tar: %w", err)
		}
		switch path.Clean(strings.TrimPrefix(hdr.Name, "./")) {
		case "oci-layout":
			return "oci", nil
		case "manifest.json":
			return "docker", nil
		}
	}
}

// extractPlain unpacks an archive of plain files and dirs (an OCI layout)
// into dir, refusing anything else and any path that leaves dir.
func extractPlain(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		rel, err := cleanRel(hdr.Name)
		if err != nil {
			return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
		dst := filepath.Join(dir, rel)
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o700)
		case tar.TypeReg: // tar.Reader reports the old TypeRegA as TypeReg
			if err = os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				break
			}
			var out *os.File
			// O_EXCL and no symlinks ever created: nothing can redirect the write.
			out, err = os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err == nil {
				_, err = io.Copy(out, tr)
				if cerr := out.Close(); err == nil {
					err = cerr
				}
			}
		default:
			err = fmt.Errorf("unexpected entry type %q in an OCI layout", string(hdr.Typeflag))
		}
		if err != nil {
			return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
	}
}

func (s *Store) loadLayout(dir, repo string, progress func(ProgressEvent)) ([]Loaded, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	var out []Loaded
	for _, desc := range im.Manifests {
		img, err := pickImage(idx, desc)
		if err != nil {
			return nil, fmt.Errorf("load %s: manifest %s: %w", dir, desc.Digest, err)
		}
		if img == nil {
			continue
		}
		var names []string
		if n := layoutName(desc.Annotations, repo); n != "" {
			names = append(names, n)
		}
		id, err := s.addImage(img, false, names, progress)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", dir, err)
		}
		r, err := s.Resolve(id)
		if err != nil {
			return nil, err
		}
		out = append(out, Loaded{Image: r, Loaded: names})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load %s: no image for %s in the layout", dir, platformString(HostPlatform()))
	}
	return out, nil
}

// pickImage returns desc's image, or for a nested index the image for the
// host platform (nil when there is none).
func pickImage(idx v1.ImageIndex, desc v1.Descriptor) (v1.Image, error) {
	if desc.MediaType.IsImage() {
		return idx.Image(desc.Digest)
	}
	if !desc.MediaType.IsIndex() {
		return nil, nil
	}
	child, err := idx.ImageIndex(desc.Digest)
	if err != nil {
		return nil, err
	}
	cm, err := child.IndexManifest()
	if err != nil {
		return nil, err
	}
	host := HostPlatform()
	for _, d := range cm.Manifests {
		if d.MediaType.IsImage() && (d.Platform == nil || d.Platform.Satisfies(host)) {
			return child.Image(d.Digest)
		}
	}
	return nil, nil
}

func platformString(p v1.Platform) string { return p.String() }

// layoutName reads the image name from an index entry's annotations: the
// containerd full name, or org.opencontainers.image.ref.name, which is
// either a full reference or just a tag.
func layoutName(ann map[string]string, repo string) string {
	if n := ann["io.containerd.image.name"]; n != "" {
		if norm, err := NormalizeName(n, true); err == nil {
			return norm
		}
	}
	ref := ann["org.opencontainers.image.ref.name"]
	if ref == "" {
		return ""
	}
	if strings.ContainsAny(ref, "/:@") {
		if norm, err := NormalizeName(ref, true); err == nil {
			return norm
		}
	}
	if _, err := name.NewTag(repo + ":" + ref); err == nil {
		return repo + ":" + ref
	}
	return ""
}

func (s *Store) loadDockerArchive(file string, progress func(ProgressEvent)) ([]Loaded, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(file) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", file, err)
	}
	var out []Loaded
	for i, d := range m {
		var names []string
		var tag *name.Tag
		for _, t := range d.RepoTags {
			n, err := NormalizeName(t, true)
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", file, err)
			}
			names = append(names, n)
			if tag == nil {
				tg, err := name.NewTag(t)
				if err != nil {
					return nil, fmt.Errorf("load %s: tag %q: %w", file, t, err)
				}
				tag = &tg
			}
		}
		if tag == nil && len(m) > 1 {
			return nil, fmt.Errorf("load %s: image %d has no tag; only single-image archives may be untagged", file, i)
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", file, err)
		}
		id, err := s.addImage(img, false, names, progress)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", file, err)
		}
		r, err := s.Resolve(id)
		if err != nil {
			return nil, err
		}
		out = append(out, Loaded{Image: r, Loaded: names})
	}
	return out, nil
}
