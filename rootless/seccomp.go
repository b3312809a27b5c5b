package rootless

import (
	"fmt"
	"runtime"
	"sort"
	"unsafe"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6].
const (
	seccompNrOff   = 0
	seccompArchOff = 4
	seccompArgsOff = 16
)

// x32SyscallBit marks the x32 ABI's numbers on x86_64: same audit arch,
// different table, so only the number tells them apart.
const x32SyscallBit = 0x40000000

// bpfMaxInsns is the kernel's limit on a classic BPF program.
const bpfMaxInsns = 4096

// seccompProgram assembles the default profile for a capability set on
// this machine's architecture.
func seccompProgram(caps []string) ([]bpf.Instruction, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp profile for %s: %w", runtime.GOARCH, err)
	}
	prog := seccompAssemble(info, seccompRules(info, caps))
	if len(prog) > bpfMaxInsns {
		return nil, fmt.Errorf("seccomp profile for %s: %d instructions, the kernel takes at most %d", info.Name, len(prog), bpfMaxInsns)
	}
	return prog, nil
}

// seccompAssemble lays the rules out as a classic BPF program:
//
//  1. A call from any ABI but the native one (i386's int 0x80 from an
//     x86_64 process, say) kills the process: its numbers mean other calls,
//     and the rules below were not written for them. So do x32 numbers,
//     which share x86_64's audit arch; -1 passes on, as libseccomp lets it,
//     since it is how a tracer skips a call (and is no call to allow).
//  2. The numbers 0..max of the table, split into runs with the same rule,
//     in ascending order and without gaps: the first run whose top is at
//     least nr holds nr, so each run costs a compare and its verdict, and
//     no jump is longer than one argument check.
//  3. Anything above: retUnknown.
//
// Only argument checks read more than nr and arch, so the kernel's
// per-syscall cache of constant verdicts covers every other call.
func seccompAssemble(info *arch.Info, rules map[uint32]seccompRule) []bpf.Instruction {
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: seccompArchOff, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: retKill},
		bpf.LoadAbsolute{Off: seccompNrOff, Size: 4},
	}
	if info.ID == unix.AUDIT_ARCH_X86_64 {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0xffffffff, SkipTrue: 1},
			bpf.RetConstant{Val: retKill},
		)
	}
	for _, r := range seccompRuns(rules) {
		body := r.rule.code()
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: r.top, SkipTrue: uint8(len(body))})
		prog = append(prog, body...)
	}
	return append(prog, bpf.RetConstant{Val: retUnknown})
}

type seccompRun struct {
	top  uint32 // the run holds the numbers above the previous run's top up to this
	rule seccompRule
}

// seccompRuns merges the rules into runs covering 0..max, numbers missing
// from the table answering retUnknown. A rule with an argument check is a
// run of its own.
func seccompRuns(rules map[uint32]seccompRule) []seccompRun {
	nrs := make([]uint32, 0, len(rules))
	for nr := range rules {
		nrs = append(nrs, nr)
	}
	sort.Slice(nrs, func(i, j int) bool { return nrs[i] < nrs[j] })
	var runs []seccompRun
	add := func(top uint32, r seccompRule) {
		if n := len(runs); n > 0 && r.check == nil && runs[n-1].rule.check == nil && runs[n-1].rule.ret == r.ret {
			runs[n-1].top = top
			return
		}
		runs = append(runs, seccompRun{top: top, rule: r})
	}
	next := uint32(0)
	for _, nr := range nrs {
		if nr > next {
			add(nr-1, seccompRule{ret: retUnknown})
		}
		add(nr, rules[nr])
		next = nr + 1
	}
	return runs
}

// code is the rule's verdict as instructions that always return.
func (r seccompRule) code() []bpf.Instruction {
	c := r.check
	if c == nil {
		return []bpf.Instruction{bpf.RetConstant{Val: r.ret}}
	}
	// The compares jump, on a match, over the ones after them and the
	// first return to the second.
	first, second := retAllow, c.otherwise
	if c.test == argOneOf {
		first, second = c.otherwise, retAllow
	}
	code := []bpf.Instruction{bpf.LoadAbsolute{Off: seccompArgLow(c.arg), Size: 4}}
	if c.test == argNoBits {
		code = append(code, bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: c.vals[0], SkipTrue: 1})
	} else {
		for i, v := range c.vals {
			code = append(code, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v, SkipTrue: uint8(len(c.vals) - i)})
		}
	}
	return append(code, bpf.RetConstant{Val: first}, bpf.RetConstant{Val: second})
}

// seccompArgLow is the offset of the low half of argument i; every
// architecture with a syscall table here is little-endian.
func seccompArgLow(i int) uint32 {
	return uint32(seccompArgsOff + 8*i)
}

// loadSeccomp installs the default profile on the calling thread, or with
// allThreads on every thread of the process (SECCOMP_FILTER_FLAG_TSYNC).
// no_new_privs must be set already.
func loadSeccomp(caps []string, allThreads bool) error {
	prog, err := seccompProgram(caps)
	if err != nil {
		return err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return fmt.Errorf("seccomp filter: assemble: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	var flags uintptr
	if allThreads {
		flags = unix.SECCOMP_FILTER_FLAG_TSYNC
	}
	r, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	if e != 0 {
		return fmt.Errorf("seccomp filter: load: %w", e)
	}
	if r != 0 {
		// TSYNC names the first thread it could not bring along.
		return fmt.Errorf("seccomp filter: thread %d could not take the filter", r)
	}
	return nil
}
