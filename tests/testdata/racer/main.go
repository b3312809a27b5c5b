// Command racer attacks a union mount the way a hostile container can: one
// process keeps exchanging a directory with a symlink to a host path while
// others repeat one file operation below that directory, for
// tests/security_race_test.go. A server that rebuilds "d/1/f" from its
// tree and hands it to a *at call follows the symlink when the exchange
// lands in between, and acts on the host path instead.
//
// It is built static and copied into a container rootfs, or run on the
// host as the test user.
//
//	racer setup ROOT TARGET N    make the tree below, with ROOT/s -> TARGET
//	racer swap DIR A B SECONDS   renameat2(RENAME_EXCHANGE) DIR/A and DIR/B in a loop
//	racer op OP ROOT K SECONDS   repeat OP in ROOT/d/K (and ROOT/o/K), ignoring errors
//
// The tree, for op processes K = 1..N:
//
//	ROOT/d/K/{f,y,sub/}   what op K acts on; d is what gets swapped with s
//	ROOT/o/K/{h,x}        outside d, for the ops that link or rename across
//	ROOT/s -> TARGET      TARGET/K holds what an escape would hit
//
// Each op process has its own directories because the kernel holds a
// directory's lock for the whole of a create, unlink, link or rename in
// it: ops sharing one would reach the union one at a time, while in a dir
// each they reach it together and queue on the union's own lock, and it
// is a queued request that catches the tree before an exchange updates it.
// For the same reason nothing the ops touch lives in ROOT itself, whose
// lock every exchange holds.
//
// Every op recreates what it consumes, so the race keeps being exercised
// however the last round ended; errors are expected (half the time d is
// the symlink) and only counted.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// lowerPrefix names the files the copyup op expects in a lower ROOT/d/K.
const lowerPrefix = "lower-"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch a := os.Args[1:]; {
	case a[0] == "setup" && len(a) == 4:
		setup(a[1], a[2], count(a[3]))
	case a[0] == "swap" && len(a) == 5:
		swap(a[1], a[2], a[3], seconds(a[4]))
	case a[0] == "op" && len(a) == 5:
		op(a[1], dirs{in: filepath.Join(a[2], "d", a[3]), out: filepath.Join(a[2], "o", a[3])}, seconds(a[4]))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: racer setup ROOT TARGET N | racer swap DIR A B SECONDS | racer op OP ROOT K SECONDS")
	os.Exit(2)
}

func seconds(s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "racer: bad duration %q\n", s)
		os.Exit(2)
	}
	return time.Duration(f * float64(time.Second))
}

func count(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "racer: bad count %q\n", s)
		os.Exit(2)
	}
	return n
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "racer:", err)
	os.Exit(1)
}

// setup makes the tree the ops expect. ROOT/d may exist already (a lower
// dir, for copyup); the files created in it copy it up, so that the upper
// copy is there to be swapped.
func setup(root, target string, n int) {
	for k := 1; k <= n; k++ {
		in, out := filepath.Join(root, "d", strconv.Itoa(k)), filepath.Join(root, "o", strconv.Itoa(k))
		for _, d := range []string{filepath.Join(in, "sub"), out} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				fail(err)
			}
		}
		for _, p := range []string{filepath.Join(in, "f"), filepath.Join(in, "y"), filepath.Join(out, "h"), filepath.Join(out, "x")} {
			if err := os.WriteFile(p, []byte("racer\n"), 0o644); err != nil {
				fail(err)
			}
		}
	}
	if err := os.Symlink(target, filepath.Join(root, "s")); err != nil {
		fail(err)
	}
}

func swap(dir, a, b string, d time.Duration) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		fail(fmt.Errorf("open %s: %w", dir, err))
	}
	var s stats
	for end := time.Now().Add(d); time.Now().Before(end); {
		s.count(unix.Renameat2(fd, a, fd, b, unix.RENAME_EXCHANGE))
	}
	s.report("swap " + filepath.Join(dir, a) + " " + b)
}

// dirs are one op process's directories: in below the swapped d, out
// beside it.
type dirs struct{ in, out string }

func (d dirs) i(name string) string { return filepath.Join(d.in, name) }
func (d dirs) o(name string) string { return filepath.Join(d.out, name) }

// ops are the operations a container may repeat below d. Each returns the
// error of the call under test; set-up calls are not counted.
var ops = map[string]func(d dirs) error{
	"chmod": func(d dirs) error { return again(unix.Chmod(d.i("f"), 0o606), d) },
	"chown": func(d dirs) error {
		// As root in a container chown to the container's user 1000, an
		// id that owns nothing on the host side; as a user, to itself
		// (all the kernel lets it do).
		uid, gid := os.Getuid(), os.Getgid()
		if uid == 0 {
			uid, gid = 1000, 1000
		}
		return again(unix.Chown(d.i("f"), uid, gid), d)
	},
	"truncate": func(d dirs) error { return again(unix.Truncate(d.i("f"), 1), d) },
	"utimes": func(d dirs) error {
		ts := []unix.Timespec{{Sec: 1e9}, {Sec: 1e9}}
		return again(unix.UtimesNano(d.i("f"), ts), d)
	},
	"setxattr": func(d dirs) error {
		return again(unix.Setxattr(d.i("f"), "user.racer", []byte("racer"), 0), d)
	},
	"removexattr": func(d dirs) error {
		err := unix.Removexattr(d.i("f"), "user.x")
		if err == unix.ENODATA {
			unix.Setxattr(d.i("f"), "user.x", []byte("racer"), 0)
		}
		return again(err, d)
	},
	"unlink": func(d dirs) error {
		err := unix.Unlink(d.i("f"))
		touch(d.i("f"))
		return err
	},
	"rmdir": func(d dirs) error {
		err := unix.Rmdir(d.i("sub"))
		unix.Mkdir(d.i("sub"), 0o755)
		return err
	},
	// create, mkdir and link-in make a new name each time rather than
	// remove the last one: every call they make is then an attempt.
	"create": func(d dirs) error {
		fd, err := unix.Open(d.i(fresh("new")), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	},
	"mkdir": func(d dirs) error { return unix.Mkdir(d.i(fresh("newdir")), 0o755) },
	"link": func(d dirs) error {
		err := unix.Link(d.i("f"), d.i("g"))
		unix.Unlink(d.i("g"))
		return again(err, d)
	},
	"link-in": func(d dirs) error { return unix.Link(d.o("h"), d.i(fresh("h"))) },
	"link-out": func(d dirs) error {
		err := unix.Link(d.i("f"), d.o("out"))
		unix.Unlink(d.o("out"))
		return again(err, d)
	},
	"rename-in": func(d dirs) error {
		err := unix.Rename(d.o("x"), d.i("x"))
		if unix.Rename(d.i("x"), d.o("x")) != nil {
			touch(d.o("x"))
		}
		return err
	},
	"rename-out": func(d dirs) error {
		err := unix.Rename(d.i("y"), d.o("y"))
		if unix.Rename(d.o("y"), d.i("y")) != nil {
			touch(d.i("y"))
		}
		return err
	},
	"copyup": copyUp,
}

var seq int

// fresh returns a name not used before by this process.
func fresh(prefix string) string {
	seq++
	return prefix + strconv.Itoa(seq)
}

// names lists the operations, for the usage error.
func names() []string {
	var out []string
	for n := range ops {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func op(name string, d dirs, dur time.Duration) {
	f, ok := ops[name]
	if !ok {
		fail(fmt.Errorf("unknown op %q (have %s)", name, strings.Join(names(), " ")))
	}
	var s stats
	for end := time.Now().Add(dur); time.Now().Before(end); {
		err := f(d)
		s.count(err)
		if err != nil {
			// Mostly d was the symlink, which fails in the kernel at once;
			// spinning on that only takes the CPU from the union's server
			// and the swapper, until the next exchange.
			unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		}
	}
	s.report("op " + name + " in " + d.in)
}

// lowerFiles: each copy-up happens once per file, so the copyup op walks
// through the many files its lower dir holds. Listing it can fail while
// d is the symlink; try until it works.
var lowerFiles []string
var nextLower int

func copyUp(d dirs) error {
	for lowerFiles == nil {
		ents, err := os.ReadDir(d.in)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), lowerPrefix) {
				lowerFiles = append(lowerFiles, e.Name())
			}
		}
		if lowerFiles == nil {
			fail(fmt.Errorf("%s holds no %s* files to copy up", d.in, lowerPrefix))
		}
	}
	name := lowerFiles[nextLower%len(lowerFiles)]
	nextLower++
	fd, err := unix.Open(d.i(name), unix.O_WRONLY|unix.O_APPEND, 0)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// again recreates f when an op failed because it is gone (an unlink that
// landed, or a swap that lost it), and passes err on.
func again(err error, d dirs) error {
	if errors.Is(err, unix.ENOENT) {
		touch(d.i("f"))
	}
	return err
}

func touch(path string) {
	if fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY, 0o644); err == nil {
		unix.Close(fd)
	}
}

// stats counts outcomes, so a test log shows whether the race ran at all
// (a swap that always fails proves nothing).
type stats struct {
	ok, failed int
	errs       map[string]int
}

func (s *stats) count(err error) {
	if err == nil {
		s.ok++
		return
	}
	s.failed++
	if s.errs == nil {
		s.errs = map[string]int{}
	}
	s.errs[err.Error()]++
}

func (s *stats) report(what string) {
	var errs []string
	for e, n := range s.errs {
		errs = append(errs, fmt.Sprintf("%s x%d", e, n))
	}
	sort.Strings(errs)
	fmt.Fprintf(os.Stderr, "racer %s: %d ok, %d failed %v\n", what, s.ok, s.failed, errs)
}
