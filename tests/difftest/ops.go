package difftest

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Op is one file-system operation, with paths relative to the mount root.
// It is plain data so a list can be printed, replayed, shrunk and sent to a
// child process as JSON.
type Op struct {
	Kind  string `json:"k"`
	Path  string `json:"p,omitempty"`
	Path2 string `json:"q,omitempty"` // rename/link destination, symlink target
	Mode  uint32 `json:"m,omitempty"`
	Off   int64  `json:"o,omitempty"`
	Len   int64  `json:"n,omitempty"`
	Fill  byte   `json:"b,omitempty"`
	UID   int    `json:"u,omitempty"`
	GID   int    `json:"g,omitempty"`
	Name  string `json:"x,omitempty"` // xattr name
	Value string `json:"v,omitempty"`
	Flags int    `json:"f,omitempty"`
}

// Op kinds.
const (
	OpCreate   = "create"   // open(O_CREAT|Flags, Mode)
	OpWrite    = "write"    // pwrite Len bytes at Off
	OpAppend   = "append"   // O_APPEND write of Len bytes
	OpTruncate = "truncate" // truncate(2) to Len
	OpRename   = "rename"   // renameat2(Path, Path2, Flags)
	OpUnlink   = "unlink"
	OpMkdir    = "mkdir"
	OpRmdir    = "rmdir"
	OpLink     = "link"    // link(Path, Path2)
	OpSymlink  = "symlink" // symlink(Path2, Path)
	OpChmod    = "chmod"   // chmod(2), follows symlinks
	OpChown    = "chown"   // lchown(2)
	OpSetxattr = "setxattr"
	OpRmxattr  = "removexattr"
	OpMkfifo   = "mkfifo"
	OpUtimes   = "utimes" // utimensat(AT_SYMLINK_NOFOLLOW), atime and mtime to Off seconds
)

func (o Op) String() string {
	switch o.Kind {
	case OpCreate:
		return fmt.Sprintf("create %s mode=%#o flags=%s", o.Path, o.Mode, openFlagNames(o.Flags))
	case OpWrite:
		return fmt.Sprintf("write %s off=%d len=%d fill=%d", o.Path, o.Off, o.Len, o.Fill)
	case OpAppend:
		return fmt.Sprintf("append %s len=%d fill=%d", o.Path, o.Len, o.Fill)
	case OpTruncate:
		return fmt.Sprintf("truncate %s size=%d", o.Path, o.Len)
	case OpRename:
		f := ""
		switch o.Flags {
		case unix.RENAME_NOREPLACE:
			f = " NOREPLACE"
		case unix.RENAME_EXCHANGE:
			f = " EXCHANGE"
		}
		return fmt.Sprintf("rename %s -> %s%s", o.Path, o.Path2, f)
	case OpLink:
		return fmt.Sprintf("link %s -> new name %s", o.Path, o.Path2)
	case OpSymlink:
		return fmt.Sprintf("symlink %s (target %q)", o.Path, o.Path2)
	case OpChmod, OpMkdir, OpMkfifo:
		return fmt.Sprintf("%s %s %#o", o.Kind, o.Path, o.Mode)
	case OpChown:
		return fmt.Sprintf("chown %s %d:%d", o.Path, o.UID, o.GID)
	case OpSetxattr:
		return fmt.Sprintf("setxattr %s %s=%q flags=%d", o.Path, o.Name, o.Value, o.Flags)
	case OpRmxattr:
		return fmt.Sprintf("removexattr %s %s", o.Path, o.Name)
	case OpUtimes:
		return fmt.Sprintf("utimes %s %s", o.Path, time.Unix(o.Off, 0).UTC().Format(time.RFC3339))
	}
	return o.Kind + " " + o.Path
}

func openFlagNames(f int) string {
	var s []string
	for _, n := range []struct {
		f    int
		name string
	}{{unix.O_EXCL, "EXCL"}, {unix.O_TRUNC, "TRUNC"}, {unix.O_RDWR, "RDWR"}} {
		if f&n.f != 0 {
			s = append(s, n.name)
		}
	}
	if len(s) == 0 {
		return "0"
	}
	return strings.Join(s, "|")
}

// Fill returns the bytes a write of n with fill byte b writes: a pattern,
// so a misplaced or short write shows as different content.
func Fill(n int64, b byte) []byte {
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = 'A' + (b+byte(i%31))%58
	}
	return buf
}

// Apply runs o on the tree at root and returns its errno (0 on success).
// Opens use O_NONBLOCK so a fifo never blocks a writer.
func Apply(root string, o Op) unix.Errno {
	p := filepath.Join(root, o.Path)
	q := filepath.Join(root, o.Path2)
	var err error
	switch o.Kind {
	case OpCreate:
		var fd int
		fd, err = unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|o.Flags, o.Mode)
		if err == nil {
			err = unix.Close(fd)
		}
	case OpWrite, OpAppend:
		flags := unix.O_WRONLY | unix.O_NONBLOCK | unix.O_CLOEXEC
		if o.Kind == OpAppend {
			flags |= unix.O_APPEND
		}
		var fd int
		fd, err = unix.Open(p, flags, 0)
		if err == nil {
			buf := Fill(o.Len, o.Fill)
			var n int
			if o.Kind == OpAppend {
				n, err = unix.Write(fd, buf)
			} else {
				n, err = unix.Pwrite(fd, buf, o.Off)
			}
			if err == nil && n != len(buf) {
				err = unix.EIO // a short write is a difference too
			}
			if cerr := unix.Close(fd); err == nil {
				err = cerr
			}
		}
	case OpTruncate:
		err = unix.Truncate(p, o.Len)
	case OpRename:
		err = unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, q, uint(o.Flags))
	case OpUnlink:
		err = unix.Unlink(p)
	case OpMkdir:
		err = unix.Mkdir(p, o.Mode)
	case OpRmdir:
		err = unix.Rmdir(p)
	case OpLink:
		err = unix.Link(p, q)
	case OpSymlink:
		err = unix.Symlink(o.Path2, p)
	case OpChmod:
		err = unix.Chmod(p, o.Mode)
	case OpChown:
		err = unix.Lchown(p, o.UID, o.GID)
	case OpSetxattr:
		err = unix.Lsetxattr(p, o.Name, []byte(o.Value), o.Flags)
	case OpRmxattr:
		err = unix.Lremovexattr(p, o.Name)
	case OpMkfifo:
		err = unix.Mkfifo(p, o.Mode)
	case OpUtimes:
		ts := unix.NsecToTimespec(o.Off * 1e9)
		err = unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	default:
		return unix.ENOSYS
	}
	if err == nil {
		return 0
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return unix.EIO
}

// ErrnoName is errno's symbolic name ("ENOENT"), or "ok".
func ErrnoName(e unix.Errno) string {
	if e == 0 {
		return "ok"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

// FormatOps numbers ops one per line, as a failing test prints them.
func FormatOps(ops []Op) string {
	var b strings.Builder
	for i, o := range ops {
		fmt.Fprintf(&b, "  %3d  %s\n", i+1, o)
	}
	return b.String()
}
