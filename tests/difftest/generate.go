package difftest

import (
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Generator draws operations. Next looks at the oracle's merged tree first,
// so most operations hit entries that exist (where the union's work is),
// while a steady share names missing or wrong-typed paths to compare errors.
type Generator struct {
	rng  *rand.Rand
	IDs  []int // owners chown picks from
	seen []node
}

type node struct {
	path string // "" is the root
	mode uint32 // S_IFMT bits
}

// NewGenerator returns a generator for seed; ids are the uids/gids chown
// may pick (all must be valid where the ops run).
func NewGenerator(seed int64, ids []int) *Generator {
	return &Generator{rng: rand.New(rand.NewSource(seed)), IDs: ids}
}

// names new entries get: fresh ones, and names the lowers use elsewhere so
// creates land on whiteouts, opaque dirs and merged dirs.
var newNames = []string{"n1", "n2", "n3", "x", "z", "f1", "f2", "gone", "gonedir", "opq", "d1", "d2", "sub", "t", "hl_b"}

var fileModes = []uint32{0o644, 0o600, 0o755, 0o700, 0o444, 0o4755, 0o2750, 0o777, 0o1777, 0o640}

var xattrNames = []string{"user.a", "user.b", "user.color", "user.hl"}

// Next returns the next operation for the tree now mounted at root.
func (g *Generator) Next(root string) Op {
	g.scan(root)
	r := g.rng
	switch k := r.Intn(100); {
	case k < 9:
		flags := []int{unix.O_EXCL, 0, unix.O_TRUNC, unix.O_EXCL | unix.O_RDWR}[r.Intn(4)]
		return Op{Kind: OpCreate, Path: g.target(0.8), Mode: g.pickMode(), Flags: flags}
	case k < 21:
		return Op{Kind: OpWrite, Path: g.file(), Off: g.size(), Len: 1 + r.Int63n(9000), Fill: byte(r.Intn(256))}
	case k < 28:
		return Op{Kind: OpAppend, Path: g.file(), Len: 1 + r.Int63n(5000), Fill: byte(r.Intn(256))}
	case k < 34:
		return Op{Kind: OpTruncate, Path: g.file(), Len: g.size()}
	case k < 46:
		flags := 0
		switch r.Intn(10) {
		case 0:
			flags = unix.RENAME_NOREPLACE
		case 1:
			flags = unix.RENAME_EXCHANGE
		}
		var dst string
		if r.Intn(2) == 0 {
			dst = g.existing()
		} else {
			dst = g.target(1)
		}
		return Op{Kind: OpRename, Path: g.existing(), Path2: dst, Flags: flags}
	case k < 53:
		return Op{Kind: OpUnlink, Path: g.existing()}
	case k < 60:
		return Op{Kind: OpMkdir, Path: g.target(0.9), Mode: []uint32{0o755, 0o700, 0o777, 0o1777}[r.Intn(4)]}
	case k < 65:
		return Op{Kind: OpRmdir, Path: g.dir()}
	case k < 71:
		return Op{Kind: OpLink, Path: g.file(), Path2: g.target(0.85)}
	case k < 76:
		targets := []string{"d1/f1", "../topfile", "nowhere", "d1", g.existing(), "/nonexistent-strata-difftest/target"}
		// An absolute target must lead nowhere: ops follow symlinks, and as
		// root a target on the host would be written through.
		path, target := g.target(0.9), targets[r.Intn(len(targets))]
		if !strings.Contains(path, "/") && strings.HasPrefix(target, "../") {
			// ".." from the mount root would lead out of the mount. (A
			// rename can still carry such a link to the root; then it
			// reaches the stack's own scratch dir, one level up, never
			// further.)
			target = target[len("../"):]
		}
		return Op{Kind: OpSymlink, Path: path, Path2: target}
	case k < 82:
		return Op{Kind: OpChmod, Path: g.existing(), Mode: g.pickMode()}
	case k < 87:
		return Op{Kind: OpChown, Path: g.existing(), UID: g.IDs[r.Intn(len(g.IDs))], GID: g.IDs[r.Intn(len(g.IDs))]}
	case k < 94:
		flags := []int{0, 0, unix.XATTR_CREATE, unix.XATTR_REPLACE}[r.Intn(4)]
		vals := []string{"", "v", "value-" + string(rune('a'+r.Intn(26))), string(Fill(300, byte(r.Intn(256))))}
		return Op{Kind: OpSetxattr, Path: g.existing(), Name: xattrNames[r.Intn(len(xattrNames))], Value: vals[r.Intn(len(vals))], Flags: flags}
	case k < 96:
		return Op{Kind: OpRmxattr, Path: g.existing(), Name: xattrNames[r.Intn(len(xattrNames))]}
	case k < 98:
		// Times before LowerTime+1day compare exactly (see Entry.Mtime),
		// so utimes and a later copy-up must carry them to the second.
		return Op{Kind: OpUtimes, Path: g.existing(), Off: 800000000 + r.Int63n(200000000)}
	default:
		return Op{Kind: OpMkfifo, Path: g.target(0.9), Mode: 0o644}
	}
}

func (g *Generator) pickMode() uint32 { return fileModes[g.rng.Intn(len(fileModes))] }

func (g *Generator) size() int64 {
	switch g.rng.Intn(4) {
	case 0:
		return 0
	case 1:
		return g.rng.Int63n(100)
	default:
		return g.rng.Int63n(80000)
	}
}

// scan lists the merged tree (depth-limited) with lstat.
func (g *Generator) scan(root string) {
	g.seen = g.seen[:0]
	g.seen = append(g.seen, node{path: "", mode: unix.S_IFDIR})
	var walk func(rel string, depth int)
	walk = func(rel string, depth int) {
		names, err := readNames(filepath.Join(root, rel))
		if err != nil {
			return
		}
		for _, n := range names {
			p := filepath.Join(rel, n)
			var st unix.Stat_t
			if unix.Lstat(filepath.Join(root, p), &st) != nil {
				continue
			}
			g.seen = append(g.seen, node{path: p, mode: st.Mode & unix.S_IFMT})
			if st.Mode&unix.S_IFMT == unix.S_IFDIR && depth < 5 {
				walk(p, depth+1)
			}
		}
	}
	walk("", 0)
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names) // the rng must see the same order on every run
	return names, err
}

func (g *Generator) pick(filter func(node) bool) string {
	var c []string
	for _, n := range g.seen {
		if filter(n) {
			c = append(c, n.path)
		}
	}
	if len(c) == 0 {
		return "missing"
	}
	return c[g.rng.Intn(len(c))]
}

// existing: any entry but the root; 5% a missing path.
func (g *Generator) existing() string {
	if g.rng.Intn(20) == 0 {
		return g.missing()
	}
	return g.pick(func(n node) bool { return n.path != "" })
}

// file: mostly a regular file (or a symlink to follow), sometimes anything.
func (g *Generator) file() string {
	switch g.rng.Intn(10) {
	case 0:
		return g.existing()
	case 1:
		return g.pick(func(n node) bool { return n.mode == unix.S_IFLNK })
	}
	return g.pick(func(n node) bool { return n.mode == unix.S_IFREG })
}

func (g *Generator) dir() string {
	if g.rng.Intn(8) == 0 {
		return g.existing()
	}
	return g.pick(func(n node) bool { return n.mode == unix.S_IFDIR && n.path != "" })
}

// target: with probability pNew a new name in an existing dir, else an
// existing path.
func (g *Generator) target(pNew float64) string {
	if g.rng.Float64() >= pNew {
		return g.existing()
	}
	parent := g.pick(func(n node) bool { return n.mode == unix.S_IFDIR })
	if g.rng.Intn(25) == 0 {
		parent = g.pick(func(n node) bool { return n.mode != unix.S_IFDIR }) // ENOTDIR
	}
	return filepath.Join(parent, newNames[g.rng.Intn(len(newNames))])
}

func (g *Generator) missing() string {
	return []string{"nope", "d1/nope", "nope/deeper", "gone", "gonedir/child", "d1/sub/deep", "opq/x"}[g.rng.Intn(7)]
}
