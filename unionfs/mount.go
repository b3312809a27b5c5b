package unionfs

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/strata-run/strata/unionfs/mounts"
)

// Server is a running union mount.
type Server struct {
	fuse       *fuse.Server
	mountpoint string
	root       *unionFS
}

// Mount validates opts, mounts the union at mountpoint and serves it in the
// background. It returns once the kernel has the mount, so the caller may
// use it at once. The process must not itself access the mount from a FUSE
// handler (deadlock), but may from any other goroutine.
func Mount(mountpoint string, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	mnt, err := checkDir("mountpoint", mountpoint)
	if err != nil {
		return nil, err
	}
	if mounts.IsMountpoint(mnt) {
		return nil, fmt.Errorf("mountpoint %s: already a mount point (busy)", mnt)
	}
	u, err := newUnionFS(opts)
	if err != nil {
		return nil, err
	}
	srv, err := u.mount(mnt)
	if err != nil {
		u.close()
		return nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	return &Server{fuse: srv, mountpoint: mnt, root: u}, nil
}

// Requests returns how many FUSE requests the union has served since it
// was mounted, by opcode name ("LOOKUP", "GETATTR", ...); opcodes never
// seen are left out. BATCH_FORGET counts as one FORGET per node.
func (s *Server) Requests() map[string]uint64 { return s.root.requests.snapshot() }

// Mountpoint is where the union is mounted.
func (s *Server) Mountpoint() string { return s.mountpoint }

// Wait blocks until the union is unmounted.
func (s *Server) Wait() {
	s.fuse.Wait()
	s.root.close()
}

// Unmount takes the union down and waits for the server to finish.
func (s *Server) Unmount() error {
	if err := s.fuse.Unmount(); err != nil {
		return fmt.Errorf("unmount %s: %w", s.mountpoint, err)
	}
	s.Wait()
	return nil
}
