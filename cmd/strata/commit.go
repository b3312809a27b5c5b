package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/image"
)

func newCommitCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "commit CONTAINER NAME",
		Short: "Make a new image from a container's changes",
		Long: `Turn the container's writable layer into a new layer on top of its image and
name the result NAME. Deleted files become OCI whiteouts; /etc/hosts,
/etc/resolv.conf and /etc/hostname, which strata writes per container, are
left out.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openImageStore()
			if err != nil {
				return err
			}
			dir, err := store.FindContainer(args[0])
			if err != nil {
				return err
			}
			img, err := store.Commit(dir, args[1])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), img.ID)
			return nil
		},
	}
}

// tarUpperChild is the re-exec entry commit's store starts to write a
// container's upper as a layer tar from inside a user namespace.
func tarUpperChild() {
	if err := image.TarUpperChild(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "strata:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
