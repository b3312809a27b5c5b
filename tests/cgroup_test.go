package tests

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-run/strata/tests/harness"
)

// guestChecks are the checks tests/vm/guest-test.sh must report as ok.
var guestChecks = []string{"view", "gone-after-run", "view-net-host", "oom", "gone-after-oom", "pids", "gone-after-pids",
	"cpus", "gone-after-cpus", "cpuset", "weight-swap-reservation", "stats", "gone-after-sigkill", "no-limits", "gone-after-no-limits"}

// TestCgroupV2Guest boots a real cgroup v2 host, Debian's own kernel with
// cgroup_no_v1=all under QEMU (TCG: this machine's cgroups are hybrid and
// must not change, and it has no usable KVM), with the strata binary of
// this checkout, and reads the results of tests/vm/guest-test.sh, run
// there as an unprivileged user in a cgroup root delegated to it (the
// cgroupfs way), off the serial console.
func TestCgroupV2Guest(t *testing.T) {
	bootGuest(t, "base", "cgroupfs", 768, 5*time.Minute)
}

// bootGuest boots the guest flavour (base or systemd), whose test script
// checks the delegation way mode, and fails t on any failed check, on a
// check missing, or when the guest does not finish within limit.
func bootGuest(t *testing.T, flavour, mode string, memMiB int, limit time.Duration) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		harness.Skip(t, "qemu-system-x86_64 (make vm)")
	}
	build := filepath.Join(harness.RepoRoot(), "tests", "vm", "build.sh")
	out, err := exec.Command(build, "dir").Output()
	if err != nil {
		t.Fatalf("%s dir: %v", build, err)
	}
	cache := strings.TrimSpace(string(out))
	target := map[string]string{"base": "make vm", "systemd": "make vm-systemd"}[flavour]
	for _, f := range []string{"vmlinuz", flavour + ".cpio.gz"} {
		if _, err := os.Stat(filepath.Join(cache, f)); err != nil {
			harness.Skip(t, "the cgroup v2 test guest "+filepath.Join(cache, f)+" ("+target+")")
		}
	}
	bin := harness.Binary(t) // CGO_ENABLED=0: static, so it runs in the guest
	initrd := filepath.Join(t.TempDir(), "initrd.img")
	if out, err := exec.Command(build, "app", bin, initrd, flavour).CombinedOutput(); err != nil {
		t.Fatalf("%s app: %v: %s", build, err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", strconv.Itoa(memMiB), "-smp", "2",
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", filepath.Join(cache, "vmlinuz"), "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 quiet")
	// Only the QEMU started here is killed on the time-out.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	var console []string
	var booted, exited, ended bool
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := strings.TrimSpace(strings.ReplaceAll(sc.Text(), "\r", ""))
		console = append(console, line)
		i := strings.Index(line, "CGTEST")
		if i < 0 {
			continue
		}
		line = line[i:]
		t.Log(line)
		f := strings.Fields(line)
		switch {
		case f[0] == "CGTEST-BOOT":
			booted = true
			t.Logf("guest booted after %s (guest uptime %s s)", time.Since(start).Round(100*time.Millisecond), f[1])
		case f[0] == "CGTEST-EXIT":
			exited = true
			if len(f) < 2 || f[1] != "0" {
				t.Errorf("guest-test.sh: %s", line)
			}
		case f[0] == "CGTEST-END":
			ended = true
		case len(f) >= 3 && f[1] == "ok":
			got[f[2]] = true
		case len(f) >= 3 && f[1] == "FAIL":
			t.Errorf("in the guest: %s", line)
		}
	}
	werr := cmd.Wait()
	t.Logf("guest run took %s", time.Since(start).Round(100*time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("the guest did not finish within %s (QEMU killed); console:\n%s", limit, strings.Join(console, "\n"))
	}
	if werr != nil {
		t.Errorf("qemu: %v", werr)
	}
	if !booted || !exited || !ended {
		t.Fatalf("the guest did not run to the end (boot %v, tests %v, end %v); console:\n%s", booted, exited, ended, strings.Join(console, "\n"))
	}
	for _, c := range append([]string{"doctor-" + mode}, guestChecks...) {
		if !got[c] {
			t.Errorf("check %s did not report ok", c)
		}
	}
}

// TestCgroupLimitsWithoutDelegation is this host's case, hybrid cgroups
// (or any host without a delegated cgroup v2 for the test user): a run
// asking for a limit fails with 125 and names the fix, and leaves no
// container; one without limits runs as ever. Where the user does have
// delegation, the limit must be in force instead.
func TestCgroupLimitsWithoutDelegation(t *testing.T) {
	e := newRunEnv(t, harness.User(t), false)
	doctor := e.run("", "doctor")
	if !strings.Contains(doctor.stdout, "resource limits") {
		t.Fatalf("strata doctor: exit %d\n%s%s", doctor.code, doctor.stdout, doctor.stderr)
	}
	t.Logf("strata doctor (exit %d):\n%s", doctor.code, doctor.stdout)

	r := e.run("", "run", "--rm", "--memory", "10m", "--rootfs", e.rootfs, "cat", "/sys/fs/cgroup/memory.max")
	if strings.Contains(doctor.stdout, "available, through") {
		if r.code != 0 || strings.TrimSpace(r.stdout) != "10485760" {
			t.Fatalf("with delegation, --memory 10m: exit %d, memory.max %q, stderr %s", r.code, r.stdout, r.stderr)
		}
	} else {
		if r.code != 125 {
			t.Fatalf("--memory 10m without delegation: exit %d, want 125\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "--memory 10m needs a delegated cgroup v2 subtree") ||
			!(strings.Contains(r.stderr, "cgroup_no_v1=all") || strings.Contains(r.stderr, "enable-linger") || strings.Contains(r.stderr, "Delegate=")) {
			t.Errorf("the message names neither the missing piece nor its fix:\n%s", r.stderr)
		}
		if !strings.Contains(doctor.stdout, "FAIL") || doctor.code != 1 {
			t.Errorf("strata doctor should fail (exit 1) and say what: exit %d", doctor.code)
		}
	}
	if cs := e.containers(); len(cs) != 0 {
		t.Errorf("containers left after the refused run: %v", cs)
	}

	if out := e.ok("run", "--rm", "--rootfs", e.rootfs, "echo", "no limits"); strings.TrimSpace(out) != "no limits" {
		t.Errorf("a run without limits printed %q", out)
	}
	for _, bad := range [][]string{{"--memory", "10x"}, {"--cpus", "-1"}, {"--pids-limit", "many"}, {"--memory-swap", "5m", "--memory", "10m"}} {
		args := append(append([]string{"run", "--rm"}, bad...), "--rootfs", e.rootfs, "true")
		if r := e.run("", args...); r.code != 125 || !strings.Contains(r.stderr, bad[0]) {
			t.Errorf("strata %v: exit %d, want 125 naming %s; stderr: %s", args, r.code, bad[0], r.stderr)
		}
	}
}
