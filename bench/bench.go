// Package bench measures strata against the native directory, kernel
// overlayfs and fuse-overlayfs, as root and rootless, on the same lower.
//
// Every run mounts a fresh union (a new upper, a new FUSE server), runs one
// workload and takes the mount down, so no run inherits another's state
// except the page cache, which the cold workloads drop. Runs are
// interleaved (A B C A B C ...) so that drift of the machine hits every
// backend alike; medians with min and max are what the report shows.
//
// Root runs execute in this process. Rootless runs execute in a worker
// process that the benchmark starts as the unprivileged user inside a user
// and mount namespace (see WorkerMain); the worker asks the benchmark to
// drop caches, since only real root can.
//
// The package only measures and reports; deciding what is fast enough is
// the reader's job (see bench/RESULTS.md).
package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The defaults of Config's fields, in one place: the CLI shows them in its
// help and as its flags' defaults.
const (
	DefaultRuns           = 5
	QuickRuns             = 2
	DefaultTree           = "debian"
	DefaultUser           = "stratatest"
	DefaultCacheDir       = "/var/cache/strata-bench"
	DefaultScratch        = "/var/tmp/strata-bench"
	DefaultSeed           = 42
	DefaultSyntheticFiles = 10000
	DefaultBigSize        = 1 << 30
	QuickBigSize          = 256 << 20
	DefaultFiles1M        = 1_000_000
	DefaultBuildUnits     = 8
)

// Config selects what to run. The zero value of a field means its default.
type Config struct {
	Backends  []string // names from BackendNames; empty: all (quick: no variants)
	Workloads []string // names from WorkloadNames; empty: all (quick: the quick set)
	Runs      int      // per cell; default DefaultRuns, quick QuickRuns
	Tree      string   // "debian", "synthetic" or a directory; default DefaultTree
	Quick     bool
	Root      bool   // run the root backends
	Rootless  bool   // run the rootless backends
	User      string // who runs the rootless backends when we are root; default DefaultUser
	Strata    string // the strata binary
	CacheDir  string // lowers are cached here; default DefaultCacheDir
	Scratch   string // uppers and mounts; default DefaultScratch
	Seed      int64  // default DefaultSeed
	// Synthetic is the tree for Tree == "synthetic"; zero fields:
	// DefaultSyntheticFiles files, a tenth as many dirs.
	Synthetic SyntheticSpec
	BigSize   int64 // the big file; default DefaultBigSize (quick QuickBigSize)
	Files1M   int   // size of the walk-1m tree; default DefaultFiles1M
	// BuildUnits is how many C files the build workload compiles; default
	// DefaultBuildUnits.
	BuildUnits int
	// AllVariants runs strata's feature-off variants on every workload,
	// not only the read-path ones and copyup-small.
	AllVariants bool
	Command     string // recorded in the report
	// Progress, when set, is told after every run.
	Progress func(done, total int, what string)
	// Log, when set, receives one-off notes (building a tree, ...).
	Log func(format string, args ...any)
}

// Cell is one workload on one backend in one mode.
type Cell struct {
	Workload string `json:"workload"`
	Backend  string `json:"backend"`
	Mode     string `json:"mode"` // root or rootless
	NotRun   string `json:"not_run,omitempty"`
	// ByDesign: not run because of what was selected (or the time budget),
	// not because the host could not; charts leave these out.
	ByDesign     bool               `json:"by_design,omitempty"`
	Error        string             `json:"error,omitempty"`
	Runs         []Measurement      `json:"runs,omitempty"`
	Median       float64            `json:"median_s,omitempty"`
	Min          float64            `json:"min_s,omitempty"`
	Max          float64            `json:"max_s,omitempty"`
	PeakRSSKiB   int64              `json:"peak_rss_kib,omitempty"`
	MountOptions string             `json:"mount_options,omitempty"`
	Extra        map[string]float64 `json:"extra_median,omitempty"`
	// Requests: the median, over runs, of each opcode's FUSE request
	// count in the timed part (strata only).
	Requests map[string]float64 `json:"requests_median,omitempty"`
	Warnings []string           `json:"warnings,omitempty"`
}

// Ran reports whether the cell has a timing.
func (c *Cell) Ran() bool { return c.NotRun == "" && c.Error == "" && len(c.Runs) > 0 }

// Report is everything one benchmark produced.
type Report struct {
	Command   string         `json:"command"`
	Started   time.Time      `json:"started"`
	Seconds   float64        `json:"duration_s"`
	Host      Host           `json:"host"`
	Quick     bool           `json:"quick"`
	Runs      int            `json:"runs"`
	Seed      int64          `json:"seed"`
	Tree      *Tree          `json:"tree"`
	Tree1M    *Tree          `json:"tree_1m,omitempty"`
	Backends  []BackendSpec  `json:"backends"`
	Workloads []WorkloadInfo `json:"workloads"`
	Modes     []string       `json:"modes"`
	Cells     []*Cell        `json:"cells"`
}

// WorkloadInfo describes a workload in the report.
type WorkloadInfo struct {
	Name string `json:"name"`
	Desc string `json:"description"`
	Cold bool   `json:"cold,omitempty"`
}

// Cell finds one cell, nil if absent.
func (r *Report) Cell(workload, backend, mode string) *Cell {
	for _, c := range r.Cells {
		if c.Workload == workload && c.Backend == backend && c.Mode == mode {
			return c
		}
	}
	return nil
}

func (cfg *Config) defaults() {
	if cfg.Runs <= 0 {
		cfg.Runs = DefaultRuns
		if cfg.Quick {
			cfg.Runs = QuickRuns
		}
	}
	if cfg.Tree == "" {
		cfg.Tree = DefaultTree
	}
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = DefaultCacheDir
	}
	if cfg.Scratch == "" {
		cfg.Scratch = DefaultScratch
	}
	if cfg.Seed == 0 {
		cfg.Seed = DefaultSeed
	}
	if cfg.Synthetic.Files == 0 {
		cfg.Synthetic.Files = DefaultSyntheticFiles
	}
	if cfg.Synthetic.Dirs == 0 {
		cfg.Synthetic.Dirs = max(1, cfg.Synthetic.Files/10)
	}
	cfg.Synthetic.Seed = cfg.Seed
	if cfg.BigSize == 0 {
		cfg.BigSize = DefaultBigSize
		if cfg.Quick {
			cfg.BigSize = QuickBigSize
		}
	}
	if cfg.BuildUnits <= 0 {
		cfg.BuildUnits = DefaultBuildUnits
	}
	if cfg.Files1M == 0 {
		cfg.Files1M = DefaultFiles1M
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	if cfg.Progress == nil {
		cfg.Progress = func(int, int, string) {}
	}
}

// Select resolves backend and workload names, failing on unknown ones.
func (cfg *Config) selection() ([]BackendSpec, []*workload, error) {
	var backends []BackendSpec
	all := AllBackends()
	if len(cfg.Backends) == 0 {
		for _, b := range all {
			if !cfg.Quick || (b.Off == "" && b.On == "") {
				backends = append(backends, b)
			}
		}
	}
	for _, name := range cfg.Backends {
		i := slices.IndexFunc(all, func(b BackendSpec) bool { return b.Name == name })
		if i < 0 {
			return nil, nil, fmt.Errorf("unknown backend %q (have: %s)", name, strings.Join(BackendNames(), ", "))
		}
		backends = append(backends, all[i])
	}
	var ws []*workload
	if len(cfg.Workloads) == 0 {
		for _, w := range workloads {
			if (!cfg.Quick || w.Quick) && !w.Full1M {
				ws = append(ws, w)
			}
		}
	}
	for _, name := range cfg.Workloads {
		w := workloadByName(name)
		if w == nil {
			return nil, nil, fmt.Errorf("unknown workload %q (have: %s)", name, strings.Join(WorkloadNames(), ", "))
		}
		ws = append(ws, w)
	}
	return backends, ws, nil
}

// BackendNames lists the backends' names in table order.
func BackendNames() []string {
	var out []string
	for _, b := range AllBackends() {
		out = append(out, b.Name)
	}
	return out
}

// Check validates cfg without running anything: names, the tree path, and
// whether the modes asked for can run as the current user.
func (cfg *Config) Check() error {
	cfg.defaults()
	if _, _, err := cfg.selection(); err != nil {
		return err
	}
	if !cfg.Root && !cfg.Rootless {
		return fmt.Errorf("nothing to run: neither root nor rootless mode selected")
	}
	if cfg.Tree != "debian" && cfg.Tree != "synthetic" {
		fi, err := os.Stat(cfg.Tree)
		if err != nil {
			return fmt.Errorf("--tree %s: %w", cfg.Tree, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("--tree %s: not a directory", cfg.Tree)
		}
	}
	if cfg.Root && !cfg.Rootless && os.Geteuid() != 0 {
		return fmt.Errorf("root backends need root (you are uid %d); use --rootless", os.Geteuid())
	}
	if cfg.Strata == "" {
		return fmt.Errorf("no strata binary given")
	}
	return nil
}

// Run runs the benchmark and returns its report. Cancelling ctx ends it
// after the current run, so its mounts come down; Run then returns what it
// has so far with an error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	backends, ws, _ := cfg.selection()
	start := time.Now()
	rep := &Report{Command: cfg.Command, Started: start.UTC(), Quick: cfg.Quick, Runs: cfg.Runs, Seed: cfg.Seed, Backends: backends}
	for _, w := range ws {
		rep.Workloads = append(rep.Workloads, WorkloadInfo{Name: w.Name, Desc: w.Desc, Cold: w.Cold})
	}
	modes := cfg.modes()
	rep.Modes = modes
	rep.Host = hostInfo()

	tree, err := prepareTree(cfg.CacheDir, cfg.Tree, cfg.Synthetic, cfg.BigSize, cfg.BuildUnits, true, cfg.Log)
	if err != nil {
		return nil, err
	}
	rep.Tree = tree
	var tree1M *Tree
	if slices.ContainsFunc(ws, func(w *workload) bool { return w.Full1M }) {
		spec := SyntheticSpec{Files: cfg.Files1M, Dirs: max(1, cfg.Files1M/100), Seed: cfg.Seed, Empty: true}
		if tree1M, err = prepareTree(cfg.CacheDir, "synthetic", spec, 0, 0, false, cfg.Log); err != nil {
			return nil, err
		}
		rep.Tree1M = tree1M
	}

	// Why a whole mode cannot run, if it cannot.
	modeNotRun := map[string]string{}
	lowers := map[string]map[*Tree]string{"root": {tree: tree.Lower}, "rootless": {}}
	if tree1M != nil {
		lowers["root"][tree1M] = tree1M.Lower
	}
	isRoot := os.Geteuid() == 0
	if cfg.Root && !isRoot {
		modeNotRun["root"] = "needs root"
	}
	var rw *worker
	scratch := map[string]string{"root": filepath.Join(cfg.Scratch, "root"), "rootless": filepath.Join(cfg.Scratch, "rootless")}
	if cfg.Rootless {
		rw, err = cfg.setupRootless(tree, tree1M, lowers, scratch["rootless"])
		if err != nil {
			modeNotRun["rootless"] = err.Error()
		} else {
			defer rw.close()
		}
	}
	if err := os.MkdirAll(scratch["root"], 0o755); err != nil && isRoot {
		return nil, fmt.Errorf("scratch dir %s: %w", scratch["root"], err)
	}

	backendBroken := map[string]string{} // mode/backend -> why
	for _, m := range modes {
		for _, b := range backends {
			if b.Kind == "fuse-overlayfs" {
				if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
					backendBroken[m+"/"+b.Name] = "fuse-overlayfs not installed"
				}
			}
		}
	}
	cells := cfg.planCells(rep, ws, backends, modes, modeNotRun, isRoot)
	total := 0
	for _, w := range ws {
		for _, m := range modes {
			for _, b := range backends {
				if cells[w.Name+"/"+m+"/"+b.Name].NotRun == "" {
					total += runsFor(cfg, w)
				}
			}
		}
	}
	done := 0
	for _, w := range ws {
		t := tree
		if w.Full1M {
			t = tree1M
		}
		for r := 0; r < runsFor(cfg, w); r++ {
			for _, m := range modes {
				for _, b := range backends {
					c := cells[w.Name+"/"+m+"/"+b.Name]
					if c.NotRun != "" {
						continue
					}
					select {
					case <-ctx.Done():
						for _, c := range rep.Cells {
							summarize(c)
						}
						rep.Seconds = time.Since(start).Seconds()
						return rep, fmt.Errorf("interrupted after %d of %d runs", done, total)
					default:
					}
					what := fmt.Sprintf("%s %s %s run %d/%d", w.Name, m, b.Name, r+1, runsFor(cfg, w))
					if why := backendBroken[m+"/"+b.Name]; why != "" {
						c.NotRun = why
					}
					if c.NotRun != "" || c.Error != "" {
						done++
						cfg.Progress(done, total, what)
						continue
					}
					j := job{Backend: b, Rootless: m == "rootless", Workload: w.Name, Run: r, Seed: cfg.Seed + int64(r),
						Lower: lowers[m][t], Tree: *t, Scratch: scratch[m], Strata: cfg.Strata}
					if j.Rootless {
						j.Strata = filepath.Join(scratch[m], "strata")
					}
					var res Measurement
					if j.Rootless {
						res, err = rw.run(j)
						if err != nil {
							modeNotRun[m] = err.Error()
							res = Measurement{Error: err.Error(), SetupFailed: true}
						}
					} else {
						res = execute(j, dropCaches)
					}
					if res.SetupFailed {
						backendBroken[m+"/"+b.Name] = "cannot mount: " + res.Error
					}
					c.record(res)
					done++
					cfg.Progress(done, total, what)
				}
			}
		}
	}
	for _, c := range rep.Cells {
		summarize(c)
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// runsFor keeps the 1M-file walk, which is about memory and takes
// minutes per run on FUSE, to one run.
func runsFor(cfg Config, w *workload) int {
	if w.Full1M {
		return 1
	}
	return cfg.Runs
}

// setupRootless prepares the user's copies of the lowers, a scratch dir
// the user owns, a copy of strata the user can execute, and the worker.
func (cfg *Config) setupRootless(tree, tree1M *Tree, lowers map[string]map[*Tree]string, scratch string) (*worker, error) {
	uid, gid, home := os.Getuid(), os.Getgid(), os.Getenv("HOME")
	name := strconv.Itoa(uid)
	if os.Geteuid() == 0 {
		u, err := user.Lookup(cfg.User)
		if err != nil {
			return nil, fmt.Errorf("rootless user %s does not exist (create it with ./tests/setup.sh user)", cfg.User)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		home, name = u.HomeDir, u.Username
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return nil, fmt.Errorf("unshare (util-linux) not installed")
	}
	for _, t := range []*Tree{tree, tree1M} {
		if t == nil {
			continue
		}
		l, err := userCopy(t, uid, gid, cfg.Log)
		if err != nil {
			return nil, err
		}
		lowers["rootless"][t] = l
	}
	os.RemoveAll(scratch)
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return nil, fmt.Errorf("scratch dir %s: %w", scratch, err)
	}
	for p := scratch; p != "/" && p != "."; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 == 0 {
			return nil, fmt.Errorf("scratch dir %s: %s is not searchable by uid %d", scratch, p, uid)
		}
	}
	bin := filepath.Join(scratch, "strata")
	if err := run("cp", cfg.Strata, bin); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(scratch, uid, gid); err != nil {
			return nil, err
		}
	}
	return startWorker(bin, name, uid, gid, home)
}

func summarize(c *Cell) {
	if len(c.Runs) == 0 {
		return
	}
	ts := make([]float64, len(c.Runs))
	extras := map[string][]float64{}
	for i, r := range c.Runs {
		ts[i] = r.Seconds
		c.PeakRSSKiB = max(c.PeakRSSKiB, r.PeakRSSKiB)
		c.MountOptions = r.MountOptions
		if r.Warning != "" {
			c.Warnings = append(c.Warnings, fmt.Sprintf("run %d: %s", i+1, r.Warning))
		}
		for k, v := range r.Extra {
			extras[k] = append(extras[k], v)
		}
	}
	c.Median, c.Min, c.Max = median(ts), slices.Min(ts), slices.Max(ts)
	c.Requests = medianRequests(c.Runs)
	if len(extras) > 0 {
		c.Extra = map[string]float64{}
		for k, vs := range extras {
			c.Extra[k] = median(vs)
		}
	}
}

// medianRequests is the per-opcode median over the runs that counted.
func medianRequests(runs []Measurement) map[string]float64 {
	ops := map[string]bool{}
	counted := 0
	for _, r := range runs {
		if r.Requests != nil {
			counted++
		}
		for op := range r.Requests {
			ops[op] = true
		}
	}
	if counted == 0 {
		return nil
	}
	out := map[string]float64{}
	for op := range ops {
		var vs []float64
		for _, r := range runs {
			if r.Requests != nil {
				vs = append(vs, float64(r.Requests[op]))
			}
		}
		if m := median(vs); m > 0 {
			out[op] = m
		}
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func syncAll() { unix.Sync() }

// modes are the modes the run covers, root first.
func (cfg Config) modes() []string {
	modes := []string{}
	if cfg.Root {
		modes = append(modes, "root")
	}
	if cfg.Rootless {
		modes = append(modes, "rootless")
	}
	return modes
}

// planCells makes the report's cells, one per workload, mode and backend,
// each marked with why it will not run where it will not (a mode that
// cannot run, a cell left out by design).
func (cfg Config) planCells(rep *Report, ws []*workload, backends []BackendSpec, modes []string, modeNotRun map[string]string, isRoot bool) map[string]*Cell {
	cells := map[string]*Cell{}
	for _, w := range ws {
		for _, m := range modes {
			for _, b := range backends {
				c := &Cell{Workload: w.Name, Backend: b.Name, Mode: m}
				cells[w.Name+"/"+m+"/"+b.Name] = c
				rep.Cells = append(rep.Cells, c)
				switch {
				case modeNotRun[m] != "":
					c.NotRun = modeNotRun[m]
				case w.Cold && m == "rootless" && !isRoot:
					c.NotRun = "dropping caches needs root"
				case w.Full1M && (b.Off != "" || b.On != ""):
					c.NotRun, c.ByDesign = "walk-1m runs only on the default backends", true
				case w.Full1M && (b.Kind == "native" || b.Kind == "kernel"):
					c.NotRun, c.ByDesign = "walk-1m measures the FUSE server's memory; in-kernel backends have none", true
				case (b.Off != "" || b.On != "") && !w.Variants && !cfg.AllVariants && len(cfg.Backends) == 0:
					c.NotRun, c.ByDesign = "variants run on the warm read-path workloads and copyup-small only, to keep a full run under 40 min (--all-variants, or name them in --backends)", true
				}
			}
		}
	}

	return cells
}

// record files one run's result in the cell: a measurement, or why the
// cell could not run or failed.
func (c *Cell) record(res Measurement) {
	switch {
	case res.SetupFailed:
		c.NotRun = "cannot mount: " + res.Error
	case res.NotRun:
		c.NotRun = res.Error
	case res.Error != "":
		c.Error = res.Error
	default:
		c.Runs = append(c.Runs, res)
	}
}
