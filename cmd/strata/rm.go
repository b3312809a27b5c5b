package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/rootless"
)

func newRmCmd(g *globalOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [-f] CONTAINER...",
		Short: "Delete containers (their writable layer and state)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, ref := range args {
				c, err := rootless.Find(g.storeRoot(), ref)
				if err == nil {
					err = rootless.Remove(g.storeRoot(), c, force)
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), c.Name)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	return cmd
}
