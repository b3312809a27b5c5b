package image

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-run/strata/tests/harness"
	"golang.org/x/sys/unix"
)

// TestWriteFileAtomic replaces a good images.json on a 64 KiB tmpfs: what
// fits replaces it; what runs out of room mid-write fails, naming the
// file, and leaves the old one whole and no temp file behind.
func TestWriteFileAtomic(t *testing.T) {
	if os.Geteuid() != 0 {
		harness.Skip(t, "root, to mount a small tmpfs")
	}
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=64k"); err != nil {
		harness.Skip(t, "tmpfs mount: "+err.Error())
	}
	defer unix.Unmount(root, unix.MNT_DETACH)
	good := []byte(`{"images": []}` + "\n")
	cases := []struct {
		name    string
		data    []byte
		wantErr bool
	}{
		{"fits", []byte(`{"images": [{"id": "sha256:1"}]}` + "\n"), false},
		{"disk-full-mid-write", bytes.Repeat([]byte("x"), 256<<10), true},
		{"just-over", bytes.Repeat([]byte("y"), 64<<10), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(root, "images.json")
			if err := os.WriteFile(p, good, 0o600); err != nil {
				t.Fatal(err)
			}
			err := writeFileAtomic(p, c.data)
			got, _ := os.ReadFile(p)
			if c.wantErr {
				if err == nil {
					t.Fatalf("no error writing %d bytes into 64 KiB", len(c.data))
				}
				t.Logf("refused: %v", err)
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not name %s", err, p)
				}
				if !bytes.Equal(got, good) {
					t.Errorf("old file not intact: %d bytes %.40q", len(got), got)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, c.data) {
					t.Errorf("file = %q, want %q", got, c.data)
				}
			}
			if l := tree(t, root); len(l) != 1 || l[0] != "images.json" {
				t.Errorf("left in the dir: %v", l)
			}
		})
	}
}
