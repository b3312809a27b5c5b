package rootless

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"github.com/strata-run/strata/tests/harness"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// loadedProgram is the default program for caps as the kernel gets it:
// assembled to raw instructions and decoded again, so the checks below see
// what loadSeccomp loads, not the builder's intent.
func loadedProgram(t *testing.T, caps []string) []bpf.Instruction {
	t.Helper()
	dec, _ := loadedRaw(t, caps)
	return dec
}

func loadedRaw(t *testing.T, caps []string) ([]bpf.Instruction, []bpf.RawInstruction) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		harness.Skip(t, "an x86_64 host (these checks decode the x86_64 program)")
	}
	prog, err := seccompProgram(caps)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > bpfMaxInsns {
		t.Fatalf("%d instructions, the kernel takes %d", len(raw), bpfMaxInsns)
	}
	dec, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("the program holds instructions x/net/bpf cannot decode")
	}
	return dec, raw
}

// seccompData builds a struct seccomp_data for the VM. x/net/bpf's VM
// loads words big-endian where the kernel loads them in host order, so
// each 32-bit word is written big-endian: the filter then reads the
// values the kernel would give it, the low half of each argument at the
// offset a little-endian kernel has it.
func seccompData(nr, auditArch uint32, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], auditArch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[16+8*i+4:], uint32(a>>32))
	}
	return b
}

func runFilter(t *testing.T, vm *bpf.VM, data []byte) uint32 {
	t.Helper()
	ret, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret)
}

func retName(r uint32) string {
	switch {
	case r == retAllow:
		return "ALLOW"
	case r == retKill:
		return "KILL_PROCESS"
	case r&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_ERRNO:
		return fmt.Sprintf("ERRNO(%s)", unix.ErrnoName(unix.Errno(r&unix.SECCOMP_RET_DATA)))
	}
	return fmt.Sprintf("%#x", r)
}

func TestSeccompProgramHead(t *testing.T) {
	prog, raw := loadedRaw(t, DefaultCaps)
	want := []bpf.Instruction{
		// seccomp_data.arch, and anything but x86_64 is killed.
		bpf.LoadAbsolute{Off: 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AUDIT_ARCH_X86_64, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS},
		// seccomp_data.nr, and x32 numbers (but -1) are killed.
		bpf.LoadAbsolute{Off: 0, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: 0x40000000, SkipFalse: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0xffffffff, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS},
	}
	// Compared as raw instructions: decoding turns "jge k, 0, 2" into
	// the equal "jlt k, 2, 0".
	wantRaw, err := bpf.Assemble(want)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < len(wantRaw) || !reflect.DeepEqual(raw[:len(wantRaw)], wantRaw) {
		t.Fatalf("program starts\n%v\nwant\n%v", prog[:min(len(prog), len(want))], want)
	}
	if last := prog[len(prog)-1]; last != (bpf.RetConstant{Val: retErrno(unix.ENOSYS)}) {
		t.Errorf("last instruction %v, want ERRNO(ENOSYS) for numbers past the table", last)
	}
	t.Logf("%d instructions", len(prog))
}

func TestSeccompVerdicts(t *testing.T) {
	info, err := arch.GetInfo("x86_64")
	if err != nil {
		t.Fatal(err)
	}
	nr := func(name string) uint32 {
		n, ok := info.SyscallNames[name]
		if !ok {
			t.Fatalf("no %s in the x86_64 table", name)
		}
		return uint32(n)
	}
	withAdmin, _ := CapSet([]string{"SYS_ADMIN"}, nil)
	noChroot, _ := CapSet(nil, []string{"SYS_CHROOT"})
	none, _ := CapSet(nil, []string{"ALL"})
	x86 := uint32(unix.AUDIT_ARCH_X86_64)
	eperm, enosys := retErrno(unix.EPERM), retErrno(unix.ENOSYS)
	for _, c := range []struct {
		what string
		caps []string
		data []byte
		want uint32
	}{
		{"read", DefaultCaps, seccompData(nr("read"), x86), retAllow},
		{"getpid, no capabilities", none, seccompData(nr("getpid"), x86), retAllow},
		{"exit_group", DefaultCaps, seccompData(nr("exit_group"), x86), retAllow},
		{"i386 getpid", DefaultCaps, seccompData(20, unix.AUDIT_ARCH_I386), retKill},
		{"i386 with x86_64's read number", DefaultCaps, seccompData(0, unix.AUDIT_ARCH_I386), retKill},
		{"aarch64", DefaultCaps, seccompData(nr("read"), unix.AUDIT_ARCH_AARCH64), retKill},
		{"x32 getpid", DefaultCaps, seccompData(x32SyscallBit|39, x86), retKill},
		{"x32 read", DefaultCaps, seccompData(x32SyscallBit, x86), retKill},
		{"nr -1", DefaultCaps, seccompData(0xffffffff, x86), enosys},
		{"unknown nr 1000", DefaultCaps, seccompData(1000, x86), enosys},
		{"unknown nr 1000, SYS_ADMIN", withAdmin, seccompData(1000, x86), enosys},
		{"nr 400, a gap in the table", DefaultCaps, seccompData(400, x86), enosys},
		{"add_key", DefaultCaps, seccompData(nr("add_key"), x86), eperm},
		{"add_key, SYS_ADMIN", withAdmin, seccompData(nr("add_key"), x86), eperm},
		{"keyctl", DefaultCaps, seccompData(nr("keyctl"), x86), eperm},
		{"kexec_load", DefaultCaps, seccompData(nr("kexec_load"), x86), eperm},
		{"io_uring_setup", DefaultCaps, seccompData(nr("io_uring_setup"), x86), eperm},
		{"mount", DefaultCaps, seccompData(nr("mount"), x86), eperm},
		{"mount, SYS_ADMIN", withAdmin, seccompData(nr("mount"), x86), retAllow},
		{"unshare", DefaultCaps, seccompData(nr("unshare"), x86), eperm},
		{"unshare, SYS_ADMIN", withAdmin, seccompData(nr("unshare"), x86), retAllow},
		{"sethostname", DefaultCaps, seccompData(nr("sethostname"), x86), eperm},
		{"chroot", DefaultCaps, seccompData(nr("chroot"), x86), retAllow},
		{"chroot without SYS_CHROOT", noChroot, seccompData(nr("chroot"), x86), eperm},
		{"fork by clone", DefaultCaps, seccompData(nr("clone"), x86, uint64(unix.SIGCHLD)), retAllow},
		{"thread by clone", DefaultCaps, seccompData(nr("clone"), x86, unix.CLONE_VM|unix.CLONE_THREAD|unix.CLONE_SIGHAND|unix.CLONE_FS|unix.CLONE_FILES), retAllow},
		{"clone of a user namespace", DefaultCaps, seccompData(nr("clone"), x86, unix.CLONE_NEWUSER|uint64(unix.SIGCHLD)), eperm},
		{"clone of a net namespace", DefaultCaps, seccompData(nr("clone"), x86, unix.CLONE_NEWNET), eperm},
		{"clone of a user namespace, SYS_ADMIN", withAdmin, seccompData(nr("clone"), x86, unix.CLONE_NEWUSER), retAllow},
		{"clone3", DefaultCaps, seccompData(nr("clone3"), x86), enosys},
		{"clone3, SYS_ADMIN", withAdmin, seccompData(nr("clone3"), x86), retAllow},
		{"socket AF_INET", DefaultCaps, seccompData(nr("socket"), x86, unix.AF_INET), retAllow},
		{"socket AF_VSOCK", DefaultCaps, seccompData(nr("socket"), x86, unix.AF_VSOCK), eperm},
		{"personality query", DefaultCaps, seccompData(nr("personality"), x86, 0xffffffff), retAllow},
		{"personality PER_LINUX", DefaultCaps, seccompData(nr("personality"), x86, 0), retAllow},
		{"personality ADDR_NO_RANDOMIZE", DefaultCaps, seccompData(nr("personality"), x86, 0x0040000), eperm}, // ADDR_NO_RANDOMIZE,
		{"ptrace", DefaultCaps, seccompData(nr("ptrace"), x86), retAllow},
		{"kcmp", DefaultCaps, seccompData(nr("kcmp"), x86), eperm},
	} {
		vm, err := bpf.NewVM(loadedProgram(t, c.caps))
		if err != nil {
			t.Fatal(err)
		}
		if got := runFilter(t, vm, c.data); got != c.want {
			t.Errorf("%s: %s, want %s", c.what, retName(got), retName(c.want))
		}
	}
}

// TestSeccompEveryNumber runs every number of the table (and a margin past
// it) through the program and checks it against the resolved rules, so
// the runs' layout can lose or shift no call.
func TestSeccompEveryNumber(t *testing.T) {
	info, _ := arch.GetInfo("x86_64")
	all, _ := CapSet([]string{"ALL"}, nil)
	none, _ := CapSet(nil, []string{"ALL"})
	for _, caps := range [][]string{DefaultCaps, all, none} {
		vm, err := bpf.NewVM(loadedProgram(t, caps))
		if err != nil {
			t.Fatal(err)
		}
		rules := seccompRules(info, caps)
		allowed := 0
		for nr := uint32(0); nr < 600; nr++ {
			want := retUnknown
			if r, ok := rules[nr]; ok {
				if r.check != nil {
					continue // argument checks: TestSeccompVerdicts
				}
				want = r.ret
			}
			if got := runFilter(t, vm, seccompData(nr, unix.AUDIT_ARCH_X86_64)); got != want {
				t.Errorf("caps %v: nr %d (%s): %s, want %s", caps, nr, info.SyscallNumbers[int(nr)], retName(got), retName(want))
			}
			if want == retAllow {
				allowed++
			}
		}
		t.Logf("%d capabilities: %d calls allowed outright", len(caps), allowed)
	}
	// Every name of the profile is one the table knows, or a typo would
	// quietly deny a call.
	for _, name := range seccompAllowed {
		if _, ok := info.SyscallNames[name]; !ok {
			t.Errorf("allowed %q is no x86_64 syscall", name)
		}
	}
	for _, g := range seccompByCap {
		if _, ok := capNumber(g.cap); !ok {
			t.Errorf("group of unknown capability %s", g.cap)
		}
	}
}
