package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/image"
)

func newPullCmd(g *globalOptions) *cobra.Command {
	var o image.PullOptions
	var quiet, tlsVerify bool
	cmd := &cobra.Command{
		Use:   "pull [flags] IMAGE",
		Short: "Fetch an image from a registry into the store",
		Long: `Fetch an image from a registry (HTTPS; --tls-verify=false also allows
plain HTTP and unverified certificates). Credentials come from
~/.docker/config.json, $REGISTRY_AUTH_FILE and
$XDG_RUNTIME_DIR/containers/auth.json. A multi-arch image resolves to this
host's platform unless --platform says otherwise. Layers already in the
store are not fetched again; everything fetched is checked by digest.`,
		Example: `  strata pull alpine
  strata pull --tls-verify=false localhost:5000/test:v1
  strata pull --platform linux/arm64 docker.io/library/busybox:latest`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openImageStore()
			if err != nil {
				return err
			}
			o.Insecure = !tlsVerify
			bars := newLayerBars(quiet, cmd.ErrOrStderr())
			o.Progress = bars.event()
			img, err := store.Pull(cmd.Context(), args[0], o)
			bars.wait()
			if err != nil {
				return interrupted(cmd.Context(), err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), img.ID)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bars")
	cmd.Flags().BoolVar(&tlsVerify, "tls-verify", true, "require HTTPS with a verified certificate")
	cmd.Flags().StringVar(&o.Platform, "platform", "", "pull this `OS/ARCH[/VARIANT]` of a multi-arch image, e.g. linux/arm64 (default: this host's)")
	return cancelledBySignals(cmd)
}
