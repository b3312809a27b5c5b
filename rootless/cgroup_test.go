package rootless

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"64m": 64 << 20, "64M": 64 << 20, "1g": 1 << 30, "1GiB": 1 << 30, "512kb": 512 << 10,
		"100": 100, "1.5g": 3 << 29, "10 MB": 10 << 20} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "m", "-1", "10x", "1e3", "ten"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q): no error", in)
		}
	}
}

func TestParseLimits(t *testing.T) {
	r, err := parseLimits(Limits{Memory: "64m", CPUs: "0.5", CPUShares: "1024", CpusetCPUs: "0", PidsLimit: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if r.memory != 64<<20 || r.cpuQuota != 50000 || r.cpuWeight != 39 || r.pidsMax != -1 || !r.pidsSet {
		t.Errorf("parsed %+v", r)
	}
	if got := strings.Join(r.controllers(), " "); got != "memory cpu cpuset pids" {
		t.Errorf("controllers %q", got)
	}
	if r, _ := parseLimits(Limits{}); r.any() {
		t.Error("no flags, yet limits")
	}
	for _, l := range []Limits{
		{Memory: "1m"},                     // below podman's minimum
		{MemorySwap: "1g"},                 // without --memory
		{Memory: "64m", MemorySwap: "32m"}, // less than memory
		{Memory: "64m", MemoryReservation: "128m"},
		{CPUs: "0"}, {CPUs: "100000"},
		{CPUShares: "1"}, {CPUWeight: "10001"}, {CPUShares: "2", CPUWeight: "2"},
		{CpusetCPUs: "0-"}, {PidsLimit: "-2"},
	} {
		if _, err := parseLimits(l); err == nil {
			t.Errorf("parseLimits(%+v): no error", l)
		}
	}
}

// writeLimits into a plain directory: the files the kernel would get,
// with podman's swap default (as much swap as memory).
func TestWriteLimits(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"memory.max", "memory.swap.max", "memory.low", "cpu.max", "cpu.weight", "cpuset.cpus", "pids.max"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o600)
	}
	r, err := parseLimits(Limits{Memory: "64m", MemoryReservation: "32m", CPUs: "1.5", CPUWeight: "200", CpusetCPUs: "0-1", PidsLimit: "20"})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeLimits(dir, r); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"memory.max": "67108864", "memory.swap.max": "67108864", "memory.low": "33554432",
		"cpu.max": "150000 100000", "cpu.weight": "200", "cpuset.cpus": "0-1", "pids.max": "20"} {
		if got, _ := os.ReadFile(filepath.Join(dir, f)); string(got) != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
}

func TestOOMKills(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"), 0o600)
	if n := readOOMKills(dir); n != 1 {
		t.Errorf("oom_kill %d", n)
	}
}
