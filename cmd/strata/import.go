package main

import (
	"fmt"

	"github.com/strata-run/strata/image"
	"github.com/strata-run/strata/rootless"

	"github.com/spf13/cobra"
)

func newImportCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "import TARBALL|DIR NAME",
		Short: "Make a one-layer image from a root filesystem",
		Long: `Make a one-layer image named NAME from a root filesystem: a directory, or a
tar (plain, gzip or zstd). Files you own become root's, as they look inside a
rootless container. The image gets PATH and runs /bin/sh by default.`,
		Example: `  strata import rootfs.tar.gz myimage:latest
  strata import ./rootfs myimage`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openImageStore()
			if err != nil {
				return err
			}
			uids, gids, err := rootless.ImportIDs()
			if err != nil {
				return err
			}
			img, err := store.Import(args[0], args[1], image.LayerOptions{UIDs: uids, GIDs: gids})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), img.ID)
			return nil
		},
	}
}
