package rootless

import (
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// The default seccomp profile is an allow list in the manner of Docker's
// (moby profiles/seccomp/default.json) and containers/common's: the calls
// ordinary programs make are allowed; calls that reach the kernel's
// less-guarded corners (keyrings, module and kexec loading, io_uring,
// swap, userfaultfd, ...) or that would let the container rebuild its own
// sandbox (mount, namespaces) fail with EPERM unless a capability that
// needs them is granted; a number the profile has never heard of, which a
// newer kernel may have added, fails with ENOSYS, so that libc falls back
// to an older call as it would on an older kernel. Names are those of the
// 64-bit ABIs; ones a table lacks (x86-only calls on arm64) are skipped.

// seccompAllowed are allowed whatever the capabilities.
var seccompAllowed = []string{
	"accept", "accept4", "access", "adjtimex", "alarm", "arch_prctl", "bind", "brk",
	"cachestat", "capget", "capset", "chdir", "chmod", "chown", "clock_adjtime",
	"clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range",
	"connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
	"epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
	"epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit",
	"exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate", "fanotify_mark",
	"fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl",
	"fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr",
	"fstat", "fstatfs", "fsync", "ftruncate", "futex", "futex_requeue", "futex_wait",
	"futex_waitv", "futex_wake", "futimesat", "get_robust_list", "get_thread_area",
	"getcpu", "getcwd", "getdents", "getdents64", "getegid", "geteuid", "getgid",
	"getgroups", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
	"getpriority", "getrandom", "getresgid", "getresuid", "getrlimit", "getrusage",
	"getsid", "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid",
	"getxattr", "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1",
	"inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents",
	"io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set", "kill",
	"landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
	"lgetxattr", "link", "linkat", "listen", "listmount", "listxattr", "listxattrat",
	"llistxattr", "lremovexattr", "lseek", "lsetxattr", "lsm_get_self_attr",
	"lsm_list_modules", "lstat", "madvise", "map_shadow_stack", "membarrier",
	"memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat",
	"mlock", "mlock2", "mlockall", "mmap", "modify_ldt", "mprotect", "mq_getsetattr",
	"mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap",
	"mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall",
	"munmap", "name_to_handle_at", "nanosleep", "newfstatat", "open", "openat",
	"openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc",
	"pkey_free", "pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv",
	"preadv2", "prlimit64", "process_mrelease", "process_vm_readv", "process_vm_writev",
	"pselect6", "ptrace", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
	"readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg",
	"remap_file_pages", "removexattr", "removexattrat", "rename", "renameat",
	"renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
	"rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
	"rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_get_priority_max",
	"sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
	"sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity", "sched_setattr",
	"sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select",
	"semctl", "semget", "semop", "semtimedop", "sendfile", "sendmmsg", "sendmsg",
	"sendto", "set_robust_list", "set_thread_area", "set_tid_address", "setfsgid",
	"setfsuid", "setgid", "setgroups", "setitimer", "setpgid", "setpriority",
	"setregid", "setresgid", "setresuid", "setreuid", "setrlimit", "setsid",
	"setsockopt", "setuid", "setxattr", "setxattrat", "shmat", "shmctl", "shmdt",
	"shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "socketpair", "splice",
	"stat", "statfs", "statmount", "statx", "symlink", "symlinkat", "sync",
	"sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
	"timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime",
	"timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill",
	"truncate", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime",
	"utimensat", "utimes", "vfork", "vmsplice", "wait4", "waitid", "write", "writev",
}

// seccompByCap re-opens calls for a capability, as Docker does: the
// kernel checks the capability itself, but without it the code behind
// these calls is better not reachable at all.
var seccompByCap = []struct {
	cap   string
	calls []string
}{
	{"SYS_ADMIN", []string{"bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount",
		"fsopen", "fspick", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
		"open_tree", "open_tree_attr", "perf_event_open", "pivot_root", "quotactl",
		"quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
		"umount2", "unshare"}},
	{"SYS_BOOT", []string{"reboot"}},
	{"SYS_CHROOT", []string{"chroot"}},
	{"SYS_MODULE", []string{"delete_module", "init_module", "finit_module"}},
	{"SYS_PACCT", []string{"acct"}},
	{"SYS_PTRACE", []string{"kcmp", "pidfd_getfd", "process_madvise"}},
	{"SYS_RAWIO", []string{"iopl", "ioperm"}},
	{"SYS_TIME", []string{"settimeofday", "clock_settime"}},
	{"SYS_TTY_CONFIG", []string{"vhangup"}},
	{"SYS_NICE", []string{"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}},
	{"SYSLOG", []string{"syslog"}},
	{"BPF", []string{"bpf"}},
	{"PERFMON", []string{"perf_event_open"}},
	{"DAC_READ_SEARCH", []string{"open_by_handle_at"}},
}

// cloneNSFlags are clone's namespace flags: clone may make threads and
// processes but no namespaces without CAP_SYS_ADMIN.
const cloneNSFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// How an argument rule matches the low 32 bits of its argument (each
// argument checked here is an int or a flags word the kernel truncates
// to 32 bits, so the high half cannot change the outcome).
type argTest int

const (
	argOneOf  argTest = iota // allowed when the argument is one of vals
	argNoneOf                // allowed when it is none of vals
	argNoBits                // allowed when it has none of the bits of vals[0]
)

// argRule allows a call by one of its arguments, and answers otherwise.
type argRule struct {
	arg       int
	test      argTest
	vals      []uint32
	otherwise uint32 // a SECCOMP_RET_* value
}

// seccompRule is what the filter does with one syscall number: ret, or,
// when check is set, what the argument check decides.
type seccompRule struct {
	ret   uint32
	check *argRule
}

var (
	retAllow = uint32(unix.SECCOMP_RET_ALLOW)
	retKill  = uint32(unix.SECCOMP_RET_KILL_PROCESS)
	retEPERM = retErrno(unix.EPERM)
	// retUnknown answers numbers the profile does not know.
	retUnknown = retErrno(unix.ENOSYS)
)

func retErrno(e unix.Errno) uint32 {
	return unix.SECCOMP_RET_ERRNO | uint32(e)&unix.SECCOMP_RET_DATA
}

// seccompRules resolves the profile for a capability set into a rule for
// every syscall number of the table: allowed, EPERM for every other call
// the table names, and the argument rules. Numbers outside the table get
// retUnknown from the filter.
func seccompRules(info *arch.Info, caps []string) map[uint32]seccompRule {
	rules := make(map[uint32]seccompRule, len(info.SyscallNumbers))
	for nr := range info.SyscallNumbers {
		rules[uint32(nr)] = seccompRule{ret: retEPERM}
	}
	set := func(name string, r seccompRule) {
		if nr, ok := info.SyscallNames[name]; ok {
			rules[uint32(nr)] = r
		}
	}
	for _, name := range seccompAllowed {
		set(name, seccompRule{ret: retAllow})
	}
	for _, g := range seccompByCap {
		if hasCap(caps, g.cap) {
			for _, name := range g.calls {
				set(name, seccompRule{ret: retAllow})
			}
		}
	}
	// Docker's personality values: Linux, 32-bit Linux, UNAME26 with
	// either, and the query (0xffffffff); the others change how the
	// kernel treats the process's memory and calls.
	set("personality", seccompRule{check: &argRule{arg: 0, test: argOneOf,
		vals: []uint32{0, 0x8, 0x20000, 0x20008, 0xffffffff}, otherwise: retEPERM}})
	// vsock reaches the hypervisor's host, outside the container's network.
	set("socket", seccompRule{check: &argRule{arg: 0, test: argNoneOf,
		vals: []uint32{unix.AF_VSOCK}, otherwise: retEPERM}})
	if !hasCap(caps, "SYS_ADMIN") {
		set("clone", seccompRule{check: &argRule{arg: 0, test: argNoBits,
			vals: []uint32{cloneNSFlags}, otherwise: retEPERM}})
		// clone3's flags sit in memory a filter cannot read: ENOSYS makes
		// libc fall back to clone, whose flags it can.
		set("clone3", seccompRule{ret: retErrno(unix.ENOSYS)})
	}
	return rules
}
