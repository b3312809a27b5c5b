package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "prune",
		Short: "Remove layers no image or container uses",
		Long: `Remove unpacked layers that no image and no container uses, blobs no image
refers to, and leftovers of interrupted pulls. Waits for pulls and loads in
progress to finish first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openImageStore()
			if err != nil {
				return err
			}
			res, err := store.Prune()
			if err != nil {
				return err
			}
			for _, l := range res.Layers {
				fmt.Println("Deleted layer:", l)
			}
			fmt.Printf("Reclaimed %s (%d layers, %d blobs)\n", humanSize(res.Bytes), len(res.Layers), res.Blobs)
			return nil
		},
	})
}
