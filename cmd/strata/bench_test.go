package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/bench"
)

// benchRequestFor runs `strata bench ARGS` up to the point where it would
// start measuring, and returns what it would have run.
func benchRequestFor(t *testing.T, args ...string) (benchRequest, error) {
	t.Helper()
	var got *benchRequest
	cmd := newBenchCmd(func(_ *cobra.Command, r benchRequest) error { got = &r; return nil })
	cmd.SetArgs(args)
	cmd.SetOut(&strings.Builder{})
	cmd.SetErr(&strings.Builder{})
	if err := cmd.Execute(); err != nil {
		return benchRequest{}, err
	}
	if got == nil {
		t.Fatalf("strata bench %q: run was not called", args)
	}
	return *got, nil
}

func TestBenchFlags(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the root backends only check out as root")
	}
	tree := t.TempDir()
	r, err := benchRequestFor(t, "--backends", "kernel,strata", "--workloads", "stat-warm,read-warm",
		"--runs", "9", "--tree", tree, "--big-mib", "64", "--seed", "7", "--synthetic-files", "50",
		"--synthetic-dirs", "5", "--walk-files", "1000", "--build-units", "2", "--all-variants",
		"--user", "nobody", "--cache-dir", "/c", "--scratch-dir", "/s", "--out", "/o", "--json", "--mode", "root")
	if err != nil {
		t.Fatal(err)
	}
	c := r.cfg
	if !reflect.DeepEqual(c.Backends, []string{"kernel", "strata"}) || !reflect.DeepEqual(c.Workloads, []string{"stat-warm", "read-warm"}) ||
		c.Runs != 9 || c.Tree != tree || c.BigSize != 64<<20 || c.Seed != 7 || c.Synthetic.Files != 50 || c.Synthetic.Dirs != 5 ||
		c.Files1M != 1000 || c.BuildUnits != 2 || !c.AllVariants || c.User != "nobody" || c.CacheDir != "/c" || c.Scratch != "/s" ||
		!c.Root || c.Rootless || c.Quick {
		t.Errorf("config %+v", c)
	}
	if r.out != "/o" || !r.json {
		t.Errorf("out %q json %v, want /o and true", r.out, r.json)
	}
	if exe, _ := os.Executable(); c.Strata != exe || !strings.HasPrefix(c.Command, "strata ") {
		t.Errorf("strata binary %q command %q: want %q and the command line", c.Strata, c.Command, exe)
	}
}

// The flags' defaults are the bench package's.
func TestBenchDefaults(t *testing.T) {
	r, err := benchRequestFor(t, "--rootless")
	if err != nil {
		t.Fatal(err)
	}
	c := r.cfg
	if c.Tree != bench.DefaultTree || c.User != bench.DefaultUser || c.CacheDir != bench.DefaultCacheDir ||
		c.Scratch != bench.DefaultScratch || c.Seed != bench.DefaultSeed || c.Synthetic.Files != bench.DefaultSyntheticFiles ||
		c.Files1M != bench.DefaultFiles1M || c.BuildUnits != bench.DefaultBuildUnits || c.Root || !c.Rootless {
		t.Errorf("config %+v does not have the bench package's defaults", c)
	}
}

func TestBenchModes(t *testing.T) {
	for _, c := range []struct {
		args           []string
		root, rootless bool
		err            string
	}{
		{[]string{"--mode", "rootless"}, false, true, ""},
		{[]string{"--rootless", "--mode", "rootless"}, false, true, ""},
		{[]string{"--rootless", "--mode", "both"}, false, false, "--rootless contradicts --mode both"},
		{[]string{"--mode", "sideways"}, false, false, `--mode "sideways"`},
		{[]string{"--rootless", "--runs", "-1"}, false, false, "must be positive"},
		{[]string{"--rootless", "--backends", "nosuch"}, false, false, `unknown backend "nosuch"`},
		{[]string{"--rootless", "--workloads", "nosuch"}, false, false, `unknown workload "nosuch"`},
	} {
		r, err := benchRequestFor(t, c.args...)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("strata bench %q: err %v, want %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil || r.cfg.Root != c.root || r.cfg.Rootless != c.rootless {
			t.Errorf("strata bench %q: root %v rootless %v err %v; want %v %v", c.args, r.cfg.Root, r.cfg.Rootless, err, c.root, c.rootless)
		}
	}
}
