package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/rootless"
)

func newCommitCmd(g *globalOptions) *cobra.Command {
	pause := true
	cmd := &cobra.Command{
		Use:   "commit CONTAINER NAME",
		Short: "Make a new image from a container's changes",
		Long: `Turn the container's writable layer into a new layer on top of its image and
name the result NAME. Deleted files become OCI whiteouts; /etc/hosts,
/etc/resolv.conf and /etc/hostname, which strata writes per container, are
left out. Symlinks are recorded as symlinks, never followed.

A running container is paused for the commit (as podman commit does by
default): its processes get SIGSTOP before the layer is read and SIGCONT
after, also when the commit fails or is interrupted. --pause=false reads
the layer of a running container as it is at that moment.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openImageStore()
			if err != nil {
				return err
			}
			// A commit ended by ^C, a TERM or a HUP must not leave the
			// container stopped: the context tells Commit to resume it.
			// INT and TERM cancel cmd.Context() already.
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGHUP)
			defer stop()
			img, err := rootless.Commit(ctx, store, g.storeRoot(), args[0], args[1], pause)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), img.ID)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&pause, "pause", "p", true, "stop the container's processes while the commit reads its changes")
	return cancelledBySignals(cmd)
}

// tarUpperChild is the re-exec entry rootless.Commit starts to write a
// container's upper as a layer tar from inside a user namespace.
func tarUpperChild() {
	if err := rootless.TarUpperChild(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "strata:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
