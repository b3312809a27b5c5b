package tests

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"
	"github.com/strata-run/strata/tests/difftest"
	"github.com/strata-run/strata/tests/harness"
)

// ufPosixProbeEnv makes TestUnionfsPosixKernelProbe run the suite on kernel
// overlayfs under the dir it names.
const ufPosixProbeEnv = "STRATA_POSIX_KERNEL_PROBE_DIR"

// ufPosixStack makes one lower holding an empty dir "dir" (the suite runs
// inside it, so it is a merged dir that gets copied up) and an unrelated
// file, plus empty upper, work and mountpoint.
func ufPosixStack(t testing.TB, dir string) difftest.Stack {
	t.Helper()
	lower := filepath.Join(dir, "lower")
	for _, d := range []string{filepath.Join(lower, "dir"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "mnt")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "lowerfile"), []byte("from the lower\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return difftest.Stack{Lowers: []string{lower}, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work"), Mnt: filepath.Join(dir, "mnt")}
}

func ufPosixNames() []string {
	var names []string
	for n := range posixtest.All {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ufRunPosix mounts st with b and runs one posixtest in it. A watchdog aborts
// a hung server so the test fails instead of hanging.
func ufRunPosix(t *testing.T, b difftest.Backend, st difftest.Stack, name string) {
	m, err := b.Mount(st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	watchdog := time.AfterFunc(2*time.Minute, func() {
		t.Errorf("%s: %s hung for 2 minutes; aborting it", name, b.Name())
		m.Abort()
	})
	defer watchdog.Stop()
	posixtest.All[name](t, filepath.Join(st.Mnt, "dir"))
}

// TestUnionfsPosixKernelProbe runs go-fuse's posixtest suite on kernel
// overlayfs when TestUnionfsPosix starts it in a child process (so the
// kernel's own failures cannot fail this test binary); otherwise it does
// nothing.
func TestUnionfsPosixKernelProbe(t *testing.T) {
	dir := os.Getenv(ufPosixProbeEnv)
	if dir == "" {
		t.Log("runs only as TestUnionfsPosix's kernel probe")
		return
	}
	for _, name := range ufPosixNames() {
		t.Run(name, func(t *testing.T) {
			sub := filepath.Join(dir, "kernel-"+name)
			ufRunPosix(t, difftest.Kernel{Index: true}, ufPosixStack(t, sub), name)
		})
	}
}

// TestUnionfsPosix runs go-fuse's posixtest suite against strata mounts
// with an upper: every test that passes on kernel overlayfs on this host
// must pass on strata. Tests that fail on the kernel too are logged and
// not run on strata (the suite expects things overlayfs does not promise).
func TestUnionfsPosix(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.Binary(t)
	dir := ufScratchDir(t, "strata-posix-")

	probe := exec.Command(os.Args[0], "-test.run=^TestUnionfsPosixKernelProbe$", "-test.v", "-test.count=1", "-test.timeout=10m")
	probe.Env = append(os.Environ(), ufPosixProbeEnv+"="+dir)
	out, err := probe.CombinedOutput()
	kernelPass := map[string]bool{}
	re := regexp.MustCompile(`--- PASS: TestUnionfsPosixKernelProbe/(\S+)`)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			kernelPass[m[1]] = true
		}
	}
	if len(kernelPass) == 0 {
		t.Fatalf("the kernel probe passed nothing (%v):\n%s", err, out)
	}

	for _, name := range ufPosixNames() {
		t.Run(name, func(t *testing.T) {
			if !kernelPass[name] {
				t.Logf("does not pass on kernel overlayfs on this host (fails or skips there); not run on strata")
				return
			}
			sub := filepath.Join(dir, "strata-"+name)
			// A skip inside the suite (its "not supported" paths) is not a
			// pass: the kernel passed it, so strata must too.
			skipped := false
			t.Run("strata", func(t *testing.T) {
				t.Cleanup(func() { skipped = t.Skipped() })
				ufRunPosix(t, difftest.Strata{Bin: bin}, ufPosixStack(t, sub), name)
			})
			if skipped {
				t.Errorf("%s skips itself on strata, but passes on kernel overlayfs", name)
			}
		})
	}
}
