package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/bench"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

var benchFlags struct {
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

var benchCmd = &cobra.Command{
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

Backends: ` + strings.Join(backendNames(), ", ") + `
Workloads: ` + strings.Join(bench.WorkloadNames(), ", "),
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		cfg, err := benchConfig(cmd)
		if err != nil {
			return err
		}
		return runBench(cfg)
	},
}

func backendNames() []string {
	var out []string
	for _, b := range bench.AllBackends() {
		out = append(out, b.Name)
	}
	return out
}

func init() {
	f := benchCmd.Flags()
	f.StringSliceVar(&benchFlags.backends, "backends", nil, "backends to run, comma-separated (default: all; --quick: no strata variants)")
	f.StringSliceVar(&benchFlags.workloads, "workloads", nil, "workloads to run, comma-separated (default: all; --quick: the quick set)")
	f.IntVar(&benchFlags.runs, "runs", 0, "runs per backend and workload (default 5, --quick 2)")
	f.StringVar(&benchFlags.tree, "tree", "debian", "lower tree: debian (debootstrap minbase, cached), synthetic, or a directory")
	f.BoolVar(&benchFlags.quick, "quick", false, "short run: fewer workloads, backends and runs, 256 MiB big file")
	f.StringVar(&benchFlags.out, "out", "", "write report.json, report.md and chart.svg into this directory")
	f.BoolVar(&benchFlags.json, "json", false, "print the report as JSON instead of the table")
	f.StringVar(&benchFlags.mode, "mode", "both", "root, rootless or both")
	f.BoolVar(&benchFlags.rootless, "rootless", false, "rootless only (same as --mode rootless)")
	f.StringVar(&benchFlags.user, "user", "stratatest", "unprivileged user for rootless runs when run as root")
	f.StringVar(&benchFlags.cacheDir, "cache-dir", "/var/cache/strata-bench", "where lowers are built and kept between runs")
	f.StringVar(&benchFlags.scratch, "scratch-dir", "/var/tmp/strata-bench", "uppers and mount points (best on the cache dir's filesystem)")
	f.Int64Var(&benchFlags.seed, "seed", 42, "seed for generated trees and random choices")
	f.IntVar(&benchFlags.synFiles, "synthetic-files", 10000, "files in the synthetic tree")
	f.IntVar(&benchFlags.synDirs, "synthetic-dirs", 0, "dirs in the synthetic tree (default files/10)")
	f.Int64Var(&benchFlags.bigMiB, "big-mib", 0, "size of the big file in MiB (default 1024, --quick 256)")
	f.IntVar(&benchFlags.files1M, "walk-files", 1000000, "files in the walk-1m tree")
	f.IntVar(&benchFlags.buildUnits, "build-units", 8, "C files the build workload compiles")
	f.BoolVar(&benchFlags.allVariants, "all-variants", false, "run strata's feature-off variants on every workload (by default: read-path workloads and copyup-small)")
	rootCmd.AddCommand(benchCmd)
	registerReexec(bench.WorkerEnv, benchWorker)
}

func benchConfig(cmd *cobra.Command) (bench.Config, error) {
	bf := benchFlags
	exe, err := os.Executable()
	if err != nil {
		return bench.Config{}, fmt.Errorf("find strata binary: %w", err)
	}
	cfg := bench.Config{
		Backends: bf.backends, Workloads: bf.workloads, Runs: bf.runs, Tree: bf.tree, Quick: bf.quick,
		User: bf.user, Strata: exe, CacheDir: bf.cacheDir, Scratch: bf.scratch, Seed: bf.seed,
		Synthetic: bench.SyntheticSpec{Files: bf.synFiles, Dirs: bf.synDirs},
		BigSize:   bf.bigMiB << 20, Files1M: bf.files1M, BuildUnits: bf.buildUnits, AllVariants: bf.allVariants,
		Command: "strata " + strings.Join(os.Args[1:], " "),
	}
	mode := bf.mode
	if bf.rootless {
		if cmd.Flags().Changed("mode") && mode != "rootless" {
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
	if cfg.Runs < 0 || bf.synFiles <= 0 || bf.bigMiB < 0 {
		return cfg, fmt.Errorf("--runs, --synthetic-files and --big-mib must be positive")
	}
	return cfg, cfg.Check()
}

func runBench(cfg bench.Config) error {
	cfg.Log = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "strata bench: "+format+"\n", args...) }
	var p *mpb.Progress
	if term.IsTerminal(int(os.Stderr.Fd())) {
		p = mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
		var bar *mpb.Bar
		var what atomic.Pointer[string] // read by mpb's render goroutine
		cfg.Progress = func(done, total int, w string) {
			if bar == nil {
				bar = p.AddBar(int64(total), mpb.PrependDecorators(decor.CountersNoUnit("%d/%d runs "), decor.Elapsed(decor.ET_STYLE_MMSS)),
					mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
						if s := what.Load(); s != nil {
							return " " + *s
						}
						return ""
					})))
			}
			what.Store(&w)
			bar.SetCurrent(int64(done))
		}
	}
	// A signal ends the benchmark after the current run, so its mounts
	// are taken down and what ran so far is still written.
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "strata bench: stopping after the current run")
		close(stop)
	}()
	cfg.Stop = stop
	rep, err := bench.Run(cfg)
	if p != nil {
		p.Shutdown()
	}
	if rep == nil {
		return err
	}
	if benchFlags.out != "" {
		if werr := rep.WriteDir(benchFlags.out); werr != nil {
			return werr
		}
		defer fmt.Fprintf(os.Stderr, "strata bench: wrote %s/report.json, report.md, chart.svg\n", benchFlags.out)
	}
	if benchFlags.json {
		if jerr := rep.WriteJSON(os.Stdout); jerr != nil {
			return jerr
		}
	} else {
		rep.WriteTable(os.Stdout)
	}
	return err
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
