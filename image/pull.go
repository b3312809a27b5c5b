package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"
)

// ProgressEvent reports one layer's progress during a pull or load.
type ProgressEvent struct {
	Layer   string // compressed digest (pull) or diff ID (load)
	Total   int64  // bytes expected, 0 if unknown
	Current int64  // bytes so far
	Skipped bool   // already in the store; nothing fetched
	Done    bool
}

// PullOptions tune Pull. The zero value pulls over verified HTTPS for the
// host's platform with the default keychain.
type PullOptions struct {
	// Insecure allows plain HTTP and unverified TLS (podman's --tls-verify=false).
	Insecure bool
	// Platform such as "linux/arm64" or "linux/arm/v7"; empty: the host's.
	Platform string
	// Keychain for registry credentials; nil: authn.DefaultKeychain, which
	// reads ~/.docker/config.json, $REGISTRY_AUTH_FILE and
	// $XDG_RUNTIME_DIR/containers/auth.json.
	Keychain authn.Keychain
	// Progress, if set, is called from one goroutine per layer being
	// fetched, so it must be safe for concurrent use.
	Progress func(ProgressEvent)
	// Transport replaces the HTTP transport (tests count requests with it).
	Transport http.RoundTripper
}

// HostPlatform is the platform strata runs on, as an OCI platform.
func HostPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm64" {
		p.Variant = "v8"
	}
	return p
}

// Pull fetches ref from its registry into the store and names it ref.
// Layers the store already has are not fetched; every blob fetched is
// checked against its digest, and layer contents against the config's diff
// IDs.
func (s *Store) Pull(ctx context.Context, ref string, o PullOptions) (*Image, error) {
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	plat := HostPlatform()
	if o.Platform != "" {
		p, err := v1.ParsePlatform(o.Platform)
		if err != nil {
			return nil, fmt.Errorf("pull %s: --platform %s: %w", ref, o.Platform, err)
		}
		plat = *p
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	tr := o.Transport
	if tr == nil {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		if o.Insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		}
		tr = t
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc),
		remote.WithPlatform(plat), remote.WithTransport(tr))
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	stored, err := NormalizeName(r.String(), false)
	if err != nil {
		return nil, err
	}
	id, err := s.addImage(img, true, []string{stored}, o.Progress)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return s.Resolve(id)
}

// addImage copies img into the store: config and manifest blobs, then each
// layer not yet unpacked, then the index record. fromRegistry selects the
// compressed stream (so progress counts bytes on the wire and the blob
// digest is checked); local sources are read uncompressed.
func (s *Store) addImage(img v1.Image, fromRegistry bool, names []string, progress func(ProgressEvent)) (string, error) {
	if progress == nil {
		progress = func(ProgressEvent) {}
	}
	unlock, err := s.lockFile("gc.lock", unix.LOCK_SH)
	if err != nil {
		return "", err
	}
	defer unlock()

	m, err := img.Manifest()
	if err != nil {
		return "", fmt.Errorf("manifest: %w", err)
	}
	cfgDigest := m.Config.Digest.String()
	var rawCfg []byte
	if s.hasBlob(cfgDigest) {
		rawCfg, err = os.ReadFile(s.blobPath(cfgDigest))
	} else {
		rawCfg, err = img.RawConfigFile()
	}
	if err != nil {
		return "", fmt.Errorf("config %s: %w", cfgDigest, err)
	}
	if got := digestBytes(rawCfg); got != cfgDigest {
		return "", fmt.Errorf("config: content has digest %s, the manifest says %s", got, cfgDigest)
	}
	cfg, err := v1.ParseConfigFile(bytesReader(rawCfg))
	if err != nil {
		return "", fmt.Errorf("config %s: %w", cfgDigest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return "", fmt.Errorf("config %s lists %d layers, the manifest %d", cfgDigest, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}

	rec := Record{ID: cfgDigest, Names: names, Created: time.Now().UTC()}
	// Layers download and unpack side by side, a few at a time.
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		sem      = make(chan struct{}, 3)
	)
	for i, desc := range m.Layers {
		want := cfg.RootFS.DiffIDs[i].String()
		rec.DiffIDs = append(rec.DiffIDs, want)
		if s.HasLayer(want) {
			rec.Size += dirSize(s.LayerDir(want))
			progress(ProgressEvent{Layer: desc.Digest.String(), Total: desc.Size, Current: desc.Size, Skipped: true, Done: true})
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			size, err := s.fetchLayer(img, desc, want, fromRegistry, progress)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("layer %s: %w", desc.Digest, err)
			}
			rec.Size += size
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return "", firstErr
	}

	rawManifest, err := img.RawManifest()
	if err != nil {
		return "", fmt.Errorf("manifest: %w", err)
	}
	if _, err := s.putBlob(rawCfg); err != nil {
		return "", err
	}
	if rec.Manifest, err = s.putBlob(rawManifest); err != nil {
		return "", err
	}
	return rec.ID, s.register(rec)
}

func (s *Store) fetchLayer(img v1.Image, desc v1.Descriptor, want string, fromRegistry bool, progress func(ProgressEvent)) (int64, error) {
	layer, err := img.LayerByDigest(desc.Digest)
	if err != nil {
		return 0, err
	}
	var rc io.ReadCloser
	if fromRegistry {
		rc, err = layer.Compressed()
	} else {
		rc, err = layer.Uncompressed()
	}
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	ev := ProgressEvent{Layer: desc.Digest.String(), Total: desc.Size}
	if !fromRegistry {
		ev.Layer, ev.Total = want, 0
	}
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(rc, h), onRead: func(n int64) {
		ev.Current = n
		progress(ev)
	}}
	info, err := s.addLayer(cr, want)
	if err != nil {
		return 0, err
	}
	if fromRegistry {
		// The diff ID already proved the content; this proves the blob.
		if _, err := io.Copy(io.Discard, cr); err != nil {
			return 0, err
		}
		if got := digestOf(h); got != desc.Digest.String() {
			return 0, fmt.Errorf("blob has digest %s, the manifest says %s", got, desc.Digest)
		}
	}
	ev.Done = true
	progress(ev)
	return info.Size, nil
}

type countingReader struct {
	r      io.Reader
	n      int64
	onRead func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 {
		c.onRead(c.n)
	}
	return n, err
}

// dirSize adds up the file sizes below dir (for `strata images`).
func dirSize(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
