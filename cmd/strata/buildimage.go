package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/image"
)

// newImageCmd is `strata image`, the group of image tools.
func newImageCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Image tools (build-default)",
	}
	cmd.AddCommand(newBuildDefaultCmd(g))
	return cmd
}

func newBuildDefaultCmd(g *globalOptions) *cobra.Command {
	var busybox string
	cmd := &cobra.Command{
		Use:   "build-default [NAME]",
		Short: "Build the project's default image from Debian's busybox-static",
		Long: `Build a small image from a static busybox (Debian's busybox-static package,
/bin/busybox): the binary, a symlink per applet, /etc/passwd and /etc/group
with root and user (1000), /tmp. Named ` + image.DefaultImageName + ` unless NAME is given.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openImageStore()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			img, err := store.BuildDefault(busybox, name)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), img.Name(), img.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&busybox, "busybox", image.DefaultBusybox, "static busybox `BINARY` to use")
	return cmd
}
