package bench_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-run/strata/bench"
	"github.com/strata-run/strata/tests/harness"
)

// worldDir makes a temporary dir the rootless worker (the test user) can
// reach; t.TempDir's are private to root.
func worldDir(t *testing.T, pattern string) string {
	t.Helper()
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// runBench runs the built strata bench with args on a tiny synthetic tree
// and returns its parsed --json report.
func runBench(t *testing.T, bin, cache, scratch string, args ...string) *bench.Report {
	t.Helper()
	args = append([]string{"bench", "--tree", "synthetic", "--synthetic-files", "150", "--big-mib", "4",
		"--walk-files", "500", "--build-units", "2", "--runs", "1", "--cache-dir", cache, "--scratch-dir", scratch, "--json"}, args...)
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("strata %v: %v\n%s", args, err, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, stdout.String())
	}
	return &rep
}

// checkReported fails for every cell that is missing or neither ran nor
// says why it did not.
func checkReported(t *testing.T, rep *bench.Report, backends, workloads, modes []string) {
	t.Helper()
	for _, b := range backends {
		for _, w := range workloads {
			for _, m := range modes {
				c := rep.Cell(w, b, m)
				switch {
				case c == nil:
					t.Errorf("%s %s %s: missing from the report", w, m, b)
				case c.Ran():
				case c.NotRun == "" && c.Error == "":
					t.Errorf("%s %s %s: neither ran nor says why", w, m, b)
				}
			}
		}
	}
}

// TestBenchTinyTree runs every backend, as root and rootless, on a few
// workloads, then every workload on the three main backends, all on a tiny
// synthetic tree, and checks the outputs are complete and well-formed. It
// judges no timings.
func TestBenchTinyTree(t *testing.T) {
	harness.RequireRoot(t)
	harness.User(t)
	bin := harness.Binary(t)
	cache, scratch, out := worldDir(t, "strata-bench-cache-"), worldDir(t, "strata-bench-scratch-"), t.TempDir()
	harness.NoLeftoverMounts(t, scratch)

	var all []string
	for _, b := range bench.AllBackends() {
		all = append(all, b.Name)
	}
	few := []string{"stat-cold", "read-warm", "copyup-small", "rm-rf"}
	rep := runBench(t, bin, cache, scratch, "--workloads", strings.Join(few, ","), "--out", out)
	if rep.Host.Kernel == "" || rep.Host.FUSEProtocol == "" {
		t.Errorf("host facts missing: %+v", rep.Host)
	}
	if len(rep.Modes) != 2 {
		t.Errorf("modes = %v, want root and rootless", rep.Modes)
	}
	checkReported(t, rep, all, few, rep.Modes)
	// The reference backends must run on any host that can run the tests.
	for _, w := range few {
		for _, b := range []string{"native", "kernel"} {
			for _, m := range rep.Modes {
				if c := rep.Cell(w, b, m); c == nil || !c.Ran() {
					t.Errorf("%s %s %s did not run: %+v", w, m, b, c)
				}
			}
		}
	}

	main := []string{"native", "kernel", "strata"}
	rep2 := runBench(t, bin, cache, scratch, "--mode", "root", "--backends", strings.Join(main, ","),
		"--workloads", strings.Join(bench.WorkloadNames(), ","))
	checkReported(t, rep2, main, bench.WorkloadNames(), []string{"root"})

	f, err := os.Open(filepath.Join(out, "chart.svg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	rects := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart.svg is not valid XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if rects < 10 {
		t.Errorf("chart.svg has only %d rects; expected bars", rects)
	}
	var fromFile bench.Report
	data, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil || json.Unmarshal(data, &fromFile) != nil {
		t.Errorf("report.json missing or does not parse: %v", err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil || !strings.Contains(string(md), "## rootless") || !strings.Contains(string(md), "FUSE protocol") {
		t.Errorf("report.md incomplete: %v\n%s", err, md)
	}
}

// TestBenchBadInput checks that mistakes are named and nothing is written.
func TestBenchBadInput(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.Binary(t)
	out := filepath.Join(t.TempDir(), "out")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--backends", "kernel,zfs"}, `unknown backend "zfs"`},
		{[]string{"--workloads", "stat-warm,fly"}, `unknown workload "fly"`},
		{[]string{"--tree", "/nonexistent/tree"}, "/nonexistent/tree"},
		{[]string{"--mode", "sideways"}, "--mode"},
	} {
		cmd := exec.Command(bin, append([]string{"bench", "--out", out}, tc.args...)...)
		msg, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("strata bench %v: succeeded, want an error", tc.args)
		}
		if !strings.Contains(string(msg), tc.want) {
			t.Errorf("strata bench %v: message %q does not name %q", tc.args, msg, tc.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("bad input still created %s", out)
	}

	u := harness.User(t)
	msg, err := u.Command(bin, "bench", "--mode", "root").CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "need root") {
		t.Errorf("unprivileged strata bench --mode root: err %v, message %q; want a clear refusal", err, msg)
	}
}
