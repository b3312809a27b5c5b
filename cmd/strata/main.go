// Command strata is a FUSE union filesystem and a rootless container runtime
// in one static binary.
//
// main stays thin: it routes re-exec entry points (processes strata starts of
// itself inside new namespaces) before cobra parses anything, because those
// processes must not run the CLI again, and then hands over to the root command.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/strata-run/strata/bench"
	"github.com/strata-run/strata/rootless"
)

// reexecEntries are the hidden entry points: a re-exec of /proc/self/exe
// with one of these variables set runs the entry instead of the CLI.
var reexecEntries = []struct {
	env   string
	entry func()
}{
	{rootless.EnvChild, func() { os.Exit(rootless.Child()) }},
	{rootless.EnvInit, func() { os.Exit(rootless.Init()) }},
	{bench.WorkerEnv, benchWorker},
	{rootless.EnvTarUpper, tarUpperChild},
}

func main() {
	for _, e := range reexecEntries {
		if _, ok := os.LookupEnv(e.env); ok {
			e.entry()
			return
		}
	}
	// One context for the whole run: Ctrl-C or SIGTERM cancels it, and
	// the commands that watch it (pull, bench, mount-image, commit) wind
	// down.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, mountProgramArgs(os.Args), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// mountProgramArgs turns fuse-overlayfs's argv into strata's: containers-
// storage runs its overlay.mount_program as `PROGRAM -o OPTS MNT`, with no
// subcommand, and users link strata in as fuse-overlayfs. Both mean
// `strata mount -o OPTS MNT`; any other argv is strata's own.
func mountProgramArgs(argv []string) []string {
	args := argv[1:]
	asFuseOverlayfs := filepath.Base(argv[0]) == "fuse-overlayfs"
	if len(args) > 0 && (asFuseOverlayfs || strings.HasPrefix(args[0], "-o")) {
		if args[0] == "--version" || args[0] == "-V" {
			return []string{"version"}
		}
		return append([]string{"mount"}, args...)
	}
	return args
}
