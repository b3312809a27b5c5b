package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/unionfs"
)

func newMountImageCmd(g *globalOptions) *cobra.Command {
	var foreground, writable bool
	cmd := &cobra.Command{
		Use:   "mount-image [-f] [--writable] IMAGE MNT",
		Short: "Mount an image's root filesystem at MNT for inspection",
		Long: `Mount the layers of IMAGE, read-only, at MNT with strata's union filesystem,
showing owners and modes as they are in the image. --writable puts a scratch
upper layer on top (thrown away at unmount). Returns once the mount serves;
-f serves in the foreground. Take it down with strata umount MNT.`,
		Example: `  strata mount-image strata/busybox /tmp/bb && ls -l /tmp/bb/bin/busybox
  strata umount /tmp/bb`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !foreground {
				return mountInBackground(cmd)
			}
			return serveImage(cmd.Context(), g, args[0], args[1], writable)
		},
	}
	cmd.Flags().BoolVarP(&foreground, "foreground", "f", false, "serve in the foreground until unmounted")
	cmd.Flags().BoolVar(&writable, "writable", false, "add a scratch upper layer, removed at unmount")
	return cancelledBySignals(cmd)
}

// serveImage serves the image at mnt until it is unmounted or ctx is
// cancelled, which unmounts it.
func serveImage(ctx context.Context, g *globalOptions, ref, mnt string, writable bool) error {
	report := readyReporter()
	fail := func(err error) error { report(err); return err }
	store, err := g.openImageStore()
	if err != nil {
		return fail(err)
	}
	img, err := store.Resolve(ref)
	if err != nil {
		return fail(err)
	}
	opts := unionfs.Options{
		Lowers:      img.Layers(),
		Speed:       unionfs.DefaultSpeed,
		Ownership:   unionfs.OwnershipXattr, // the store's layers keep owners in xattrs
		DirectMount: os.Geteuid() == 0,
		FsName:      "strata-image",
		Logger:      slog.Default(),
	}
	if writable {
		scratch, err := os.MkdirTemp("", "strata-mount-image-")
		if err != nil {
			return fail(fmt.Errorf("scratch upper: %w", err))
		}
		defer os.RemoveAll(scratch)
		opts.Upper, opts.Work = filepath.Join(scratch, "upper"), filepath.Join(scratch, "work")
		for _, d := range []string{opts.Upper, opts.Work} {
			if err := os.Mkdir(d, 0o700); err != nil {
				return fail(fmt.Errorf("scratch upper: %w", err))
			}
		}
	}
	srv, err := unionfs.Mount(mnt, opts)
	if err != nil {
		return fail(fmt.Errorf("mount %s at %s: %w", ref, mnt, err))
	}
	report(nil)
	served := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			srv.Unmount()
		case <-served: // unmounted from outside
		}
	}()
	srv.Wait()
	close(served)
	return nil
}
