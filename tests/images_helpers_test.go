package tests

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/strata-run/strata/tests/harness"
)

// tarEntry is one entry of a test layer.
type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	body     string
	link     string
	major    int64
	minor    int64
}

func regular(name, body string, mode int64) tarEntry {
	return tarEntry{name: name, typ: tar.TypeReg, mode: mode, body: body}
}
func directory(name string, mode int64) tarEntry {
	return tarEntry{name: name, typ: tar.TypeDir, mode: mode}
}

var testMtime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func layerTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, Devmajor: e.major, Devminor: e.minor, ModTime: testMtime, Size: int64(len(e.body))}
		if e.typ == tar.TypeDir {
			h.Name = strings.TrimSuffix(e.name, "/") + "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// busyboxEntries is a minimal busybox root filesystem, root-owned.
func busyboxEntries(t *testing.T) []tarEntry {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		harness.Skip(t, "/bin/busybox (apt-get install busybox-static)")
	}
	es := []tarEntry{
		directory("bin", 0o755), directory("etc", 0o755), directory("tmp", 0o1777),
		directory("root", 0o700), directory("home", 0o755),
		{name: "home/user", typ: tar.TypeDir, mode: 0o755, uid: 1000, gid: 1000},
		regular("bin/busybox", string(bb), 0o755),
		regular("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n", 0o644),
		regular("etc/group", "root:x:0:\nuser:x:1000:\n", 0o644),
	}
	for _, a := range []string{"sh", "cat", "ls", "stat", "echo", "test", "find", "id", "rm", "mkdir", "tail", "sha256sum"} {
		es = append(es, tarEntry{name: "bin/" + a, typ: tar.TypeSymlink, mode: 0o777, link: "busybox"})
	}
	return es
}

// testLayers are the three layers of the multi-layer test image: the top
// ones delete (whiteout), replace and hide (opaque dir) files of lower ones,
// and the last brings root-owned, set-id, device and fifo entries.
func testLayers(t *testing.T) [][]tarEntry {
	base := append(busyboxEntries(t),
		directory("data", 0o755),
		regular("data/keep", "keep\n", 0o644),
		regular("data/gone", "to be deleted\n", 0o644),
		regular("data/replace", "old\n", 0o644),
		directory("data/gonedir", 0o755),
		regular("data/gonedir/inner", "x\n", 0o644),
		directory("opq", 0o755),
		regular("opq/old1", "old1\n", 0o644),
		directory("opq/sub", 0o755),
		regular("opq/sub/old2", "old2\n", 0o644),
	)
	mid := []tarEntry{
		directory("data", 0o755),
		regular("data/.wh.gone", "", 0o644),
		regular("data/.wh.gonedir", "", 0o644),
		regular("data/replace", "new\n", 0o600),
		regular("data/added", "added\n", 0o644),
		directory("opq", 0o750),
		regular("opq/.wh..wh..opq", "", 0o644),
		regular("opq/new", "new in opaque dir\n", 0o644),
	}
	top := []tarEntry{
		// Parents are listed, as real image builders do: a dir in an upper
		// layer shadows the lower one's owner and mode.
		directory("home", 0o755),
		{name: "home/user", typ: tar.TypeDir, mode: 0o755, uid: 1000, gid: 1000},
		directory("usr", 0o755), directory("usr/bin", 0o755),
		regular("usr/bin/suid", "#!/bin/sh\n", 0o4755),
		{name: "usr/bin/sgid", typ: tar.TypeReg, mode: 0o2711, gid: 42, body: "g"},
		{name: "usr/bin/suid-link", typ: tar.TypeLink, link: "usr/bin/suid"},
		{name: "home/user/private", typ: tar.TypeReg, mode: 0o600, uid: 1000, gid: 1000, body: "secret\n"},
		directory("opt", 0o755),
		{name: "opt/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "opt/disk", typ: tar.TypeBlock, mode: 0o660, gid: 6, major: 8, minor: 1},
		{name: "opt/fifo", typ: tar.TypeFifo, mode: 0o644},
		{name: "opt/sticky", typ: tar.TypeDir, mode: 0o1777},
	}
	return [][]tarEntry{base, mid, top}
}

// buildImage makes a v1.Image of the layers (gzip-compressed by
// go-containerregistry) with a shell as its command.
func buildImage(t *testing.T, layers [][]tarEntry, arch string) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range layers {
		data := layerTar(t, l)
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
			tarball.WithMediaType(types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Env = []string{"PATH=/bin:/usr/bin"}
	cf.Config.Cmd = []string{"/bin/sh"}
	cf.Config.WorkingDir = "/data"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// expectedTree applies the layers the way overlayfs shows them and returns
// one line per path, in the format treeListing prints. For an ordinary
// user (owning none of the files) it leaves out what permissions hide:
// entries below dirs others may not search and read, and the contents of
// files others may not read.
func expectedTree(layers [][]tarEntry, ordinary bool) []string {
	type node struct{ e tarEntry }
	fs := map[string]*node{}
	removeBelow := func(p string, self bool) {
		for k := range fs {
			if strings.HasPrefix(k, p+"/") || (self && k == p) {
				delete(fs, k)
			}
		}
	}
	for _, l := range layers {
		// Whiteouts apply to lower layers only, so handle them before adding.
		for _, e := range l {
			dir, base := path.Split(strings.TrimSuffix(e.name, "/"))
			dir = strings.TrimSuffix(dir, "/")
			switch {
			case base == ".wh..wh..opq":
				removeBelow(dir, false)
			case strings.HasPrefix(base, ".wh."):
				removeBelow(path.Join(dir, strings.TrimPrefix(base, ".wh.")), true)
			}
		}
		for _, e := range l {
			base := path.Base(e.name)
			if strings.HasPrefix(base, ".wh.") {
				continue
			}
			p := strings.TrimSuffix(e.name, "/")
			if e.typ == tar.TypeLink {
				target := fs[e.link]
				cp := *target
				fs[p] = &cp
				continue
			}
			fs[p] = &node{e}
		}
	}
	var out []string
	for p, n := range fs {
		hidden := false
		for d := path.Dir(p); ordinary && d != "."; d = path.Dir(d) {
			if fs[d].e.mode&0o005 != 0o005 {
				hidden = true
			}
		}
		if !hidden {
			out = append(out, describe(p, n.e, !ordinary || n.e.mode&0o004 != 0))
		}
	}
	sort.Strings(out)
	return out
}

func describe(p string, e tarEntry, readable bool) string {
	typ, extra := "f", ""
	switch e.typ {
	case tar.TypeDir:
		typ = "d"
	case tar.TypeSymlink:
		typ, extra = "l", e.link
	case tar.TypeChar:
		typ, extra = "c", fmt.Sprintf("%x:%x", e.major, e.minor)
	case tar.TypeBlock:
		typ, extra = "b", fmt.Sprintf("%x:%x", e.major, e.minor)
	case tar.TypeFifo:
		typ = "p"
	default:
		sum := sha256.Sum256([]byte(e.body))
		extra = hex.EncodeToString(sum[:8])
		if !readable {
			extra = "-"
		}
	}
	// Symlinks and fifos cannot carry user xattrs, so an unprivileged
	// unpack cannot record their owner (containers/storage has the same
	// limit); a fifo keeps its permission bits on disk.
	owner := fmt.Sprintf("%d:%d", e.uid, e.gid)
	mode := e.mode & 0o7777
	switch e.typ {
	case tar.TypeSymlink:
		owner, mode = "-:-", 0o777
	case tar.TypeFifo:
		owner = "-:-"
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s %o %s %s", p, typ, mode, owner, extra))
}

// treeListing lists the tree at dir as the test user sees it, in the
// format describe prints, running host tools through command (as the
// test user, or as root).
func treeListing(t *testing.T, command func(string, ...string) *exec.Cmd, dir string) []string {
	t.Helper()
	script := `cd "$1" && find . -mindepth 1 2>/dev/null | sed 's|^\./||' | while IFS= read -r p; do
  set -- $(stat -c '%F %a %u %g %t %T' "$p")
  case "$1" in
    directory) echo "$p d $2 $3:$4 " ;;
    symbolic) echo "$p l 777 -:- $(readlink "$p")" ;;
    character) echo "$p c $4 $5:$6 $7:$8" ;;
    block) echo "$p b $4 $5:$6 $7:$8" ;;
    fifo) echo "$p p $2 -:- " ;;
    *) h=-; [ -r "$p" ] && h=$(sha256sum "$p" | cut -c1-16)
       echo "$p f $(stat -c '%a %u:%g' "$p") $h" ;;
  esac
done`
	out, err := command("sh", "-c", script, "sh", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("list %s: %v\n%s", dir, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}

func diffLines(want, got []string) string {
	w := map[string]bool{}
	for _, l := range want {
		w[l] = true
	}
	g := map[string]bool{}
	for _, l := range got {
		g[l] = true
	}
	var b strings.Builder
	for _, l := range want {
		if !g[l] {
			fmt.Fprintf(&b, "  missing: %s\n", l)
		}
	}
	for _, l := range got {
		if !w[l] {
			fmt.Fprintf(&b, "  unexpected: %s\n", l)
		}
	}
	return b.String()
}

// mustRun runs a host command as root.
func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}
