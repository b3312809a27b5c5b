package rootless

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// capNames lists every capability by number (capability.h order).
var capNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
	"LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
	"WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// DefaultCaps is Docker's default capability set.
var DefaultCaps = []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
	"SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}

func capNumber(name string) (int, bool) {
	n := strings.TrimPrefix(strings.ToUpper(name), "CAP_")
	for i, c := range capNames {
		if c == n {
			return i, true
		}
	}
	return 0, false
}

// CapSet applies --cap-add and --cap-drop (names with or without CAP_,
// or ALL) to the default set and returns the result, sorted. The order is
// Docker's: drops, then adds (--cap-drop ALL --cap-add X leaves X), except
// that with --cap-add ALL the drops come last (--cap-add ALL --cap-drop X
// is everything but X).
func CapSet(add, drop []string) ([]string, error) {
	set := map[string]bool{}
	for _, c := range DefaultCaps {
		set[c] = true
	}
	addsAll := false
	normalize := func(flag string, names []string) ([]string, error) {
		var out []string
		for _, n := range names {
			n = strings.TrimPrefix(strings.ToUpper(n), "CAP_")
			if _, ok := capNumber(n); !ok && n != "ALL" {
				return nil, fmt.Errorf("%s %s: unknown capability (see capabilities(7))", flag, n)
			}
			if n == "ALL" && flag == "--cap-add" {
				addsAll = true
			}
			out = append(out, n)
		}
		return out, nil
	}
	add, err := normalize("--cap-add", add)
	if err != nil {
		return nil, err
	}
	drop, err = normalize("--cap-drop", drop)
	if err != nil {
		return nil, err
	}
	apply := func(names []string, on bool) {
		for _, n := range names {
			if n != "ALL" {
				set[n] = on
				continue
			}
			for _, c := range capNames {
				set[c] = on
			}
		}
	}
	if addsAll {
		apply(add, true)
		apply(drop, false)
	} else {
		apply(drop, false)
		apply(add, true)
	}
	var out []string
	for c, on := range set {
		if on {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out, nil
}

func hasCap(caps []string, name string) bool {
	for _, c := range caps {
		if c == name {
			return true
		}
	}
	return false
}

func lastCap() int {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			return n
		}
	}
	return len(capNames) - 1
}

func capMask(caps []string) uint64 {
	var m uint64
	for _, c := range caps {
		if n, ok := capNumber(c); ok {
			m |= 1 << uint(n)
		}
	}
	return m
}

// sysScope says which threads a credential call changes.
type sysScope int

const (
	// thisThread suits a process about to exec: execve keeps the calling
	// thread's credentials and ends every other thread.
	thisThread sysScope = iota
	// allThreads suits the --init reaper, which goes on running Go code
	// on any of its threads: none of them may keep more than the
	// container is given.
	allThreads
)

// call makes one raw system call in the scope. The arguments may be
// pointers converted in the call expression, as for unix.RawSyscall.
//
//go:uintptrescapes
func (s sysScope) call(trap, a1, a2, a3 uintptr) syscall.Errno {
	var e syscall.Errno
	if s == allThreads {
		_, _, e = syscall.AllThreadsSyscall(trap, a1, a2, a3)
	} else {
		_, _, e = unix.RawSyscall(trap, a1, a2, a3)
	}
	return e
}

func (s sysScope) err(what string, e syscall.Errno) error {
	if s == allThreads && e == unix.ENOTSUP {
		// Go cannot reach the threads cgo starts, so it refuses.
		return fmt.Errorf("%s on every thread: this strata binary was built with cgo; --init needs one built with CGO_ENABLED=0", what)
	}
	return fmt.Errorf("%s: %w", what, e)
}

// applyCaps makes the calling thread (or every thread) the container user
// holding exactly the capability state the command starts with:
//
//	bounding = caps; inheritable = ambient = empty;
//	permitted = effective = caps for root, empty for any other user.
//
// The process comes from the namespace child with every capability, in
// the inheritable and ambient sets too (startChild raises them so they
// survive its own exec), and execve as root would turn a full inheritable
// set back into a full permitted one. The state above is a fixed point of
// execve: root gets its bounding set again, anyone else nothing. So the
// command sees the same whether this thread execs it or the --init reaper
// forks it from here, and a setuid-root file cannot widen it (no_new_privs
// aside, the bounding set caps what root gets).
func applyCaps(u execUser, setgroupsOK bool, caps []string, scope sysScope) error {
	keep := capMask(caps)
	for c := 0; c <= lastCap(); c++ {
		if keep&(1<<uint(c)) != 0 {
			continue
		}
		// EINVAL: a capability this kernel does not know.
		if e := scope.call(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 && e != unix.EINVAL {
			return scope.err(fmt.Sprintf("drop %s from the bounding set", capName(c)), e)
		}
	}
	if e := scope.call(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); e != 0 {
		return scope.err("clear ambient capabilities", e)
	}
	if err := switchUser(u, setgroupsOK, scope); err != nil {
		return err
	}
	perm := keep
	if u.uid != 0 {
		perm = 0
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[0].Permitted = uint32(perm), uint32(perm)
	data[1].Effective, data[1].Permitted = uint32(perm>>32), uint32(perm>>32)
	if e := scope.call(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return scope.err(fmt.Sprintf("capset %#x", perm), e)
	}
	return nil
}

func capName(n int) string {
	if n < len(capNames) {
		return "CAP_" + capNames[n]
	}
	return fmt.Sprintf("capability %d", n)
}
