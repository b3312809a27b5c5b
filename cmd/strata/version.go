package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time by the Makefile (-X main.version=...).
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print strata's version and build facts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fuseVersion := "unknown"
			if info, ok := debug.ReadBuildInfo(); ok {
				for _, dep := range info.Deps {
					if dep.Path == "github.com/hanwen/go-fuse/v2" {
						fuseVersion = dep.Version
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "strata %s (%s, %s/%s, go-fuse %s)\n",
				version, runtime.Version(), runtime.GOOS, runtime.GOARCH, fuseVersion)
			return nil
		},
	}
}
