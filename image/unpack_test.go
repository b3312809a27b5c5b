package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/strata-run/strata/tests/harness"
	"github.com/strata-run/strata/unionfs/ovl"
	"golang.org/x/sys/unix"
)

type entry struct {
	hdr  tar.Header
	body string
}

func file(name, body string, mode int64, uid, gid int) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Uid: uid, Gid: gid, Size: int64(len(body))}, body}
}
func dir(name string, mode int64, uid, gid int) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode, Uid: uid, Gid: gid}}
}
func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
}
func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target}}
}

func mkTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tree lists every path below dir (relative), to prove nothing else appeared.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func override(t *testing.T, p string) string {
	t.Helper()
	buf := make([]byte, 128)
	n, err := unix.Lgetxattr(p, ovl.OverrideXattr, buf)
	if err != nil {
		t.Fatalf("%s: no %s: %v", p, ovl.OverrideXattr, err)
	}
	return string(buf[:n])
}

func TestUnpackOwnershipAndSpecialFiles(t *testing.T) {
	data := mkTar(t,
		dir("usr/", 0o755, 0, 0),
		dir("usr/bin/", 0o555, 0, 0),
		file("usr/bin/su", "suid", 0o4755, 0, 0),
		file("usr/bin/wall", "sgid", 0o2755, 0, 5),
		file("home/user/notes", "mine", 0o640, 1000, 1000),
		entry{hdr: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
		entry{hdr: tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Gid: 6, Devmajor: 8}},
		entry{hdr: tar.Header{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o644}},
		symlink("usr/bin/sh", "/bin/busybox"),
		hardlink("usr/bin/su2", "usr/bin/su"),
		dir("tmp/", 0o1777, 0, 0),
		file("etc/.wh.gone", "", 0, 0, 0),
		file("var/.wh..wh..opq", "", 0, 0, 0),
		file("secret", "x", 0o000, 0, 0),
	)
	d := t.TempDir()
	if _, err := Unpack(d, bytes.NewReader(data), 1<<20); err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		".":               "0:0:0755:dir",
		"usr/bin":         "0:0:0555:dir",
		"usr/bin/su":      "0:0:4755:file",
		"usr/bin/wall":    "0:5:2755:file",
		"home":            "0:0:0755:dir", // implicit parent
		"home/user/notes": "1000:1000:0640:file",
		"dev/null":        "0:0:0666:char-1-3",
		"dev/sda":         "0:6:0660:block-8-0",
		"tmp":             "0:0:1777:dir",
		"secret":          "0:0:0000:file",
	}
	for p, want := range checks {
		if got := override(t, filepath.Join(d, p)); got != want {
			t.Errorf("%s: override %q, want %q", p, got, want)
		}
	}
	var st unix.Stat_t
	must := func(p string) *unix.Stat_t {
		if err := unix.Lstat(filepath.Join(d, p), &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	if m := must("usr/bin/su").Mode; m&0o7000 != 0 || m&0o777 != 0o755 {
		t.Errorf("usr/bin/su on disk: mode %o, want 0755 without set-id bits", m)
	}
	if m := must("usr/bin").Mode; m&0o777 != 0o755 {
		t.Errorf("usr/bin on disk: mode %o, want owner rwx added (0755)", m)
	}
	if m := must("secret").Mode; m&0o777 != 0o600 {
		t.Errorf("secret on disk: mode %o, want 0600 so the store owner can read it", m)
	}
	if m := must("dev/null"); m.Mode&unix.S_IFMT != unix.S_IFREG || m.Size != 0 {
		t.Errorf("dev/null on disk: want an empty regular file, got mode %o", m.Mode)
	}
	if m := must("run/fifo"); m.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("run/fifo: mode %o, want a fifo", m.Mode)
	}
	suIno := must("usr/bin/su").Ino
	if must("usr/bin/su2").Ino != suIno {
		t.Errorf("usr/bin/su2 is not a hard link of usr/bin/su")
	}
	if l, _ := os.Readlink(filepath.Join(d, "usr/bin/sh")); l != "/bin/busybox" {
		t.Errorf("usr/bin/sh -> %q", l)
	}
	for _, wh := range []string{"etc/.wh.gone", "var/.wh..wh..opq"} {
		if must(wh).Mode&unix.S_IFMT != unix.S_IFREG {
			t.Errorf("%s: whiteout marker not kept as a file", wh)
		}
	}
}

func TestUnpackCompression(t *testing.T) {
	plain := mkTar(t, file("a", "hello", 0o644, 0, 0))
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(plain)
	gw.Close()
	zw, _ := zstd.NewWriter(&zs)
	zw.Write(plain)
	zw.Close()
	var ids []string
	for name, blob := range map[string][]byte{"plain": plain, "gzip": gz.Bytes(), "zstd": zs.Bytes()} {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		id, _, err := s.AddLayer(bytes.NewReader(blob), "")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b, err := os.ReadFile(filepath.Join(s.LayerDir(id), "a")); err != nil || string(b) != "hello" {
			t.Errorf("%s: a = %q, %v", name, b, err)
		}
		ids = append(ids, id)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("diff IDs differ by compression: %v", ids)
	}
}

// TestHostileLayers feeds layers that try to escape; each must fail with an
// error naming the entry, leave nothing outside the layer, and leave no
// layer (complete-looking or partial) in the store.
func TestHostileLayers(t *testing.T) {
	huge := func() []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40})
		return buf.Bytes() // no body: the size alone must be refused
	}
	cases := []struct {
		name, entry string
		tar         []byte
	}{
		{"dotdot", "../escaped", mkTar(t, file("../escaped", "x", 0o644, 0, 0))},
		{"dotdot-inner", "a/../../escaped", mkTar(t, dir("a/", 0o755, 0, 0), file("a/../../escaped", "x", 0o644, 0, 0))},
		{"symlink-out", "link/escaped", mkTar(t, symlink("link", "OUTSIDE"), file("link/escaped", "x", 0o644, 0, 0))},
		{"symlink-dotdot", "up/escaped", mkTar(t, symlink("up", ".."), file("up/escaped", "x", 0o644, 0, 0))},
		{"symlink-dir-entry", "link/sub/", mkTar(t, symlink("link", "OUTSIDE"), dir("link/sub/", 0o755, 0, 0))},
		{"symlink-hardlink", "link/h", mkTar(t, file("f", "x", 0o644, 0, 0), symlink("link", "OUTSIDE"), hardlink("link/h", "f"))},
		{"hardlink-out", "h", mkTar(t, hardlink("h", "../victim"))},
		{"hardlink-abs", "h", mkTar(t, hardlink("h", "/etc/passwd"))},
		{"hardlink-via-symlink", "h", mkTar(t, symlink("link", "OUTSIDE"), hardlink("h", "link/victim"))},
		{"huge", "big", huge()},
		// 1 TiB declared in a few blocks: holes count against the limit.
		{"huge-sparse", "sparse", sparseTar(t, "1.0", "sparse", 1<<40, []fragment{{1 << 39, "x"}})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sandbox := t.TempDir()
			outside := filepath.Join(sandbox, "OUTSIDE")
			os.Mkdir(outside, 0o755)
			os.WriteFile(filepath.Join(outside, "victim"), []byte("keep"), 0o644)
			os.WriteFile(filepath.Join(sandbox, "victim"), []byte("keep"), 0o644)
			root := filepath.Join(sandbox, "store")
			s, err := Open(root)
			if err != nil {
				t.Fatal(err)
			}
			s.MaxLayerSize = 1 << 20
			data := c.tar
			if !strings.HasPrefix(c.name, "huge") {
				data = rewriteLinks(t, c.tar, outside)
			}
			_, _, err = s.AddLayer(bytes.NewReader(data), "")
			if err == nil {
				t.Fatalf("hostile layer accepted")
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), c.entry) {
				t.Errorf("error %q does not name entry %q", err, c.entry)
			}
			before := []string{"OUTSIDE", "OUTSIDE/victim", "store", "victim"}
			got := tree(t, sandbox)
			var outsideStore []string
			for _, p := range got {
				if p != "store" && !strings.HasPrefix(p, "store/") {
					outsideStore = append(outsideStore, p)
				}
			}
			if strings.Join(outsideStore, ",") != strings.Join(before[:2], ",")+",victim" {
				t.Errorf("something appeared outside the store: %v", outsideStore)
			}
			for _, v := range []string{filepath.Join(outside, "victim"), filepath.Join(sandbox, "victim")} {
				if b, _ := os.ReadFile(v); string(b) != "keep" {
					t.Errorf("%s changed: %q", v, b)
				}
			}
			if l := tree(t, filepath.Join(root, "layers")); len(l) != 0 {
				t.Errorf("layers left behind: %v", l)
			}
			if l := tree(t, filepath.Join(root, "tmp")); len(l) != 0 {
				t.Errorf("partial unpack left behind: %v", l)
			}
		})
	}
}

// rewriteLinks points symlinks with the placeholder target OUTSIDE at the
// sandbox's real outside dir, by absolute path.
func rewriteLinks(t *testing.T, data []byte, outside string) []byte {
	tr := tar.NewReader(bytes.NewReader(data))
	var entries []entry
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Linkname == "OUTSIDE" && h.Typeflag == tar.TypeSymlink {
			h.Linkname = outside
		}
		var body bytes.Buffer
		body.ReadFrom(tr)
		entries = append(entries, entry{*h, body.String()})
	}
	return mkTar(t, entries...)
}

// TestUnpackDiskFull unpacks onto a 1 MiB tmpfs: the error names the entry
// and the partial layer is gone.
func TestUnpackDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		harness.Skip(t, "root, to mount a small tmpfs")
	}
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=1m"); err != nil {
		harness.Skip(t, "tmpfs mount: "+err.Error())
	}
	defer unix.Unmount(root, unix.MNT_DETACH)
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 2<<20)
	for _, data := range [][]byte{
		mkTar(t, file("a", "small", 0o644, 0, 0), file("big", big, 0o644, 0, 0)),
		// The second file no longer fits once the first is written.
		mkTar(t, file("f1", big[:600<<10], 0o644, 0, 0), file("f2", big[:600<<10], 0o644, 0, 0)),
	} {
		_, _, err = s.AddLayer(bytes.NewReader(data), "")
		t.Logf("refused: %v", err)
		if err == nil || !(strings.Contains(err.Error(), `"big"`) || strings.Contains(err.Error(), `"f2"`)) {
			t.Fatalf("want an error naming the entry, got %v", err)
		}
		if l := tree(t, filepath.Join(root, "layers")); len(l) != 0 {
			t.Errorf("layers left behind: %v", l)
		}
		if l := tree(t, filepath.Join(root, "tmp")); len(l) != 0 {
			t.Errorf("partial unpack left behind: %v", l)
		}
	}
}

// TestUnpackReplacements: later entries replace earlier ones of the same
// name, whatever their types, as tar extraction does.
func TestUnpackReplacements(t *testing.T) {
	data := mkTar(t,
		dir("lib/", 0o755, 0, 0), file("lib/a", "a", 0o644, 0, 0),
		symlink("lib", "usr/lib"), // a dir replaced by a symlink
		file("f", "one", 0o644, 0, 0), file("f", "two", 0o600, 0, 0),
		file("d", "file first", 0o644, 0, 0), dir("d/", 0o755, 0, 0), file("d/x", "x", 0o644, 0, 0),
		file("h", "h", 0o644, 0, 0), hardlink("h2", "h"), file("h2", "own", 0o644, 0, 0),
	)
	d := t.TempDir()
	if _, err := Unpack(d, bytes.NewReader(data), 1<<20); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(d, "lib")); err != nil || l != "usr/lib" {
		t.Errorf("lib: %q %v", l, err)
	}
	if b, _ := os.ReadFile(filepath.Join(d, "f")); string(b) != "two" {
		t.Errorf("f = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(d, "d/x")); string(b) != "x" {
		t.Errorf("d/x = %q", b)
	}
	// Replacing a hard link must not write through to the other name.
	if b, _ := os.ReadFile(filepath.Join(d, "h")); string(b) != "h" {
		t.Errorf("h = %q, changed through its hard link", b)
	}
}
