// Package rootless runs a container as an ordinary user: no root, no daemon,
// no setuid helper beyond newuidmap/newgidmap.
//
// Three processes take part, each a re-exec of the strata binary:
//
//	parent (the real user)      strata run: validates, prepares the container
//	  │                         dir, writes the id maps, relays I/O, signals
//	  │                         and the exit status
//	  └─ child (user+mount[+net] ns, root inside)
//	       │                    serves the union filesystem on the rootfs
//	       │                    mountpoint (FUSE, mounted directly)
//	       └─ init (mount, PID, UTS, IPC, cgroup ns; PID 1)
//	                            mounts /proc /dev /sys, pivot_root, drops
//	                            capabilities, seccomp, then execs the command
//
// The child and init are separate because the FUSE server must never touch
// its own mount: pivot_root moves the root of every process in a mount
// namespace that sits on the old root, so init gets a mount namespace of its
// own and the server keeps the plain host view.
//
// Namespaces are created at clone time (SysProcAttr.Cloneflags) because they
// are per thread in Go. Every process is tied to its parent with Pdeathsig
// (on a locked OS thread, since Pdeathsig follows the forking thread), so a
// SIGKILL of strata takes the whole tree down; the mount lives only in the
// child's mount namespace and vanishes with it. What is left on disk (the
// runtime dir of a dead container) is found and removed by the next strata
// invocation (CleanStale).
//
// Specs cross each re-exec as JSON on fd 3; setup failures travel back to
// the parent on fd 4 (close-on-exec, so a successful exec of the command
// closes it with nothing written), which is how strata tells its own
// failures (125, 126, 127) apart from the command's exit status. With -t,
// fd 5 is a socket on which init sends the master of a pty it opened in
// the container's own devpts.
//
// The id maps: newuidmap/newgidmap (setuid helpers honouring /etc/subuid)
// write them from the parent after the child exists. By then the child
// has exec'ed as an unmapped user, which would have cost it every
// capability; the parent raises all of them as ambient capabilities before
// that exec, so they survive it. Without subordinate ids (or as real root)
// the parent writes the maps itself before the child runs.
//
// Resource limits: with --memory and the like the container gets a cgroup
// v2 cgroup of its own in a delegated subtree (systemd scope or cgroupfs,
// see cgroup.go); the parent moves the child there before the child reads
// its spec, init is born there with its cgroup namespace rooted there, and
// the child moves out again once init exists, so the union filesystem's
// server never counts against the limits.
//
// Layout on disk and at runtime: see state.go. Seam for later work: the
// Network interface (user-mode networking from netns/).
package rootless
