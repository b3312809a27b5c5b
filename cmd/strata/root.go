package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// exitError carries a specific exit status out of a command, so that
// `strata run` can pass a container's status through and so that strata's
// own failures can use Docker's 125.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// withExitCode makes err leave strata with code; a nil err with a non-zero
// code exits silently (the child already said what happened).
func withExitCode(code int, err error) error { return &exitError{code: code, err: err} }

var rootCmd = &cobra.Command{
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
		return setupLogging(logLevel)
	},
}

var logLevel string

func init() {
	rootCmd.PersistentFlags().StringVar(&logLevel, "log-level", "warn", "log verbosity: debug, info, warn or error")
}

func setupLogging(level string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
	return nil
}

// execute runs the CLI and returns the process exit status.
func execute(args []string) int {
	rootCmd.SetArgs(args)
	err := rootCmd.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "strata:", strings.TrimSpace(ee.err.Error()))
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "strata:", err)
	return 1
}
