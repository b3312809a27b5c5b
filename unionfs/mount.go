package unionfs

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
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
	if IsMountpoint(mnt) {
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

// IsMountpoint reports whether path is the target of a mount.
func IsMountpoint(path string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountPath(f[4]) == path {
			return true
		}
	}
	return false
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for space...).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
