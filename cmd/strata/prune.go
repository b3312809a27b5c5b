package main

import (
	"fmt"

	"github.com/strata-run/strata/rootless"

	"github.com/spf13/cobra"
)

func newPruneCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Remove layers no image or container uses",
		Long: `Remove unpacked layers that no image and no container uses, blobs no image
refers to, and leftovers of interrupted pulls. Waits for pulls and loads in
progress to finish first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openImageStore()
			if err != nil {
				return err
			}
			res, err := store.Prune(rootless.ImageUsers(g.storeRoot()))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, l := range res.Layers {
				fmt.Fprintln(out, "Deleted layer:", l)
			}
			fmt.Fprintf(out, "Reclaimed %s (%d layers, %d blobs)\n", humanSize(res.Bytes), len(res.Layers), res.Blobs)
			return nil
		},
	}
}
