package main

import (
	"github.com/spf13/cobra"
	"github.com/strata-run/strata/unionfs/mounts"
)

func newUmountCmd() *cobra.Command {
	var lazy bool
	cmd := &cobra.Command{
		Use:   "umount MNT",
		Short: "Unmount a union mounted by strata mount or mount-image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return mounts.Unmount(args[0], lazy)
		},
	}
	cmd.Flags().BoolVarP(&lazy, "lazy", "l", false, "detach now, clean up when no longer busy")
	return cmd
}
