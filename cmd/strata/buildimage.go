package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/image"
)

func init() {
	imageCmd := &cobra.Command{
		Use:   "image",
		Short: "Image tools (build-default)",
	}
	var busybox string
	build := &cobra.Command{
		Use:   "build-default [NAME]",
		Short: "Build the project's default image from Debian's busybox-static",
		Long: `Build a small image from a static busybox (Debian's busybox-static package,
/bin/busybox): the binary, a symlink per applet, /etc/passwd and /etc/group
with root and user (1000), /tmp. Named ` + image.DefaultImageName + ` unless NAME is given.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openImageStore()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			img, err := store.BuildDefault(busybox, name)
			if err != nil {
				return err
			}
			fmt.Println(img.Name(), img.ID)
			return nil
		},
	}
	build.Flags().StringVar(&busybox, "busybox", image.DefaultBusybox, "static busybox `BINARY` to use")
	imageCmd.AddCommand(build)
	rootCmd.AddCommand(imageCmd)
}
