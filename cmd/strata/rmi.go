package main

import (
	"fmt"

	"github.com/strata-run/strata/rootless"

	"github.com/spf13/cobra"
)

func newRmiCmd(g *globalOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rmi [-f] IMAGE...",
		Short: "Remove images (or one of their names) from the store",
		Long: `Remove images. Given a name of an image that has other names, only that name
goes. An image a container uses stays unless -f. Unpacked layers stay until
strata prune.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openImageStore()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, ref := range args {
				res, err := store.Remove(ref, force, rootless.ImageUsers(g.storeRoot()))
				if err != nil {
					return err
				}
				for _, n := range res.Untagged {
					fmt.Fprintln(out, "Untagged:", n)
				}
				if res.Deleted != "" {
					fmt.Fprintln(out, "Deleted:", res.Deleted)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove even if a container uses it")
	return cmd
}
