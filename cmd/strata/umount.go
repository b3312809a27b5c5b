package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/unionfs"
	"golang.org/x/sys/unix"
)

func init() {
	var lazy bool
	cmd := &cobra.Command{
		Use:   "umount MNT",
		Short: "Unmount a union mounted by strata mount or mount-image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return unmount(args[0], lazy)
		},
	}
	cmd.Flags().BoolVarP(&lazy, "lazy", "l", false, "detach now, clean up when no longer busy")
	rootCmd.AddCommand(cmd)
}

// unmount takes a FUSE mount down: with umount(2) as root, through
// fusermount3 otherwise. The server sees the unmount and exits.
func unmount(mnt string, lazy bool) error {
	abs, err := filepath.Abs(mnt)
	if err != nil {
		return fmt.Errorf("umount %s: %w", mnt, err)
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	if !unionfs.IsMountpoint(abs) {
		return fmt.Errorf("umount %s: not mounted", mnt)
	}
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		if err := unix.Unmount(abs, flags); err != nil {
			return fmt.Errorf("umount %s: %w", mnt, err)
		}
		return nil
	}
	args := []string{"-u", abs}
	if lazy {
		args = []string{"-u", "-z", abs}
	}
	if out, err := exec.Command("fusermount3", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("umount %s: fusermount3: %s", mnt, out)
	}
	return nil
}
