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
// failures (125, 126, 127) apart from the command's exit status.
package rootless
