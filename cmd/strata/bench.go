package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/bench"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

type benchFlags struct {
	backends, workloads []string
	runs                int
	tree                string
	quick, json         bool
	out                 string
	mode                string
	rootless            bool
	user                string
	cacheDir, scratch   string
	seed                int64
	synFiles, synDirs   int
	bigMiB              int64
	files1M             int
	buildUnits          int
	allVariants         bool
}

// benchRequest is what `strata bench` was asked to do: a checked
// configuration and where the report goes.
type benchRequest struct {
	cfg  bench.Config
	out  string // --out: a directory for report.json, report.md, chart.svg
	json bool
}

// newBenchCmd returns `strata bench`; run does the work (runBench, or a
// stand-in when a test checks the flags).
func newBenchCmd(run func(*cobra.Command, benchRequest) error) *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure strata against the native dir, kernel overlayfs and fuse-overlayfs",
		Long: `bench mounts the same lower with every backend, as root and rootless (in a
user namespace, as the test user), runs each workload several times
interleaved across backends, and reports medians with ratios to the native
dir and to kernel overlayfs.

  strata bench --quick                 a few minutes; prints the table
  strata bench --out DIR               full run; DIR gets report.json, report.md, chart.svg
  strata bench --workloads walk-1m     server memory across a walk of 1M files (only when named)
  strata bench --backends kernel,strata --workloads stat-warm,read-warm --runs 9

Backends: ` + strings.Join(bench.BackendNames(), ", ") + `
Workloads: ` + strings.Join(bench.WorkloadNames(), ", "),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.config(cmd.Flags().Changed("mode"))
			if err != nil {
				return err
			}
			return run(cmd, benchRequest{cfg: cfg, out: f.out, json: f.json})
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.backends, "backends", nil, "backends to run, comma-separated (default: all; --quick: no strata variants)")
	fl.StringSliceVar(&f.workloads, "workloads", nil, "workloads to run, comma-separated (default: all; --quick: the quick set)")
	fl.IntVar(&f.runs, "runs", 0, fmt.Sprintf("runs per backend and workload (default %d, --quick %d)", bench.DefaultRuns, bench.QuickRuns))
	fl.StringVar(&f.tree, "tree", bench.DefaultTree, "lower tree: debian (debootstrap minbase, cached), synthetic, or a directory")
	fl.BoolVar(&f.quick, "quick", false, fmt.Sprintf("short run: fewer workloads, backends and runs, %d MiB big file", bench.QuickBigSize>>20))
	fl.StringVar(&f.out, "out", "", "write report.json, report.md and chart.svg into this directory")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON instead of the table")
	fl.StringVar(&f.mode, "mode", "both", "root, rootless or both")
	fl.BoolVar(&f.rootless, "rootless", false, "rootless only (same as --mode rootless)")
	fl.StringVar(&f.user, "user", bench.DefaultUser, "unprivileged user for rootless runs when run as root")
	fl.StringVar(&f.cacheDir, "cache-dir", bench.DefaultCacheDir, "where lowers are built and kept between runs")
	fl.StringVar(&f.scratch, "scratch-dir", bench.DefaultScratch, "uppers and mount points (best on the cache dir's filesystem)")
	fl.Int64Var(&f.seed, "seed", bench.DefaultSeed, "seed for generated trees and random choices")
	fl.IntVar(&f.synFiles, "synthetic-files", bench.DefaultSyntheticFiles, "files in the synthetic tree")
	fl.IntVar(&f.synDirs, "synthetic-dirs", 0, "dirs in the synthetic tree (default files/10)")
	fl.Int64Var(&f.bigMiB, "big-mib", 0, fmt.Sprintf("size of the big file in MiB (default %d, --quick %d)", bench.DefaultBigSize>>20, bench.QuickBigSize>>20))
	fl.IntVar(&f.files1M, "walk-files", bench.DefaultFiles1M, "files in the walk-1m tree")
	fl.IntVar(&f.buildUnits, "build-units", bench.DefaultBuildUnits, "C files the build workload compiles")
	fl.BoolVar(&f.allVariants, "all-variants", false, "run strata's feature-off variants on every workload (by default: read-path workloads and copyup-small)")
	return cancelledBySignals(cmd)
}

// config maps the flags onto a checked bench.Config; modeSet says whether
// --mode was given, which --rootless must then agree with.
func (f benchFlags) config(modeSet bool) (bench.Config, error) {
	exe, err := os.Executable()
	if err != nil {
		return bench.Config{}, fmt.Errorf("find strata binary: %w", err)
	}
	cfg := bench.Config{
		Backends: f.backends, Workloads: f.workloads, Runs: f.runs, Tree: f.tree, Quick: f.quick,
		User: f.user, Strata: exe, CacheDir: f.cacheDir, Scratch: f.scratch, Seed: f.seed,
		Synthetic: bench.SyntheticSpec{Files: f.synFiles, Dirs: f.synDirs},
		BigSize:   f.bigMiB << 20, Files1M: f.files1M, BuildUnits: f.buildUnits, AllVariants: f.allVariants,
		Command: "strata " + strings.Join(os.Args[1:], " "),
	}
	mode := f.mode
	if f.rootless {
		if modeSet && mode != "rootless" {
			return cfg, fmt.Errorf("--rootless contradicts --mode %s", mode)
		}
		mode = "rootless"
	}
	switch mode {
	case "both":
		cfg.Root, cfg.Rootless = true, true
	case "root":
		cfg.Root = true
	case "rootless":
		cfg.Rootless = true
	default:
		return cfg, fmt.Errorf("--mode %q: want root, rootless or both", mode)
	}
	if cfg.Runs < 0 || f.synFiles <= 0 || f.bigMiB < 0 {
		return cfg, fmt.Errorf("--runs, --synthetic-files and --big-mib must be positive")
	}
	return cfg, cfg.Check()
}

// runBench runs the benchmark until it is done or the command's context
// is cancelled (Ctrl-C, SIGTERM): then it stops after the current run, so
// its mounts are taken down and what ran so far is still written.
func runBench(cmd *cobra.Command, r benchRequest) error {
	ctx := cmd.Context()
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	cfg := r.cfg
	cfg.Log = func(format string, args ...any) { fmt.Fprintf(stderr, "strata bench: "+format+"\n", args...) }
	p := benchProgress(&cfg, stderr)
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stderr, "strata bench: stopping after the current run")
		case <-finished:
		}
	}()
	rep, err := bench.Run(ctx, cfg)
	if p != nil {
		p.Shutdown()
	}
	if rep == nil {
		return err
	}
	if r.out != "" {
		if werr := rep.WriteDir(r.out); werr != nil {
			return werr
		}
		defer fmt.Fprintf(stderr, "strata bench: wrote %s/report.json, report.md, chart.svg\n", r.out)
	}
	if r.json {
		if jerr := rep.WriteJSON(stdout); jerr != nil {
			return jerr
		}
	} else {
		rep.WriteTable(stdout)
	}
	return err
}

// benchProgress draws a bar of runs done on w when it is a terminal, and
// returns the bars' container to shut down (nil when there is none).
func benchProgress(cfg *bench.Config, w io.Writer) *mpb.Progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	p := mpb.New(mpb.WithOutput(f), mpb.WithWidth(40))
	var bar *mpb.Bar
	var what atomic.Pointer[string] // read by mpb's render goroutine
	cfg.Progress = func(done, total int, s string) {
		if bar == nil {
			bar = p.AddBar(int64(total), mpb.PrependDecorators(decor.CountersNoUnit("%d/%d runs "), decor.Elapsed(decor.ET_STYLE_MMSS)),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
					if s := what.Load(); s != nil {
						return " " + *s
					}
					return ""
				})))
		}
		what.Store(&s)
		bar.SetCurrent(int64(done))
	}
	return p
}

// benchWorker is the rootless side of the benchmark: started by bench in a
// user namespace, it reads jobs on stdin and answers on stdout.
func benchWorker() {
	if err := bench.WorkerMain(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "strata bench worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
