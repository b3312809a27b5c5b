package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-run/strata/tests/difftest"
	"github.com/strata-run/strata/tests/harness"
)

// The differential test's knobs: -seeds N (or STRATA_DIFFTEST_SEEDS),
// STRATA_DIFFTEST_OPS, STRATA_DIFFTEST_SEED0 (first seed), and
// STRATA_DIFFTEST_SHRINK (total time spent shrinking failures, e.g. "5m").
var ufDiffSeeds = flag.Int("seeds", 0, "differential test: seeds to run (default 20 as root, 8 in a user namespace)")

func init() {
	// The user-namespace side of the differential test re-executes this
	// binary; those processes run their stage and exit here.
	difftest.MaybeChild()
}

func ufEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func ufSeedList(def int) []int64 {
	n := def
	if *ufDiffSeeds > 0 {
		n = *ufDiffSeeds
	} else {
		n = ufEnvInt("STRATA_DIFFTEST_SEEDS", def)
	}
	first := ufEnvInt("STRATA_DIFFTEST_SEED0", 1)
	seeds := make([]int64, n)
	for i := range seeds {
		seeds[i] = int64(first + i)
	}
	return seeds
}

// ufFirst is at most the first n seeds: the harness self-checks need few.
func ufFirst(seeds []int64, n int) []int64 {
	return seeds[:min(n, len(seeds))]
}

func ufShrinkBudget() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("STRATA_DIFFTEST_SHRINK")); err == nil {
		return d
	}
	return 60 * time.Second
}

// ufScratchDir is a fresh dir others may enter (the test user must reach the
// lowers), removed at the end; mounts left under it fail the test.
func ufScratchDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	harness.NoLeftoverMounts(t, dir)
	return dir
}

// ufShrinker hands out the shrink budget: the first failures get it, later
// ones with the same first line are only reported.
type ufShrinker struct {
	left time.Duration
	seen map[string]bool
}

func (s *ufShrinker) budget(firstLine string) time.Duration {
	if s.seen[firstLine] || s.left <= 0 {
		return 0
	}
	return min(s.left, 60*time.Second)
}

func ufRunSeeds(t *testing.T, seeds []int64, mk func(seed int64, shrink time.Duration) difftest.Result) {
	sh := &ufShrinker{left: ufShrinkBudget(), seen: map[string]bool{}}
	failed := 0
	var all []difftest.Result
	defer func() { t.Logf("op outcomes over all seeds: %s", difftest.Coverage(all)) }()
	for _, seed := range seeds {
		// Run once without shrinking; shrink only a new kind of failure.
		res := mk(seed, 0)
		all = append(all, res)
		if res.Failure == "" {
			t.Log(res.Report())
			continue
		}
		failed++
		kind := difftest.FailureKind(res.Failure)
		if b := sh.budget(kind); b > 0 {
			start := time.Now()
			again := mk(seed, b)
			sh.left -= time.Since(start)
			if again.Failure != "" {
				res = again
			} else {
				// A race: the same seed agreed on the second run.
				res.Failure += "\n(did not happen again on a second run of this seed: timing-dependent)"
			}
		}
		sh.seen[kind] = true
		t.Errorf("%s", res.Report())
	}
	if failed > 0 {
		t.Logf("%d of %d seeds disagree with the kernel", failed, len(seeds))
	}
}

func ufRootConfig(t *testing.T, dir string, subject difftest.Backend, seed int64, shrink time.Duration) difftest.Config {
	return difftest.Config{
		Seed: seed, Ops: ufEnvInt("STRATA_DIFFTEST_OPS", 500), Dir: dir,
		IDs:          []int{0, 1000, 1001, 65534},
		Layout:       difftest.Layout{HardLinks: true},
		Oracle:       difftest.Kernel{Index: true},
		Subject:      subject,
		CompareEvery: 50,
		ShrinkTime:   shrink,
		Logf:         t.Logf,
	}
}

// TestUnionfsDiffKernelVsKernel validates the generator, replayer and
// comparer: two kernel overlay mounts over identical lowers must agree on
// every seed, so any disagreement the strata tests report is strata's.
func TestUnionfsDiffKernelVsKernel(t *testing.T) {
	harness.RequireRoot(t)
	dir := ufScratchDir(t, "strata-diffkk-")
	ufRunSeeds(t, ufFirst(ufSeedList(20), 3), func(seed int64, shrink time.Duration) difftest.Result {
		return difftest.Run(ufRootConfig(t, dir, difftest.Kernel{Index: true}, seed, shrink))
	})
}

// TestUnionfsDiffRoot replays random operations on kernel overlayfs
// (index=on, so it keeps hard links across copy-up as strata does) and on
// strata, as root, and requires equal errnos, merged trees and uppers.
func TestUnionfsDiffRoot(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.Binary(t)
	dir := ufScratchDir(t, "strata-diff-")
	ufRunSeeds(t, ufSeedList(20), func(seed int64, shrink time.Duration) difftest.Result {
		return difftest.Run(ufRootConfig(t, dir, difftest.Strata{Bin: bin}, seed, shrink))
	})
}

// TestUnionfsDiffUserns is the unprivileged side: the test user, in user
// and mount namespaces with its full /etc/subuid range mapped by
// newuidmap/newgidmap, mounts kernel overlayfs with userxattr and strata
// (the real binary, mounting FUSE directly as root of the namespace), and
// replays the same kind of operations on both.
//
// The lowers here have no hard links: inside a user namespace overlayfs
// cannot use index=on, so the kernel breaks a hard link when one name is
// copied up (documented overlayfs behaviour without index), while strata
// keeps it; comparing the two would only measure the kernel's limitation.
// Ops still make hard links in the upper, where both keep them.
func TestUnionfsDiffUserns(t *testing.T) {
	ufRunUsernsDiff(t, false)
}

// TestUnionfsDiffUsernsKernelVsKernel validates the namespace plumbing
// with the kernel on both sides.
func TestUnionfsDiffUsernsKernelVsKernel(t *testing.T) {
	ufRunUsernsDiff(t, true)
}

func ufRunUsernsDiff(t *testing.T, kernelOnly bool) {
	seeds := ufSeedList(8)
	if kernelOnly {
		seeds = ufFirst(seeds, 2)
	}
	ufRunSeeds(t, seeds, func(seed int64, shrink time.Duration) difftest.Result {
		return ufRunUsernsJob(t, difftest.Job{
			Seeds: []int64{seed}, Ops: ufEnvInt("STRATA_DIFFTEST_OPS", 500),
			CompareEvery: 50, ShrinkTime: shrink, KernelOnly: kernelOnly,
		})
	})
}

// ufRunUsernsJob runs job in the test user's user namespace (see
// difftest.MaybeChild) through a world-readable copy of this test binary,
// and returns the last result it reports.
func ufRunUsernsJob(t *testing.T, job difftest.Job) difftest.Result {
	u := harness.User(t)
	bin := harness.Binary(t)
	if _, err := exec.LookPath("newuidmap"); err != nil {
		harness.Skip(t, "newuidmap (package uidmap)")
	}
	dir := ufScratchDir(t, "strata-diffns-")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "tests.test")
	if err := ufCopyFile(self, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(work, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	job.Dir, job.Bin, job.IDs = work, bin, []int{0, 1000, 1001, 65534}
	js, _ := json.Marshal(job)
	cmd := u.Command(exe, "-test.run=^$")
	cmd.Env = append(cmd.Env, difftest.StageEnv+"=outer", difftest.JobEnv+"="+string(js))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Logf("namespace child says:\n%s", s)
	}
	if err != nil {
		t.Fatalf("namespace child: %v", err)
	}
	var res difftest.Result
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			t.Fatalf("namespace child output %q: %v", sc.Text(), err)
		}
	}
	return res
}

func ufCopyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestUnionfsDiffDetects proves the comparer and shrinker bite: kernel
// overlayfs without index breaks a lower hard link on copy-up, so against
// the index=on oracle some seed must disagree, and the shrinker must cut
// the op list to the couple of ops that show it.
func TestUnionfsDiffDetects(t *testing.T) {
	harness.RequireRoot(t)
	dir := ufScratchDir(t, "strata-diffdetect-")
	for seed := int64(1); seed <= 5; seed++ {
		cfg := ufRootConfig(t, dir, difftest.Kernel{Index: false}, seed, 60*time.Second)
		res := difftest.Run(cfg)
		if res.Failure == "" {
			continue
		}
		t.Logf("index=off vs index=on, as expected:\n%s", res.Report())
		if res.ReproFailure == "" || len(res.Repro) > 3 {
			t.Fatalf("shrinker did not reduce the failure to at most 3 ops: %s", res.Report())
		}
		return
	}
	t.Fatal("no seed showed the index=off hard-link difference: the comparer is blind")
}

// TestUnionfsDiffReplay replays the op list in STRATA_DIFFTEST_REPLAY (the
// JSON a failing seed prints) on kernel overlayfs and strata as root, and
// fails if they disagree; STRATA_DIFFTEST_USERNS=1 replays it in a user
// namespace instead. Without the variable it does nothing: it is the tool
// for reproducing a reported failure.
func TestUnionfsDiffReplay(t *testing.T) {
	spec := os.Getenv("STRATA_DIFFTEST_REPLAY")
	if spec == "" {
		t.Log("set STRATA_DIFFTEST_REPLAY to a failing seed's op list to replay it")
		return
	}
	var ops []difftest.Op
	if err := json.Unmarshal([]byte(spec), &ops); err != nil {
		t.Fatalf("STRATA_DIFFTEST_REPLAY: %v", err)
	}
	t.Logf("replaying:\n%s", difftest.FormatOps(ops))
	if os.Getenv("STRATA_DIFFTEST_USERNS") == "1" {
		if res := ufRunUsernsJob(t, difftest.Job{Replay: ops}); res.Failure != "" {
			t.Errorf("kernel and strata disagree: %s", res.Failure)
		}
		return
	}
	harness.RequireRoot(t)
	cfg := ufRootConfig(t, ufScratchDir(t, "strata-replay-"), difftest.Strata{Bin: harness.Binary(t)}, 0, 0)
	if f := cfg.Replay(ops); f != "" {
		t.Errorf("kernel and strata disagree: %s", f)
	}
}
