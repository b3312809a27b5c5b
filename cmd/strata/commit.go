package main

import (
	"fmt"
	"os"

	"github.com/strata-run/strata/image"

	"github.com/spf13/cobra"
)

func init() {
	registerReexec(image.EnvTarUpper, func() {
		if err := image.TarUpperChild(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "strata:", err)
			os.Exit(1)
		}
		os.Exit(0)
	})
	rootCmd.AddCommand(&cobra.Command{
		Use:   "commit CONTAINER NAME",
		Short: "Make a new image from a container's changes",
		Long: `Turn the container's writable layer into a new layer on top of its image and
name the result NAME. Deleted files become OCI whiteouts; /etc/hosts,
/etc/resolv.conf and /etc/hostname, which strata writes per container, are
left out.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openImageStore()
			if err != nil {
				return err
			}
			dir, err := store.FindContainer(args[0])
			if err != nil {
				return err
			}
			img, err := store.Commit(dir, args[1])
			if err != nil {
				return err
			}
			fmt.Println(img.ID)
			return nil
		},
	})
}
