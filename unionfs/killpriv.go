package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// With FUSE_HANDLE_KILLPRIV_V2 the kernel leaves to the server what it
// would otherwise do itself before every write, asking for
// security.capability first: clear the set-user-id bit, and the
// set-group-id bit of a group-executable file, when a caller without
// CAP_FSETID writes, truncates or chowns. security.capability itself goes
// by the backing filesystem, which drops it on every write and chown
// strata makes; set-id bits it keeps, strata being privileged, so they
// are cleared here: on WRITE flagged FUSE_WRITE_KILL_SUIDGID, on SETATTR
// flagged FATTR_KILL_SUIDGID (see Setattr), and on chown, where chown(2)
// on the backing file or Setattr's override does it.

// killedMode is mode with the bits a write by an unprivileged caller
// clears.
func killedMode(mode uint32) uint32 {
	mode &^= unix.S_ISUID
	if mode&unix.S_IXGRP != 0 {
		mode &^= unix.S_ISGID
	}
	return mode
}

// killRequested reports whether this request is a WRITE the kernel
// flagged FUSE_WRITE_KILL_SUIDGID.
func (u *unionFS) killRequested(ctx context.Context) bool {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Cancel == nil {
		return false
	}
	_, ok = u.killReqs.Load(fc.Cancel)
	return ok
}

// killSuidgid clears n's set-id bits after a write, through Setattr so
// that modes kept in override_stat are cleared there.
func (n *node) killSuidgid(ctx context.Context) syscall.Errno {
	var st unix.Stat_t
	if errno := n.stat(&st); errno != 0 {
		return errno
	}
	m := killedMode(st.Mode)
	if m == st.Mode {
		return 0
	}
	in := fuse.SetAttrIn{}
	in.Valid = fuse.FATTR_MODE
	in.Mode = m & 07777
	var out fuse.AttrOut
	if errno := n.Setattr(ctx, nil, &in, &out); errno != 0 {
		return errno
	}
	// The WRITE reply carries no attributes: the kernel must learn the
	// new mode by asking again (offset -1: attributes only).
	n.NotifyContent(-1, 0)
	return 0
}
