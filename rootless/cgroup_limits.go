package rootless

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

// Limits are a run's resource flags as the user typed them, in podman's
// syntax; Run parses them, so every value error names its flag.
type Limits struct {
	Memory            string // --memory: 64m, 1g, bytes
	MemorySwap        string // --memory-swap: memory plus swap; -1 unlimited
	MemoryReservation string // --memory-reservation: a soft floor (memory.low)
	CPUs              string // --cpus: 0.5
	CPUShares         string // --cpu-shares: cgroup v1 shares, 2..262144
	CPUWeight         string // --cpu-weight: cgroup v2 weight, 1..10000
	CpusetCPUs        string // --cpuset-cpus: 0-3,5
	PidsLimit         string // --pids-limit: -1 or 0 unlimited
}

// resources are parsed Limits. Zero means "not asked for".
type resources struct {
	memory, memorySwap, memoryLow int64 // memorySwap: -1 = unlimited
	swapSet                       bool  // --memory-swap given (else podman's default: as much swap as memory)
	cpuQuota                      int64 // µs per cpuPeriod
	cpuWeight                     uint64
	cpusetCPUs                    string
	pidsMax                       int64 // -1 = unlimited
	pidsSet                       bool
	flags                         []string // the flags given, for messages
}

const cpuPeriod = 100000

// any reports whether a limit was asked for.
func (r resources) any() bool { return len(r.flags) > 0 }

// controllers are the cgroup v2 controllers the limits need.
func (r resources) controllers() []string {
	var out []string
	if r.memory != 0 || r.swapSet || r.memoryLow != 0 {
		out = append(out, "memory")
	}
	if r.cpuQuota != 0 || r.cpuWeight != 0 {
		out = append(out, "cpu")
	}
	if r.cpusetCPUs != "" {
		out = append(out, "cpuset")
	}
	if r.pidsSet {
		out = append(out, "pids")
	}
	return out
}

// podman's minimum: below it a container cannot even start its runtime.
const minMemory = 6 << 20

func parseLimits(l Limits) (resources, error) {
	var r resources
	var err error
	if l.Memory != "" {
		r.flags = append(r.flags, "--memory "+l.Memory)
		if r.memory, err = ParseBytes(l.Memory); err != nil {
			return r, fmt.Errorf("--memory %q: %w", l.Memory, err)
		}
		if r.memory < minMemory {
			return r, fmt.Errorf("--memory %q: the minimum memory limit is 6m", l.Memory)
		}
	}
	if l.MemorySwap != "" {
		r.flags = append(r.flags, "--memory-swap "+l.MemorySwap)
		r.swapSet = true
		if l.MemorySwap == "-1" {
			r.memorySwap = -1
		} else if r.memorySwap, err = ParseBytes(l.MemorySwap); err != nil {
			return r, fmt.Errorf("--memory-swap %q: %w", l.MemorySwap, err)
		}
		switch {
		case r.memory == 0:
			return r, fmt.Errorf("--memory-swap needs --memory too (it is memory plus swap)")
		case r.memorySwap != -1 && r.memorySwap < r.memory:
			return r, fmt.Errorf("--memory-swap %s must be at least --memory %s (it is memory plus swap; -1 for unlimited swap)", l.MemorySwap, l.Memory)
		}
	}
	if l.MemoryReservation != "" {
		r.flags = append(r.flags, "--memory-reservation "+l.MemoryReservation)
		if r.memoryLow, err = ParseBytes(l.MemoryReservation); err != nil {
			return r, fmt.Errorf("--memory-reservation %q: %w", l.MemoryReservation, err)
		}
		if r.memory != 0 && r.memoryLow > r.memory {
			return r, fmt.Errorf("--memory-reservation %s must not exceed --memory %s", l.MemoryReservation, l.Memory)
		}
	}
	if l.CPUs != "" {
		r.flags = append(r.flags, "--cpus "+l.CPUs)
		cpus, err := strconv.ParseFloat(l.CPUs, 64)
		if err != nil || cpus <= 0 || math.IsInf(cpus, 0) || math.IsNaN(cpus) {
			return r, fmt.Errorf("--cpus %q: want a positive number such as 0.5 or 2", l.CPUs)
		}
		if n := runtime.NumCPU(); cpus > float64(n) {
			return r, fmt.Errorf("--cpus %s: this host has %d CPUs (the range is 0.01 to %d)", l.CPUs, n, n)
		}
		r.cpuQuota = int64(math.Round(cpus * cpuPeriod))
		if r.cpuQuota < 1000 { // the kernel's minimum quota
			r.cpuQuota = 1000
		}
	}
	if l.CPUShares != "" && l.CPUWeight != "" {
		return r, errors.New("--cpu-shares and --cpu-weight set the same thing: give one")
	}
	if l.CPUShares != "" {
		r.flags = append(r.flags, "--cpu-shares "+l.CPUShares)
		shares, err := strconv.ParseUint(l.CPUShares, 10, 64)
		if err != nil || shares < 2 || shares > 262144 {
			return r, fmt.Errorf("--cpu-shares %q: want 2 to 262144 (1024 is the default weight)", l.CPUShares)
		}
		// The conversion runc and crun use, so a share means the same
		// under every runtime.
		r.cpuWeight = 1 + ((shares-2)*9999)/262142
	}
	if l.CPUWeight != "" {
		r.flags = append(r.flags, "--cpu-weight "+l.CPUWeight)
		if r.cpuWeight, err = strconv.ParseUint(l.CPUWeight, 10, 64); err != nil || r.cpuWeight < 1 || r.cpuWeight > 10000 {
			return r, fmt.Errorf("--cpu-weight %q: want 1 to 10000 (100 is the default)", l.CPUWeight)
		}
	}
	if l.CpusetCPUs != "" {
		r.flags = append(r.flags, "--cpuset-cpus "+l.CpusetCPUs)
		if !cpuListRE.MatchString(l.CpusetCPUs) {
			return r, fmt.Errorf("--cpuset-cpus %q: want a list such as 0-3,5", l.CpusetCPUs)
		}
		r.cpusetCPUs = l.CpusetCPUs
	}
	if l.PidsLimit != "" {
		r.flags = append(r.flags, "--pids-limit "+l.PidsLimit)
		n, err := strconv.ParseInt(l.PidsLimit, 10, 64)
		if err != nil || n < -1 {
			return r, fmt.Errorf("--pids-limit %q: want a number of processes, or -1 for unlimited", l.PidsLimit)
		}
		r.pidsSet = true
		r.pidsMax = n
		if n == 0 { // podman: 0 is unlimited too
			r.pidsMax = -1
		}
	}
	return r, nil
}

var cpuListRE = regexp.MustCompile(`^\d+(-\d+)?(,\d+(-\d+)?)*$`)

var bytesRE = regexp.MustCompile(`^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$`)

// ParseBytes reads a size as podman does (docker/go-units RAMInBytes):
// a number with an optional binary unit, b, k, m, g, t or p, any case,
// with an optional "b" or "ib" after it.
func ParseBytes(s string) (int64, error) {
	m := bytesRE.FindStringSubmatch(s)
	if m == nil {
		return 0, errors.New("want a size such as 64m, 1g or a number of bytes")
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, errors.New("want a size such as 64m, 1g or a number of bytes")
	}
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}[strings.ToLower(m[2])]
	v *= float64(uint64(1) << shift)
	if v >= math.MaxInt64 {
		return 0, errors.New("too large")
	}
	return int64(v), nil
}

// writeLimits puts r into the cgroup at dir.
func writeLimits(dir string, r resources) error {
	type file struct {
		name, value string
		optional    bool // the kernel may lack it (swap accounting) and nobody asked
	}
	var files []file
	if r.cpusetCPUs != "" {
		files = append(files, file{"cpuset.cpus", r.cpusetCPUs, false})
	}
	if r.memory != 0 {
		files = append(files, file{"memory.max", strconv.FormatInt(r.memory, 10), false})
		swap := "0"
		switch {
		case !r.swapSet:
			// podman's default: memory-swap twice memory, so as much swap as memory.
			swap = strconv.FormatInt(r.memory, 10)
		case r.memorySwap == -1:
			swap = "max"
		default:
			swap = strconv.FormatInt(r.memorySwap-r.memory, 10)
		}
		files = append(files, file{"memory.swap.max", swap, !r.swapSet})
	}
	if r.memoryLow != 0 {
		files = append(files, file{"memory.low", strconv.FormatInt(r.memoryLow, 10), false})
	}
	if r.cpuQuota != 0 {
		files = append(files, file{"cpu.max", fmt.Sprintf("%d %d", r.cpuQuota, cpuPeriod), false})
	}
	if r.cpuWeight != 0 {
		files = append(files, file{"cpu.weight", strconv.FormatUint(r.cpuWeight, 10), false})
	}
	if r.pidsSet {
		v := "max"
		if r.pidsMax > 0 {
			v = strconv.FormatInt(r.pidsMax, 10)
		}
		files = append(files, file{"pids.max", v, false})
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte(f.value), 0); err != nil {
			if f.optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			if f.name == "memory.swap.max" && errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("cgroup %s: --memory-swap needs swap accounting, which this kernel lacks (boot with swapaccount=1, or leave --memory-swap out): %w", p, err)
			}
			return fmt.Errorf("cgroup %s: write %q: %w", p, f.value, err)
		}
	}
	return nil
}
