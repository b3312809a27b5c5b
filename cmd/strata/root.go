package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/image"
	"github.com/strata-run/strata/rootless"
)

// globalOptions are the root's persistent flags, which every command sees.
type globalOptions struct {
	logLevel string
	root     string // --root; empty: rootless.DefaultRoot()
}

// storeRoot is --root or the default, so that image and container
// commands agree on one store.
func (g *globalOptions) storeRoot() string {
	if g.root != "" {
		return g.root
	}
	return rootless.DefaultRoot()
}

// openImageStore opens the image store at --root, with the layer size
// limit $STRATA_MAX_LAYER_SIZE sets, if any.
func (g *globalOptions) openImageStore() (*image.Store, error) {
	s, err := image.Open(g.storeRoot())
	if err != nil {
		return nil, err
	}
	if v := os.Getenv(envMaxLayerSize); v != "" {
		n, err := parseSize(v)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %w", envMaxLayerSize, v, err)
		}
		s.MaxLayerSize = n
	}
	return s, nil
}

func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	cmd := &cobra.Command{
		Use:   "strata",
		Short: "Union filesystem and rootless containers in one binary",
		Long: `strata stacks read-only layers under a writable upper directory with a FUSE
union filesystem that writes the same on-disk format as kernel overlayfs, and
runs containers on top of it as an ordinary user: no root, no daemon.

Common tasks:
  strata mount -o lowerdir=A:B,upperdir=U,workdir=W MNT   stack layers at MNT
  strata umount MNT                                        take it down again
  strata run --rootfs DIR -- CMD                           run a container
  strata bench --quick                                     FUSE vs kernel overlayfs`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if !watchesContext(cmd) {
				// main diverts SIGINT and SIGTERM into the context; a
				// command that never looks at it gets Go's default back,
				// so a signal still ends it at once. Commands that handle
				// signals themselves (run, mount -f) register their own.
				signal.Reset(os.Interrupt, syscall.SIGTERM)
			}
			return setupLogging(g.logLevel, cmd.ErrOrStderr())
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.logLevel, "log-level", "warn", "log verbosity: debug, info, warn or error")
	pf.StringVar(&g.root, "root", "", "store directory for images and containers (default $XDG_DATA_HOME/strata or ~/.local/share/strata)")

	cmd.AddCommand(
		newBenchCmd(runBench),
		newCommitCmd(g),
		newDiffCmd(g),
		newDoctorCmd(),
		newImageCmd(g),
		newImagesCmd(g),
		newImportCmd(g),
		newInspectCmd(g),
		newLoadCmd(g),
		newMountCmd(runMount),
		newMountImageCmd(g),
		newPruneCmd(g),
		newPsCmd(g),
		newPullCmd(g),
		newRmCmd(g),
		newRmiCmd(g),
		newRunCmd(g, rootless.Run),
		newStatsCmd(g),
		newTagCmd(g),
		newUmountCmd(),
		newVersionCmd(),
	)
	return cmd
}

// contextAnnotation marks a command that watches cmd.Context(): a signal
// cancels it and it winds down in its own way.
const contextAnnotation = "strata/watches-context"

func cancelledBySignals(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[contextAnnotation] = "yes"
	return cmd
}

func watchesContext(cmd *cobra.Command) bool { return cmd.Annotations[contextAnnotation] != "" }

func setupLogging(level string, w io.Writer) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})))
	return nil
}

// withExitCode makes err leave strata with code; a nil err with a non-zero
// code exits silently (the child already said what happened).
func withExitCode(code int, err error) error { return &rootless.ExitError{Code: code, Err: err} }

// execute runs the CLI with args and returns the process exit status:
// that of a *rootless.ExitError (so `strata run` passes a container's
// status through, and strata's own failures use Docker's 125), else 1.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *rootless.ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(stderr, "strata:", strings.TrimSpace(ee.Err.Error()))
		}
		return ee.Code
	}
	fmt.Fprintln(stderr, "strata:", err)
	return 1
}

// interrupted adds the signal that cancelled ctx to err, unless err names
// it already (net/http does): many libraries say only "context canceled".
func interrupted(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if cause == nil || cause == context.Canceled || !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), cause.Error()) {
		return err
	}
	return fmt.Errorf("%w (%v)", err, cause)
}
