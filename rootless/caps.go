package rootless

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

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
// or ALL) to the default set and returns the result, sorted.
func CapSet(add, drop []string) ([]string, error) {
	set := map[string]bool{}
	for _, c := range DefaultCaps {
		set[c] = true
	}
	apply := func(flag string, names []string, on bool) error {
		for _, n := range names {
			n = strings.TrimPrefix(strings.ToUpper(n), "CAP_")
			if n == "ALL" {
				for _, c := range capNames {
					set[c] = on
				}
				continue
			}
			if _, ok := capNumber(n); !ok {
				return fmt.Errorf("%s %s: unknown capability (see capabilities(7))", flag, n)
			}
			set[n] = on
		}
		return nil
	}
	if err := apply("--cap-drop", drop, false); err != nil {
		return nil, err
	}
	if err := apply("--cap-add", add, true); err != nil {
		return nil, err
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

// dropBounding removes from the calling thread's bounding set every
// capability not in keep. It needs CAP_SETPCAP, so it comes before the
// switch to the container user.
func dropBounding(keep uint64, last int) error {
	for c := 0; c <= last; c++ {
		if keep&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// setCaps sets the calling thread's effective and permitted sets to mask,
// empties inheritable and ambient.
func setCaps(mask uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[0].Permitted = uint32(mask), uint32(mask)
	data[1].Effective, data[1].Permitted = uint32(mask>>32), uint32(mask>>32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return nil
}
