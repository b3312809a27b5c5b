package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/strata-run/strata/image"
	"github.com/strata-run/strata/rootless"

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
	pause := true
	cmd := &cobra.Command{
		Use:   "commit CONTAINER NAME",
		Short: "Make a new image from a container's changes",
		Long: `Turn the container's writable layer into a new layer on top of its image and
name the result NAME. Deleted files become OCI whiteouts; /etc/hosts,
/etc/resolv.conf and /etc/hostname, which strata writes per container, are
left out. Symlinks are recorded as symlinks, never followed.

A running container is paused for the commit (as podman commit does by
default): its processes get SIGSTOP before the layer is read and SIGCONT
after, also when the commit fails or is interrupted. --pause=false reads
the layer of a running container as it is at that moment.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			store, err := openImageStore()
			if err != nil {
				return err
			}
			dir, err := store.FindContainer(args[0])
			if err != nil {
				return err
			}
			if pause {
				// A commit ended by ^C or a TERM must not leave the
				// container stopped: listen before pausing.
				sigs := make(chan os.Signal, 1)
				signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
				defer signal.Stop(sigs)
				resume, perr := rootless.Pause(filepath.Base(dir))
				if perr != nil {
					return perr
				}
				done := make(chan struct{})
				defer close(done)
				defer func() {
					if rerr := resume(); rerr != nil && err == nil {
						err = rerr
					}
				}()
				go func() {
					select {
					case s := <-sigs:
						if rerr := resume(); rerr != nil {
							fmt.Fprintln(os.Stderr, "strata:", rerr)
						}
						os.Exit(128 + int(s.(syscall.Signal)))
					case <-done:
					}
				}()
			}
			img, err := store.Commit(dir, args[1])
			if err != nil {
				return err
			}
			fmt.Println(img.ID)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&pause, "pause", "p", true, "stop the container's processes while the commit reads its changes")
	rootCmd.AddCommand(cmd)
}
