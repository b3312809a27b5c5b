package difftest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/strata-run/strata/unionfs/mounts"
	"golang.org/x/sys/unix"
)

// Config is one differential run.
type Config struct {
	Seed    int64
	Ops     int // operations per seed
	Layout  Layout
	Oracle  Backend // kernel overlayfs
	Subject Backend // strata (or a second kernel mount to validate the harness)
	Dir     string  // scratch; each run makes fresh subdirs and removes them
	IDs     []int   // owners chown may pick
	// CompareEvery compares the merged trees every so many ops (0: only at
	// the end), so a divergence is caught close to the op that caused it.
	CompareEvery int
	// ShrinkTime bounds delta debugging of a failure; 0 skips it.
	ShrinkTime time.Duration
	// KernelLosesInos leaves out which merged paths share an st_ino and
	// whether st_ino survives copy-up. For user namespaces only: there
	// overlayfs cannot encode origin file handles (user.overlay.origin is
	// empty) and has no index, so the kernel reports a copied-up file
	// under its lower st_ino while cached and under the upper one after,
	// and a new hard link to it under the upper one (overlayfs.rst,
	// "Non-standard behavior": st_ino is kept only where origin/index
	// work). nlink and the upper dir's real links are still compared.
	// For the same reason (each name of a hard link is its own overlay
	// inode there, with its own cached mode) the set-id bits of files
	// with several names are left out: truncating through one name after
	// a chmod through another keeps them on the kernel, where the VFS rule
	// strata follows clears them.
	KernelLosesInos bool
	// OpTimeout is how long one op may take before the subject counts as
	// hung and is aborted.
	OpTimeout time.Duration
	Logf      func(format string, args ...any)
}

// Result is what a seed found. Failure is empty when both sides agreed.
type Result struct {
	Seed    int64  `json:"seed"`
	OpsRun  int    `json:"ops_run"`
	Failure string `json:"failure,omitempty"`
	// Repro is the shortest op list found that still makes the two
	// disagree, and ReproFailure what it shows.
	Repro        []Op   `json:"repro,omitempty"`
	ReproFailure string `json:"repro_failure,omitempty"`
	ShrinkNote   string `json:"shrink_note,omitempty"`
	// Outcomes counts "kind errno" over the run, to show what it covered.
	Outcomes map[string]int `json:"outcomes,omitempty"`
}

// Report formats r for a test log.
func (r Result) Report() string {
	if r.Failure == "" {
		return fmt.Sprintf("seed %d: %d ops agree", r.Seed, r.OpsRun)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: after %d ops: %s\n", r.Seed, r.OpsRun, r.Failure)
	if len(r.Repro) > 0 {
		fmt.Fprintf(&b, "shortest reproduction (%d ops, %s):\n%s", len(r.Repro), r.ShrinkNote, FormatOps(r.Repro))
		fmt.Fprintf(&b, "which shows: %s\n", r.ReproFailure)
		js, _ := json.Marshal(r.Repro)
		fmt.Fprintf(&b, "replay with: STRATA_DIFFTEST_REPLAY='%s'\n", js)
	}
	return b.String()
}

var runCounter atomic.Int64

type pair struct {
	cfg        *Config
	sa, sb     Stack
	ma, mb     Mounted
	dirA, dirB string
	outcomes   map[string]int
	// st_ino of every path right after mounting
	inosA, inosB map[string]uint64
}

func (c *Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

func (c *Config) open() (*pair, error) {
	n := runCounter.Add(1)
	p := &pair{cfg: c, dirA: filepath.Join(c.Dir, fmt.Sprintf("run%d-%s", n, c.Oracle.Name())),
		dirB: filepath.Join(c.Dir, fmt.Sprintf("run%d-%s2", n, c.Subject.Name()))}
	var err error
	if p.sa, err = NewStack(p.dirA, c.Layout); err != nil {
		return nil, err
	}
	if p.sb, err = NewStack(p.dirB, c.Layout); err != nil {
		os.RemoveAll(p.dirA)
		return nil, err
	}
	if p.ma, err = c.Oracle.Mount(p.sa); err != nil {
		p.close()
		return nil, err
	}
	if p.mb, err = c.Subject.Mount(p.sb); err != nil {
		p.close()
		return nil, err
	}
	ta, err := Snapshot(p.sa.Mnt, SnapshotOptions{})
	if err != nil {
		p.close()
		return nil, err
	}
	var tb *Tree
	if p.guard(func() { tb, err = Snapshot(p.sb.Mnt, SnapshotOptions{}) }) || err != nil {
		p.close()
		return nil, fmt.Errorf("first snapshot of %s: %v", p.sb.Mnt, err)
	}
	p.inosA, p.inosB = ta.Inos, tb.Inos
	return p, nil
}

// unmount takes both unions down; it reports a failure of the subject.
func (p *pair) unmount() string {
	var msg string
	if p.ma != nil {
		if err := p.ma.Unmount(); err != nil {
			msg = "oracle: " + err.Error()
		}
	}
	if p.mb != nil {
		if err := p.mb.Unmount(); err != nil {
			msg = "unmount: " + err.Error()
		}
	}
	return msg
}

// vanished notes a mount that is no longer there: strata dying leaves its
// mount in place (ENOTCONN), so a missing mount means something outside
// the test unmounted it, and the failure is not the union's.
func (p *pair) vanished() string {
	var s string
	for _, m := range []string{p.sa.Mnt, p.sb.Mnt} {
		if !mounts.IsMountpoint(m) {
			s += "\nNOTE: " + m + " is no longer mounted; something outside this test unmounted it"
		}
	}
	return s
}

// subjectOutput is the tail of what the subject's server printed (a panic,
// say), if it is a process.
func (p *pair) subjectOutput() string {
	o, ok := p.mb.(interface{ Output() string })
	if !ok {
		return ""
	}
	out := strings.TrimSpace(o.Output())
	if len(out) > 3000 {
		out = "..." + out[len(out)-3000:]
	}
	return out
}

func (p *pair) close() {
	p.unmount()
	os.RemoveAll(p.dirA)
	os.RemoveAll(p.dirB)
}

// guard runs fn, aborting the subject if it takes longer than the op
// timeout, so a hung FUSE server fails the run instead of the test binary.
func (p *pair) guard(fn func()) (hung bool) {
	d := p.cfg.OpTimeout
	if d == 0 {
		d = 30 * time.Second
	}
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
		return false
	case <-time.After(d):
		p.mb.Abort()
		<-done
		return true
	}
}

func (p *pair) apply(i int, op Op) string {
	ea := Apply(p.sa.Mnt, op)
	if p.outcomes != nil {
		p.outcomes[op.Kind+" "+ErrnoName(ea)]++
	}
	var eb unix.Errno
	if p.guard(func() { eb = Apply(p.sb.Mnt, op) }) {
		return fmt.Sprintf("op %d (%s) hung for %v", i+1, op, p.cfg.OpTimeout)
	}
	// The kernel answers ESTALE where overlayfs finds its own metadata
	// inconsistent; seen in a user namespace (no index, null origin file
	// handles) for a rename of one hard-link name onto another name of the
	// same inode, which POSIX says succeeds and changes nothing. The oracle
	// has no answer then, so the errno is not compared; the tree
	// comparisons still judge what the subject did.
	if ea == unix.ESTALE {
		return ""
	}
	if ea != eb {
		return fmt.Sprintf("op %d (%s): kernel %s, %s %s", i+1, op, ErrnoName(ea), p.cfg.Subject.Name(), ErrnoName(eb))
	}
	return ""
}

func (p *pair) compareMerged(when string) string {
	ta, err := Snapshot(p.sa.Mnt, SnapshotOptions{Inos: p.inosA})
	if err != nil {
		return "oracle snapshot: " + err.Error()
	}
	var tb *Tree
	if p.guard(func() { tb, err = Snapshot(p.sb.Mnt, SnapshotOptions{Inos: p.inosB}) }) {
		return "merged snapshot hung " + when
	}
	if err != nil {
		return fmt.Sprintf("merged tree %s: %v", when, err)
	}
	if p.cfg.KernelLosesInos {
		ta.Links, tb.Links = nil, nil
		for _, tr := range []*Tree{ta, tb} {
			for k, e := range tr.Entries {
				e.Ino = ""
				tr.Entries[k] = e
			}
		}
		multiName := map[string]bool{}
		for k, e := range ta.Entries {
			if e.Type == "file" && e.Nlink > 1 {
				multiName[k] = true
			}
		}
		maskSetID(multiName, ta, tb)
	}
	if d := Diff(ta, tb, 12); len(d) > 0 {
		return fmt.Sprintf("merged tree differs %s:\n    %s", when, strings.Join(d, "\n    "))
	}
	return ""
}

// finish compares the merged trees, unmounts, and compares the uppers.
func (p *pair) finish() string {
	if f := p.compareMerged("at the end"); f != "" {
		return f
	}
	if f := p.unmount(); f != "" {
		return f
	}
	ua, err := Snapshot(p.sa.Upper, SnapshotOptions{Upper: true})
	if err != nil {
		return "oracle upper: " + err.Error()
	}
	ub, err := Snapshot(p.sb.Upper, SnapshotOptions{Upper: true})
	if err != nil {
		return "upper: " + err.Error()
	}
	if p.cfg.KernelLosesInos {
		multiName := map[string]bool{}
		for _, group := range ua.Links {
			for _, path := range strings.Split(group, " = ") {
				multiName[path] = true
			}
		}
		maskSetID(multiName, ua, ub)
	}
	if d := Diff(ua, ub, 12); len(d) > 0 {
		return fmt.Sprintf("upper dir differs (as overlayfs formats it):\n    %s", strings.Join(d, "\n    "))
	}
	return ""
}

// maskSetID drops the setuid and setgid bits of the given paths in both
// trees (see KernelLosesInos).
func maskSetID(paths map[string]bool, trees ...*Tree) {
	for _, tr := range trees {
		for k, e := range tr.Entries {
			if paths[k] {
				e.Perm &^= 0o6000
				tr.Entries[k] = e
			}
		}
	}
}

// Run generates and runs c.Ops operations for c.Seed on both backends in
// lockstep and shrinks the first disagreement it finds.
func Run(c Config) Result {
	res := Result{Seed: c.Seed}
	p, err := c.open()
	if err != nil {
		res.Failure = "set-up: " + err.Error()
		return res
	}
	p.outcomes = map[string]int{}
	res.Outcomes = p.outcomes
	gen := NewGenerator(c.Seed, c.IDs)
	var ops []Op
	for i := 0; i < c.Ops && res.Failure == ""; i++ {
		op := gen.Next(p.sa.Mnt)
		ops = append(ops, op)
		res.Failure = p.apply(i, op)
		if res.Failure == "" && c.CompareEvery > 0 && (i+1)%c.CompareEvery == 0 {
			res.Failure = p.compareMerged(fmt.Sprintf("after op %d", i+1))
		}
	}
	res.OpsRun = len(ops)
	if res.Failure != "" {
		res.Failure += p.vanished()
	}
	if res.Failure == "" {
		res.Failure = p.finish()
	}
	p.close()
	if out := p.subjectOutput(); res.Failure != "" && out != "" {
		res.Failure += "\n" + c.Subject.Name() + " printed:\n" + out
	}
	if res.Failure != "" && c.ShrinkTime > 0 {
		c.logf("seed %d: %s; shrinking %d ops", c.Seed, firstLine(res.Failure), len(ops))
		res.Repro, res.ReproFailure, res.ShrinkNote = c.Shrink(ops)
	}
	return res
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// Replay runs ops on fresh copies of both stacks and returns how they
// disagree, or "" when they agree.
func (c *Config) Replay(ops []Op) string {
	p, err := c.open()
	if err != nil {
		return "set-up: " + err.Error()
	}
	defer p.close()
	for i, op := range ops {
		if f := p.apply(i, op); f != "" {
			return f
		}
	}
	return p.finish()
}

// Shrink reduces ops with c.Replay as the judge, keeping only candidates
// that fail the same way (FailureKind) as the whole list, so the result
// reproduces this bug and not another one met on the way; see ShrinkOps.
func (c *Config) Shrink(ops []Op) ([]Op, string, string) {
	kind := ""
	return ShrinkOps(ops, c.ShrinkTime, func(o []Op) string {
		f := c.Replay(o)
		if kind == "" {
			kind = FailureKind(f)
		} else if FailureKind(f) != kind {
			return ""
		}
		return f
	})
}

// FailureKind names the kind of a failure without its paths and numbers,
// so one bug met by many seeds counts once: "rename: kernel ok, strata
// ENOENT", "merged tree: mtime", "upper dir: missing".
func FailureKind(f string) string {
	lines := strings.Split(f, "\n")
	first := lines[0]
	head := first
	for _, tree := range []string{"merged tree", "upper dir"} {
		if strings.HasPrefix(first, tree+" differs") {
			head = tree
		}
	}
	if len(lines) > 1 && head != first || strings.HasSuffix(first, ":") {
		if len(lines) < 2 {
			return head
		}
		return stripDigits(strings.TrimSuffix(head, ":")) + ": " + diffField(strings.TrimSpace(lines[1]))
	}
	if strings.HasPrefix(first, "op ") {
		if i := strings.Index(first, "("); i >= 0 {
			if j := strings.Index(first[i:], "): "); j > 0 {
				return strings.Fields(first[i+1 : i+j])[0] + ": " + first[i+j+3:]
			}
		}
	}
	return stripDigits(first)
}

// diffField is what a Diff line is about: "mtime", "missing", "hard links".
func diffField(d string) string {
	if strings.HasPrefix(d, "hard links") || strings.HasPrefix(d, "distinct st_dev") {
		f := strings.Fields(d)
		return f[0] + " " + strings.TrimSuffix(f[1], ":")
	}
	if _, rest, ok := strings.Cut(d, ": "); ok && rest != "" {
		return strings.Fields(rest)[0]
	}
	return d
}

func stripDigits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, s)
}

// ShrinkOps reduces ops by delta debugging (ddmin): it drops chunks,
// halving their size when no chunk can go, and keeps any smaller list for
// which fails still reports a failure. It stops after budget. It returns
// the list, its failure, and a note on how far it got.
func ShrinkOps(ops []Op, budget time.Duration, fails func([]Op) string) ([]Op, string, string) {
	deadline := time.Now().Add(budget)
	failure := fails(ops)
	if failure == "" {
		return ops, "", "did not reproduce on a fresh replay (flaky?)"
	}
	runs := 1
	n := 2
	for len(ops) >= 2 {
		if time.Now().After(deadline) {
			return ops, failure, fmt.Sprintf("shrink stopped at its %v budget after %d replays", budget, runs)
		}
		chunk := (len(ops) + n - 1) / n
		reduced := false
		for start := 0; start < len(ops); start += chunk {
			end := min(start+chunk, len(ops))
			cand := append(append([]Op(nil), ops[:start]...), ops[end:]...)
			runs++
			if f := fails(cand); f != "" {
				ops, failure = cand, f
				n = max(n-1, 2)
				reduced = true
				break
			}
			if time.Now().After(deadline) {
				break
			}
		}
		if !reduced {
			if chunk == 1 {
				break
			}
			n = min(n*2, len(ops))
		}
	}
	return ops, failure, fmt.Sprintf("1-minimal after %d replays", runs)
}

// Coverage formats Outcomes summed over results, most frequent first.
func Coverage(results []Result) string {
	sum := map[string]int{}
	for _, r := range results {
		for k, v := range r.Outcomes {
			sum[k] += v
		}
	}
	keys := make([]string, 0, len(sum))
	for k := range sum {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return sum[keys[i]] > sum[keys[j]] || sum[keys[i]] == sum[keys[j]] && keys[i] < keys[j]
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s:%d ", k, sum[k])
	}
	return b.String()
}
