package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/strata-run/strata/tests/harness"
	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

// TestCommitHandMadeContainer commits an upper dir written by hand in
// every format a union fs may leave: 0/0 char whiteouts, ".wh." fallback
// files, xattr whiteouts, opaque dirs (trusted. and user.), override_stat
// owners, hard links, and init files that must stay out.
func TestCommitHandMadeContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		harness.Skip(t, "root, to make 0/0 whiteouts and trusted.overlay xattrs")
	}
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(t.TempDir(), "base.tar")
	os.WriteFile(base, mkTarBytes(t,
		dir("etc/", 0o755, 0, 0), file("etc/passwd", "root\n", 0o644, 0, 0), file("etc/group", "g\n", 0o644, 0, 0),
		file("etc/motd", "m\n", 0o644, 0, 0), dir("opq/", 0o755, 0, 0), file("opq/old", "o\n", 0o644, 0, 0),
		dir("uopq/", 0o755, 0, 0), file("uopq/old", "o\n", 0o644, 0, 0), file("xw", "x\n", 0o644, 0, 0),
	), 0o644)
	baseImg, err := s.Import(base, "base", LayerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cdir := filepath.Join(s.Root(), "containers", "abc123")
	up := filepath.Join(cdir, "upper")
	for _, d := range []string{"etc", "opq", "uopq", "new"} {
		os.MkdirAll(filepath.Join(up, d), 0o755)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(unix.Mknod(filepath.Join(up, "etc/group"), unix.S_IFCHR, 0))
	must(os.WriteFile(filepath.Join(up, "etc/.wh.motd"), nil, 0o644))
	must(os.WriteFile(filepath.Join(up, "xw"), nil, 0o644))
	must(unix.Setxattr(filepath.Join(up, "xw"), "trusted.overlay.whiteout", []byte("y"), 0))
	must(unix.Setxattr(filepath.Join(up, "opq"), "trusted.overlay.opaque", []byte("y"), 0))
	must(unix.Setxattr(filepath.Join(up, "uopq"), "user.overlay.opaque", []byte("y"), 0))
	must(os.WriteFile(filepath.Join(up, "opq/new"), []byte("n\n"), 0o644))
	for _, f := range []string{"etc/hostname", "etc/hosts", "etc/resolv.conf"} {
		must(os.WriteFile(filepath.Join(up, f), []byte("leak\n"), 0o644))
	}
	must(os.WriteFile(filepath.Join(up, "new/suid"), []byte("s"), 0o755))
	must(unix.Setxattr(filepath.Join(up, "new/suid"), ovl.OverrideXattr, []byte("0:0:4755:file"), 0))
	must(os.Link(filepath.Join(up, "new/suid"), filepath.Join(up, "new/link")))
	must(os.WriteFile(filepath.Join(up, "new/dev"), nil, 0o600))
	must(unix.Setxattr(filepath.Join(up, "new/dev"), ovl.OverrideXattr, []byte("0:0:0666:char-1-3"), 0))
	must(os.WriteFile(filepath.Join(up, "new/user"), []byte("u"), 0o600))
	must(os.Chown(filepath.Join(up, "new/user"), 1000, 1000))

	// The files the runtime writes per container (rootless.InitFiles).
	initFiles := []string{"etc/hosts", "etc/resolv.conf", "etc/hostname"}
	skip := map[string]bool{}
	for _, f := range initFiles {
		skip[f] = true
	}
	changes, err := DiffDir(up, baseImg, skip)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	want := "A /new,A /new/dev,A /new/link,A /new/suid,A /new/user,C /etc,D /etc/group,D /etc/motd,C /opq,A /opq/new,C /uopq,C /xw"
	sort.Strings(got)
	w := strings.Split(want, ",")
	sort.Strings(w)
	if strings.Join(got, ",") != strings.Join(w, ",") {
		t.Errorf("Diff:\n got %v\nwant %v", got, w)
	}

	tarPath, err := s.LayerTar(up, LayerOptions{Overlay: true, Skip: skip})
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.CommitLayer(baseImg, tarPath, "committed")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers()) != 2 {
		t.Fatalf("committed image has %d layers, want 2", len(img.Layers()))
	}
	// Read the new layer back as a tar, the way the store wrote it.
	var buf bytes.Buffer
	if err := WriteLayerTar(&buf, img.Layers()[0], LayerOptions{}); err != nil {
		t.Fatal(err)
	}
	entries := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		desc := fmt.Sprintf("%c %d:%d %o", h.Typeflag, h.Uid, h.Gid, h.Mode)
		if h.Typeflag == tar.TypeChar {
			desc += fmt.Sprintf(" %d:%d", h.Devmajor, h.Devminor)
		}
		if h.Typeflag == tar.TypeLink {
			desc += " " + h.Linkname
		}
		entries[strings.TrimSuffix(h.Name, "/")] = desc
	}
	expect := map[string]string{
		"etc/.wh.group":     "0 0:0 0",
		"etc/.wh.motd":      "0 0:0 644", // the fallback format passes through
		"xw":                "0 0:0 644", // an xattr "whiteout" is a file, as the mount shows it (unionfs/ovl)
		"opq/.wh..wh..opq":  "0 0:0 0",
		"uopq/.wh..wh..opq": "0 0:0 0",
		"opq/new":           "0 0:0 644",
		"new/link":          "0 0:0 4755", // lexically first: the file
		"new/suid":          "1 0:0 4755 new/link",
		"new/dev":           "3 0:0 666 1:3",
		"new/user":          "0 1000:1000 600",
	}
	for p, d := range expect {
		if entries[p] != d {
			t.Errorf("committed layer entry %s = %q, want %q", p, entries[p], d)
		}
	}
	for _, leak := range initFiles {
		if _, ok := entries[leak]; ok {
			t.Errorf("init file %s committed", leak)
		}
	}
}

func mkTarBytes(t *testing.T, entries ...entry) []byte { return mkTar(t, entries...) }
