package rootless

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// The default filter follows the spirit of Docker's profile as a deny list:
// calls that reach the kernel's less-guarded corners (keyrings, module and
// kexec loading, clock setting, swap, BPF, perf, raw handles) or that would
// let the container rebuild its own sandbox (mount, namespaces, ptrace)
// fail with EPERM; everything else is allowed. Docker's profile is an allow
// list, which breaks new syscalls until the profile learns them; a deny
// list stays correct as the kernel grows. Capabilities re-open a group,
// as in Docker: CAP_SYS_ADMIN the mount and namespace calls, CAP_SYS_PTRACE
// ptrace, and so on.
var seccompGroups = []struct {
	cap   string // "" = always denied
	calls []string
}{
	{"", []string{"add_key", "keyctl", "request_key", "create_module", "get_kernel_syms", "query_module",
		"uselib", "userfaultfd", "ustat", "sysfs", "_sysctl", "nfsservctl", "lookup_dcookie",
		"kexec_file_load", "kexec_load", "vm86", "vm86old", "afs_syscall"}},
	{"SYS_ADMIN", []string{"mount", "umount2", "umount", "unshare", "setns", "pivot_root", "swapon", "swapoff",
		"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "quotactl",
		"name_to_handle_at", "bpf", "perf_event_open", "lookup_dcookie", "fanotify_init"}},
	{"SYS_PTRACE", []string{"ptrace", "process_vm_readv", "process_vm_writev", "kcmp"}},
	{"SYS_MODULE", []string{"init_module", "finit_module", "delete_module"}},
	{"SYS_TIME", []string{"settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"}},
	{"SYS_BOOT", []string{"reboot"}},
	{"SYS_PACCT", []string{"acct"}},
	{"SYS_RAWIO", []string{"iopl", "ioperm"}},
	{"DAC_READ_SEARCH", []string{"open_by_handle_at"}},
	{"SYS_NICE", []string{"set_mempolicy", "mbind", "move_pages", "get_mempolicy"}},
}

const nsCloneFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// seccompFilter builds the filter for a capability set. Names unknown to
// this architecture's table are left out (x86-only calls on arm64, say).
func seccompFilter(caps []string) (seccomp.Filter, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return seccomp.Filter{}, fmt.Errorf("seccomp: %w", err)
	}
	seen := map[string]bool{}
	var denied []string
	for _, g := range seccompGroups {
		if g.cap != "" && hasCap(caps, g.cap) {
			continue
		}
		for _, c := range g.calls {
			if _, ok := info.SyscallNames[c]; ok && !seen[c] {
				seen[c] = true
				denied = append(denied, c)
			}
		}
	}
	groups := []seccomp.SyscallGroup{{Names: denied, Action: seccomp.ActionErrno}}
	if !hasCap(caps, "SYS_ADMIN") {
		// As Docker: clone may not make namespaces (threads and plain
		// forks pass), and clone3, whose flags sit in memory a filter
		// cannot read, says ENOSYS so that libc falls back to clone.
		groups = append(groups,
			seccomp.SyscallGroup{
				NamesWithCondtions: []seccomp.NameWithConditions{{Name: "clone", Conditions: seccomp.ArgumentConditions{
					{Argument: 0, Operation: seccomp.BitsSet, Value: nsCloneFlags}}}},
				Action: seccomp.ActionErrno,
			},
			seccomp.SyscallGroup{Names: []string{"clone3"}, Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)})
	}
	return seccomp.Filter{
		NoNewPrivs: true,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionAllow,
			Syscalls:      groups,
		},
	}, nil
}

func loadSeccomp(caps []string, allThreads bool) error {
	f, err := seccompFilter(caps)
	if err != nil {
		return err
	}
	if allThreads {
		f.Flag = seccomp.FilterFlagTSync
	}
	if err := seccomp.LoadFilter(f); err != nil {
		return fmt.Errorf("load seccomp filter: %w", err)
	}
	return nil
}
