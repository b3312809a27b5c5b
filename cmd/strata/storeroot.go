package main

import (
	"github.com/strata-run/strata/rootless"
)

// storeRootFlag is --root, shared by every command that touches the store
// (images and containers): one persistent flag, so commands agree on it.
var storeRootFlag string

func init() {
	rootCmd.PersistentFlags().StringVar(&storeRootFlag, "root", "", "store directory for images and containers (default $XDG_DATA_HOME/strata or ~/.local/share/strata)")
}

// storeRoot is --root or the default.
func storeRoot() string {
	if storeRootFlag != "" {
		return storeRootFlag
	}
	return rootless.DefaultRoot()
}
