package bench

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Tree is one prepared lower layer plus what the workloads need to know
// about it. Lowers are built once and cached, because debootstrap and
// generating a gigabyte of data would otherwise dominate every run.
type Tree struct {
	Name  string `json:"name"`
	Lower string `json:"lower"` // owned as built (root's view)
	// Manifest lists every entry below Lower, one per line as "T path"
	// with T in f, d, l, o (file, dir, symlink, other); the workloads
	// read it instead of walking so that "stat every file" is only stats.
	Manifest string `json:"manifest"`
	Tarball  string `json:"tarball,omitempty"` // the base tree as a tar, for untar
	Files    int    `json:"files"`
	Dirs     int    `json:"dirs"`
	Bytes    int64  `json:"bytes"`
	BigFile  string `json:"big_file,omitempty"` // relative path, size BigSize
	BigSize  int64  `json:"big_size,omitempty"`
	RmDir    string `json:"rm_dir,omitempty"` // relative path of the dir rm-rf removes
	BuildDir string `json:"build_dir,omitempty"`
}

const (
	bigDir   = "bench-big"
	buildDir = "bench-build"
)

// SyntheticSpec describes a generated tree. Sizes follow a fixed,
// seeded mix (mostly small files, a few large), or are all empty.
type SyntheticSpec struct {
	Files int   `json:"files"`
	Dirs  int   `json:"dirs"`
	Seed  int64 `json:"seed"`
	Empty bool  `json:"empty,omitempty"`
}

func (s SyntheticSpec) key() string {
	k := fmt.Sprintf("synthetic-n%d-m%d-s%d", s.Files, s.Dirs, s.Seed)
	if s.Empty {
		k += "-empty"
	}
	return k
}

// prepareTree returns the cached lower for spec, building it if needed.
// kind is "debian", "synthetic" or a directory path.
func prepareTree(cacheDir, kind string, syn SyntheticSpec, bigSize int64, buildUnits int, extras bool, logf func(string, ...any)) (*Tree, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("cache dir %s: %w", cacheDir, err)
	}
	var base, key string
	switch kind {
	case "debian":
		var err error
		if base, key, err = ensureDebian(cacheDir, logf); err != nil {
			return nil, err
		}
	case "synthetic":
		key = syn.key()
	default:
		fi, err := os.Stat(kind)
		if err != nil {
			return nil, fmt.Errorf("--tree %s: %w", kind, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("--tree %s: not a directory", kind)
		}
		base, _ = filepath.Abs(kind)
		key = "path" + strings.ReplaceAll(base, "/", "_") + "-" + strconv.FormatInt(fi.ModTime().Unix(), 10)
	}
	if extras {
		key += "-big" + strconv.FormatInt(bigSize>>20, 10) + "m"
		if buildUnits != DefaultBuildUnits {
			key += "-u" + strconv.Itoa(buildUnits)
		}
	}
	lower := filepath.Join(cacheDir, "lower-"+key)
	t := &Tree{Name: key, Lower: lower, Manifest: lower + ".manifest"}
	if _, err := os.Stat(t.Manifest); err != nil {
		logf("building lower %s", lower)
		tmp := lower + ".tmp"
		os.RemoveAll(tmp)
		if base != "" {
			if err := run("cp", "-a", base, tmp); err != nil {
				return nil, fmt.Errorf("copy tree %s: %w", base, err)
			}
		} else if err := generate(tmp, syn); err != nil {
			return nil, err
		}
		if extras {
			if err := writeBigFile(filepath.Join(tmp, bigDir, "big"), bigSize, syn.Seed); err != nil {
				return nil, err
			}
			if err := writeBuildProject(filepath.Join(tmp, buildDir), buildUnits, syn.Seed); err != nil {
				return nil, err
			}
		}
		os.RemoveAll(lower)
		if err := os.Rename(tmp, lower); err != nil {
			return nil, fmt.Errorf("install lower %s: %w", lower, err)
		}
		if err := writeManifest(lower, t.Manifest); err != nil {
			return nil, err
		}
	}
	m, err := loadManifest(t.Manifest)
	if err != nil {
		return nil, err
	}
	t.Files, t.Dirs = m.count('f'), m.count('d')
	for _, e := range m.entries {
		if e.kind == 'f' {
			t.Bytes += e.size
		}
	}
	if extras {
		t.BigFile, t.BigSize, t.BuildDir = filepath.Join(bigDir, "big"), bigSize, buildDir
		t.Tarball = filepath.Join(cacheDir, key+".tar")
		if _, err := os.Stat(t.Tarball); err != nil {
			if err := run("tar", "-C", lower, "--exclude=./"+bigDir, "--exclude=./"+buildDir,
				"-cf", t.Tarball+".tmp", "."); err != nil {
				return nil, fmt.Errorf("tar %s: %w", lower, err)
			}
			if err := os.Rename(t.Tarball+".tmp", t.Tarball); err != nil {
				return nil, err
			}
		}
	}
	t.RmDir = m.biggestDir()
	return t, nil
}

// userCopy returns a copy of the lower owned by uid:gid, which a rootless
// run needs: inside a user namespace that maps only the user, files of
// other owners show as nobody and cannot be copied up. An image unpacked
// by that user looks like this copy.
func userCopy(t *Tree, uid, gid int, logf func(string, ...any)) (string, error) {
	dst := fmt.Sprintf("%s-uid%d", t.Lower, uid)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	logf("copying lower for uid %d: %s", uid, dst)
	tmp := dst + ".tmp"
	os.RemoveAll(tmp)
	if err := run("cp", "-a", t.Lower, tmp); err != nil {
		return "", fmt.Errorf("copy lower %s: %w", t.Lower, err)
	}
	err := filepath.WalkDir(tmp, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return "", fmt.Errorf("chown %s: %w", tmp, err)
	}
	return dst, os.Rename(tmp, dst)
}

// ensureDebian debootstraps a minbase rootfs from the host's own apt
// mirror into the cache, once.
func ensureDebian(cacheDir string, logf func(string, ...any)) (dir, key string, err error) {
	mirror, suite, err := aptMirror()
	if err != nil {
		return "", "", err
	}
	key = "debian-" + suite + "-minbase"
	dir = filepath.Join(cacheDir, key)
	if _, err := os.Stat(filepath.Join(dir, "etc", "os-release")); err == nil {
		return dir, key, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", "", fmt.Errorf("--tree debian: debootstrap not installed (apt-get install debootstrap)")
	}
	if os.Geteuid() != 0 {
		return "", "", fmt.Errorf("--tree debian: building %s with debootstrap needs root", dir)
	}
	logf("debootstrap --variant=minbase %s from %s (once; cached in %s)", suite, mirror, dir)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := run("debootstrap", "--variant=minbase", suite, tmp, mirror); err != nil {
		return "", "", fmt.Errorf("debootstrap %s into %s: %w", suite, tmp, err)
	}
	return dir, key, os.Rename(tmp, dir)
}

// aptMirror finds the Debian archive this machine already uses, in either
// sources format, and the release it tracks.
func aptMirror() (mirror, suite string, err error) {
	codename := ""
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok {
				codename = strings.Trim(v, `"`)
			}
		}
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	type src struct{ uri, suite string }
	var found []src
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var uris, suites []string
		flush := func() {
			for _, u := range uris {
				for _, s := range suites {
					found = append(found, src{u, s})
				}
			}
			uris, suites = nil, nil
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "#") {
				continue
			}
			if line == "" {
				flush()
				continue
			}
			if strings.HasPrefix(line, "deb ") {
				fs := strings.Fields(line)[1:]
				for len(fs) > 0 && strings.HasPrefix(fs[0], "[") {
					for len(fs) > 0 && !strings.HasSuffix(fs[0], "]") {
						fs = fs[1:]
					}
					fs = fs[1:]
				}
				if len(fs) >= 2 {
					found = append(found, src{fs[0], fs[1]})
				}
				continue
			}
			if v, ok := strings.CutPrefix(line, "URIs:"); ok {
				uris = strings.Fields(v)
			}
			if v, ok := strings.CutPrefix(line, "Suites:"); ok {
				suites = strings.Fields(v)
			}
		}
		flush()
	}
	for _, s := range found {
		if strings.HasSuffix(strings.TrimSuffix(s.uri, "/"), "/debian") && !strings.Contains(s.suite, "-") &&
			(codename == "" || s.suite == codename) {
			return s.uri, s.suite, nil
		}
	}
	return "", "", errors.New("--tree debian: no Debian archive (URI ending in /debian) in /etc/apt/sources.list*")
}

// generate writes a synthetic tree.
func generate(root string, s SyntheticSpec) error {
	r := rand.New(rand.NewPCG(uint64(s.Seed), 0x5742))
	dirs := []string{root}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	for i := 1; i < s.Dirs; i++ {
		// Parents drawn from recent dirs give depth without degenerate chains.
		lo := max(0, len(dirs)-50)
		parent := dirs[lo+r.IntN(len(dirs)-lo)]
		if r.IntN(4) == 0 {
			parent = dirs[r.IntN(len(dirs))]
		}
		d := filepath.Join(parent, fmt.Sprintf("d%05d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("generate %s: %w", d, err)
		}
		dirs = append(dirs, d)
	}
	buf := make([]byte, 1<<20)
	fill := rand.NewChaCha8([32]byte{byte(s.Seed), 1})
	fill.Read(buf)
	for i := 0; i < s.Files; i++ {
		p := filepath.Join(dirs[r.IntN(len(dirs))], fmt.Sprintf("f%07d", i))
		size := 0
		if !s.Empty {
			switch x := r.IntN(100); {
			case x < 60:
				size = r.IntN(2 << 10)
			case x < 90:
				size = 2<<10 + r.IntN(14<<10)
			case x < 99:
				size = 16<<10 + r.IntN(112<<10)
			default:
				size = 128<<10 + r.IntN(896<<10)
			}
		}
		off := r.IntN(len(buf) - size + 1)
		if err := os.WriteFile(p, buf[off:off+size], 0o644); err != nil {
			return fmt.Errorf("generate %s: %w", p, err)
		}
	}
	return nil
}

func writeBigFile(path string, size, seed int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("big file %s: %w", path, err)
	}
	defer f.Close()
	src := rand.NewChaCha8([32]byte{byte(seed), 2})
	buf := make([]byte, 4<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		src.Read(buf)
		n := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:n]); err != nil {
			return fmt.Errorf("big file %s: %w", path, err)
		}
	}
	return f.Close()
}

// writeBuildProject generates a small multi-file C project: enough
// translation units and headers that compiling it is dominated by opening,
// reading and writing small files, as real builds are.
func writeBuildProject(dir string, units int, seed int64) error {
	if err := os.MkdirAll(filepath.Join(dir, "include"), 0o755); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(uint64(seed), 7))
	var hdr strings.Builder
	hdr.WriteString("#pragma once\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n")
	for i := 0; i < units; i++ {
		fmt.Fprintf(&hdr, "long unit%d(long x);\n", i)
	}
	if err := os.WriteFile(filepath.Join(dir, "include", "units.h"), []byte(hdr.String()), 0o644); err != nil {
		return err
	}
	for i := 0; i < units; i++ {
		var src strings.Builder
		fmt.Fprintf(&src, "#include \"units.h\"\n")
		for j := 0; j < 12; j++ {
			fmt.Fprintf(&src, "static long f%d(long x) { long s = %d; for (long i = 0; i < x; i++) s = s * %d + i %% %d; return s; }\n",
				j, r.IntN(1000), 3+r.IntN(30), 2+r.IntN(50))
		}
		fmt.Fprintf(&src, "long unit%d(long x) { return 0", i)
		for j := 0; j < 12; j++ {
			fmt.Fprintf(&src, " + f%d(x)", j)
		}
		src.WriteString("; }\n")
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("unit%02d.c", i)), []byte(src.String()), 0o644); err != nil {
			return err
		}
	}
	var mainSrc strings.Builder
	mainSrc.WriteString("#include \"units.h\"\nint main(int argc, char **argv) { long s = 0;\n")
	for i := 0; i < units; i++ {
		fmt.Fprintf(&mainSrc, "  s += unit%d(argc);\n", i)
	}
	mainSrc.WriteString("  printf(\"%ld\\n\", s); return 0; }\n")
	return os.WriteFile(filepath.Join(dir, "main.c"), []byte(mainSrc.String()), 0o644)
}

type mentry struct {
	kind byte
	size int64
	path string
}

type manifest struct{ entries []mentry }

func writeManifest(root, out string) error {
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return fmt.Errorf("manifest %s: %w", out, err)
	}
	w := bufio.NewWriter(f)
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		k := byte('o')
		var size int64
		switch {
		case d.Type().IsRegular():
			k = 'f'
			if fi, err := d.Info(); err == nil {
				size = fi.Size()
			}
		case d.IsDir():
			k = 'd'
		case d.Type()&os.ModeSymlink != 0:
			k = 'l'
		}
		fmt.Fprintf(w, "%c %d %s\n", k, size, rel)
		return nil
	})
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("manifest %s: %w", out, err)
	}
	return os.Rename(out+".tmp", out)
}

func loadManifest(path string) (*manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	defer f.Close()
	m := &manifest{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		k, rest, _ := strings.Cut(line, " ")
		sz, p, _ := strings.Cut(rest, " ")
		n, _ := strconv.ParseInt(sz, 10, 64)
		if k == "" || p == "" {
			continue
		}
		m.entries = append(m.entries, mentry{kind: k[0], size: n, path: p})
	}
	return m, sc.Err()
}

func (m *manifest) count(k byte) int {
	n := 0
	for _, e := range m.entries {
		if e.kind == k {
			n++
		}
	}
	return n
}

// files returns the regular files outside the benchmark's own additions.
func (m *manifest) files() []string {
	var out []string
	for _, e := range m.entries {
		if e.kind == 'f' && !strings.HasPrefix(e.path, bigDir) && !strings.HasPrefix(e.path, buildDir) {
			out = append(out, e.path)
		}
	}
	return out
}

// pick returns n files chosen with seed, sorted, the same on every run.
func (m *manifest) pick(n int, seed int64) []string {
	fs := m.files()
	r := rand.New(rand.NewPCG(uint64(seed), 11))
	r.Shuffle(len(fs), func(i, j int) { fs[i], fs[j] = fs[j], fs[i] })
	fs = fs[:min(n, len(fs))]
	sort.Strings(fs)
	return fs
}

// biggestDir is the directory two levels down (or one) holding the most
// entries, e.g. usr/share in a Debian rootfs: what rm-rf removes.
func (m *manifest) biggestDir() string {
	counts := map[string]int{}
	for _, e := range m.entries {
		if strings.HasPrefix(e.path, bigDir) || strings.HasPrefix(e.path, buildDir) {
			continue
		}
		parts := strings.SplitN(e.path, "/", 3)
		if len(parts) >= 2 {
			counts[parts[0]+"/"+parts[1]]++
		}
		if len(parts) >= 1 {
			counts[parts[0]]++
		}
	}
	best, bestN := "", -1
	total := len(m.entries)
	for d, n := range counts {
		// Prefer the deepest big dir: at most ~3/4 of the tree, so that
		// the rest of the tree survives and the mount stays meaningful.
		if n*4 > total*3 && strings.Count(d, "/") == 0 {
			continue
		}
		if n > bestN || (n == bestN && d < best) {
			best, bestN = d, n
		}
	}
	return best
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
