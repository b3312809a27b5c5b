package image

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const hostSecret = "BEGIN HOST PRIVATE KEY 5f3a"

// hostVictim makes what a user keeps private on the host: a 0600 file in
// a 0700 dir, beside (not inside) the store.
func hostVictim(t *testing.T, sandbox string) string {
	t.Helper()
	v := filepath.Join(sandbox, "home", ".ssh")
	if err := os.MkdirAll(v, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v, "id_rsa"), []byte(hostSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return v
}

// handContainer makes a container dir in s whose image is a one-layer
// base built from entries; it returns the container dir and its upper.
func handContainer(t *testing.T, s *Store, entries ...entry) (*Image, string) {
	t.Helper()
	base := filepath.Join(t.TempDir(), "base.tar")
	if err := os.WriteFile(base, mkTar(t, append([]entry{dir("etc/", 0o755, 0, 0)}, entries...)...), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := s.Import(base, "base", LayerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	up := filepath.Join(s.Root(), "containers", "c1", "upper")
	if err := os.MkdirAll(up, 0o755); err != nil {
		t.Fatal(err)
	}
	return img, up
}

// layerEntries reads a layer tar: name -> typeflag and link, and whether
// any body holds the secret.
func layerEntries(t *testing.T, data []byte) (map[string]string, bool) {
	t.Helper()
	out := map[string]string{}
	leaked := bytes.Contains(data, []byte(hostSecret))
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, leaked
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = string(h.Typeflag) + " " + h.Linkname
	}
}

// TestCommitSymlinksToHost: an upper holding symlinks to a host secret
// and its dir, absolute and relative, commits and diffs as symlinks; no
// byte of their targets is read. So does a symlink in a lower layer,
// which diff must not look through either.
func TestCommitSymlinksToHost(t *testing.T) {
	cases := []struct {
		name, link string // link: the symlink's path in the upper
		target     func(up, victim string) string
		lower      []entry
		wantDiff   string
	}{
		{name: "abs-file", link: "key",
			target:   func(up, v string) string { return filepath.Join(v, "id_rsa") },
			wantDiff: "A /key"},
		{name: "abs-dir", link: "ssh",
			target:   func(up, v string) string { return v },
			wantDiff: "A /ssh"},
		{name: "rel-file", link: "a/key",
			target: func(up, v string) string {
				r, _ := filepath.Rel(filepath.Join(up, "a"), filepath.Join(v, "id_rsa"))
				return r
			},
			wantDiff: "A /a,A /a/key"},
		{name: "rel-dir", link: "a/b/ssh",
			target:   func(up, v string) string { r, _ := filepath.Rel(filepath.Join(up, "a/b"), v); return r },
			wantDiff: "A /a,A /a/b,A /a/b/ssh"},
		{name: "rel-dir-in-lower-dir", link: "etc/up",
			target:   func(up, v string) string { r, _ := filepath.Rel(filepath.Join(up, "etc"), v); return r },
			wantDiff: "C /etc,A /etc/up"},
		// The lower's lib is a symlink to the victim dir; the upper's
		// lib/id_rsa is then new, whatever the host holds there.
		{name: "lower-symlink", link: "",
			lower:    []entry{symlink("lib", "VICTIM")},
			wantDiff: "C /lib,A /lib/id_rsa"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sandbox := t.TempDir()
			victim := hostVictim(t, sandbox)
			s, err := Open(filepath.Join(sandbox, "store"))
			if err != nil {
				t.Fatal(err)
			}
			var lower []entry
			for _, e := range c.lower {
				if e.hdr.Linkname == "VICTIM" {
					e.hdr.Linkname = victim
				}
				lower = append(lower, e)
			}
			base, up := handContainer(t, s, lower...)
			want := map[string]string{}
			if c.link != "" {
				target := c.target(up, victim)
				os.MkdirAll(filepath.Join(up, filepath.Dir(c.link)), 0o755)
				if err := os.Symlink(target, filepath.Join(up, c.link)); err != nil {
					t.Fatal(err)
				}
				// The link does reach the secret from the host's view.
				if b, err := os.ReadFile(filepath.Join(up, c.link)); err == nil && !bytes.Contains(b, []byte(hostSecret)) {
					t.Fatalf("test setup: %s does not reach the secret", c.link)
				}
				want[c.link] = "2 " + target
			} else {
				os.MkdirAll(filepath.Join(up, "lib"), 0o755)
				os.WriteFile(filepath.Join(up, "lib/id_rsa"), []byte("mine\n"), 0o600)
				want["lib"] = "5 "
				want["lib/id_rsa"] = "0 "
			}

			// The runtime's commit writes the tar this way, from the host
			// or from its user namespace alike.
			var buf bytes.Buffer
			if err := WriteLayerTar(&buf, up, LayerOptions{Overlay: true}); err != nil {
				t.Fatal(err)
			}
			for how, data := range map[string][]byte{"WriteLayerTar": buf.Bytes()} {
				got, leaked := layerEntries(t, data)
				if leaked {
					t.Errorf("%s: the host secret is in the layer", how)
				}
				for p, w := range want {
					if got[p] != w {
						t.Errorf("%s: entry %s = %q, want %q", how, p, got[p], w)
					}
				}
				for p := range got {
					if c.link != "" && strings.HasPrefix(p, c.link+"/") {
						t.Errorf("%s: entry %s below the symlink %s", how, p, c.link)
					}
				}
			}

			changes, err := DiffDir(up, base, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ch := range changes {
				got = append(got, ch.String())
			}
			if strings.Join(got, ",") != c.wantDiff {
				t.Errorf("Diff = %v, want %s", got, c.wantDiff)
			}
		})
	}
}

// TestWalkRace: while a goroutine keeps exchanging a dir of the upper
// with a symlink to the host secret's dir, WriteLayerTar and DiffDir run
// again and again; neither may ever read the secret, nor fail.
func TestWalkRace(t *testing.T) {
	sandbox := t.TempDir()
	victim := hostVictim(t, sandbox)
	s, err := Open(filepath.Join(sandbox, "store"))
	if err != nil {
		t.Fatal(err)
	}
	base, up := handContainer(t, s)
	race := filepath.Join(up, "race")
	os.MkdirAll(filepath.Join(race, "d"), 0o755)
	os.WriteFile(filepath.Join(race, "d", "id_rsa"), []byte("decoy\n"), 0o600)
	if err := os.Symlink(victim, filepath.Join(race, "l")); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var swaps atomic.Int64
	done := make(chan error, 1)
	go func() {
		for !stop.Load() {
			if err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(race, "d"), unix.AT_FDCWD, filepath.Join(race, "l"), unix.RENAME_EXCHANGE); err != nil {
				done <- err
				return
			}
			swaps.Add(1)
		}
		done <- nil
	}()
	defer func() {
		stop.Store(true)
		if err := <-done; err != nil {
			t.Errorf("exchange: %v", err)
		}
	}()
	start := time.Now()
	n, failures := 0, 0
	for ; time.Since(start) < time.Second; n++ {
		// A failed walk is a bug too, but keep going: a leak is worse.
		var buf bytes.Buffer
		if err := WriteLayerTar(&buf, up, LayerOptions{Overlay: true}); err != nil {
			if failures++; failures == 1 {
				t.Errorf("WriteLayerTar %d: %v", n, err)
			}
		}
		if bytes.Contains(buf.Bytes(), []byte(hostSecret)) {
			t.Fatalf("WriteLayerTar %d (after %v): the host secret is in the layer", n, time.Since(start))
		}
		if _, err := DiffDir(up, base, nil); err != nil {
			if failures++; failures == 1 {
				t.Errorf("Diff %d: %v", n, err)
			}
		}
	}
	t.Logf("%d walks against %d exchanges, %d failed", n, swaps.Load(), failures)
}
