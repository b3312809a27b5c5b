package main

import (
	"github.com/spf13/cobra"
)

func newLoadCmd(g *globalOptions) *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load -i FILE|DIR",
		Short: "Load images from an OCI layout or a docker-archive",
		Long: `Load the images of an OCI image layout (a directory, or a tar of one, as
skopeo's oci: and oci-archive: write) or of a docker-archive (docker save,
podman save) into the store.`,
		Example: `  strata load -i busybox.tar
  strata load -i ./oci-layout-dir`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openImageStore()
			if err != nil {
				return err
			}
			bars := newLayerBars(quiet, cmd.ErrOrStderr())
			imgs, err := store.Load(input, bars.event())
			bars.wait()
			if err != nil {
				return err
			}
			printLoaded(cmd.OutOrStdout(), imgs)
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "archive `FILE` or layout DIR to load (required)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bars")
	// Only fails for a flag name not defined just above.
	_ = cmd.MarkFlagRequired("input")
	return cmd
}
