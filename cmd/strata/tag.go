package main

import (
	"github.com/spf13/cobra"
)

func newTagCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "tag IMAGE NAME...",
		Short:   "Give an image more names",
		Example: `  strata tag strata/busybox:latest mybox:v1`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openImageStore()
			if err != nil {
				return err
			}
			for _, n := range args[1:] {
				if err := store.Tag(args[0], n); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
