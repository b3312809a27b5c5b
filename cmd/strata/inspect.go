package main

import (
	"encoding/json"

	"github.com/spf13/cobra"
)

// imageInspect is what `strata inspect` prints.
type imageInspect struct {
	ID       string   `json:"Id"`
	Names    []string `json:"Names"`
	Manifest string   `json:"Manifest"`
	Size     int64    `json:"Size"`
	Layers   []string `json:"Layers"`    // diff IDs, bottom first
	LayerDir []string `json:"LayerDirs"` // unpacked, top first
	Config   any      `json:"Config"`
}

func newInspectCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE...",
		Short: "Show images' config and layers as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openImageStore()
			if err != nil {
				return err
			}
			var out []imageInspect
			for _, ref := range args {
				img, err := store.Resolve(ref)
				if err != nil {
					return err
				}
				out = append(out, imageInspect{ID: img.ID, Names: img.Names, Manifest: img.Manifest,
					Size: img.Size, Layers: img.DiffIDs, LayerDir: img.Layers(), Config: img.ConfigFile()})
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
}
