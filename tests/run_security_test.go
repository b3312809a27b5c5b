package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/strata-run/strata/tests/harness"
)

// capabilityBits is capability.h's order, so the tests compute the masks
// they expect themselves rather than take them from strata.
var capabilityBits = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
	"LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
	"WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// dockerDefaultCaps is Docker's default capability set.
var dockerDefaultCaps = []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW",
	"SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}

func capMaskOf(t *testing.T, names ...string) uint64 {
	t.Helper()
	var m uint64
	for _, n := range names {
		i := 0
		for i < len(capabilityBits) && capabilityBits[i] != n {
			i++
		}
		if i == len(capabilityBits) {
			t.Fatalf("no capability %s", n)
		}
		m |= 1 << uint(i)
	}
	return m
}

// allCaps is every capability this kernel has.
func allCaps(t *testing.T) uint64 {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Fatal(err)
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return 1<<uint(last+1) - 1
}

// installHelpers builds sechelper into the env's rootfs as /bin/sechelper,
// plus a copy /bin/suidhelper that is setuid root inside the container.
func installHelpers(t *testing.T, e *runEnv) {
	t.Helper()
	helper := filepath.Join(e.rootfs, "bin/sechelper")
	build := exec.Command("go", "build", "-o", helper, "./tests/testdata/sechelper")
	build.Dir = harness.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sechelper: %v\n%s", err, out)
	}
	data, err := os.ReadFile(helper)
	if err != nil {
		t.Fatal(err)
	}
	suid := filepath.Join(e.rootfs, "bin/suidhelper")
	if err := os.WriteFile(suid, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// Root inside is the user's own id outside (real root's, as root).
	owner := 0
	if !e.asRoot {
		owner = e.user.UID
	}
	for _, f := range []string{helper, suid} {
		if err := os.Chown(f, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	// After the chown, which clears the bit.
	if err := os.Chmod(suid, 0o4755); err != nil {
		t.Fatal(err)
	}
}

// securityEnvs runs fn as the unprivileged test user and as real root.
func securityEnvs(t *testing.T, fn func(t *testing.T, e *runEnv)) {
	t.Run("user", func(t *testing.T) {
		e := newRunEnv(t, harness.User(t), false)
		installHelpers(t, e)
		fn(t, e)
	})
	t.Run("root", func(t *testing.T) {
		harness.RequireRoot(t)
		e := newRunEnv(t, harness.TestUser{Name: "root"}, true)
		installHelpers(t, e)
		fn(t, e)
	})
}

// TestRunCaps: the command holds exactly the requested capabilities,
// with and without --init, as root and as another user, and a setuid-root
// file adds none (no_new_privs and a nosuid rootfs both say so).
func TestRunCaps(t *testing.T) {
	securityEnvs(t, func(t *testing.T, e *runEnv) {
		def := capMaskOf(t, dockerDefaultCaps...)
		all := allCaps(t)
		for _, c := range []struct {
			name  string
			flags []string
			uid   int
			bnd   uint64
		}{
			{"defaults", nil, 0, def},
			{"drop ALL", []string{"--cap-drop", "ALL"}, 0, 0},
			{"drop ALL add CHOWN,KILL", []string{"--cap-drop", "ALL", "--cap-add", "CHOWN", "--cap-add", "cap_kill"}, 0, capMaskOf(t, "CHOWN", "KILL")},
			{"add SYS_ADMIN drop NET_RAW,MKNOD", []string{"--cap-add", "SYS_ADMIN", "--cap-drop", "NET_RAW", "--cap-drop", "MKNOD"}, 0,
				(def | capMaskOf(t, "SYS_ADMIN")) &^ capMaskOf(t, "NET_RAW", "MKNOD")},
			{"add ALL", []string{"--cap-add", "ALL"}, 0, all},
			{"add ALL drop SYS_ADMIN", []string{"--cap-add", "ALL", "--cap-drop", "SYS_ADMIN"}, 0, all &^ capMaskOf(t, "SYS_ADMIN")},
			{"-u 1000", []string{"-u", "1000"}, 1000, def},
			{"-u 1000 add NET_ADMIN", []string{"-u", "1000", "--cap-add", "NET_ADMIN"}, 1000, def | capMaskOf(t, "NET_ADMIN")},
			{"-u 1000 drop ALL", []string{"-u", "1000", "--cap-drop", "ALL"}, 1000, 0},
		} {
			// Root gets its bounding set, anyone else nothing: neither
			// inherits nor holds ambient capabilities.
			prm := c.bnd
			if c.uid != 0 {
				prm = 0
			}
			want := fmt.Sprintf("euid=%d CapInh=%016x CapPrm=%016x CapEff=%016x CapBnd=%016x CapAmb=%016x", c.uid, 0, prm, prm, c.bnd, 0)
			for _, init := range []bool{false, true} {
				args := []string{"run", "--rm"}
				if init {
					args = append(args, "--init")
				}
				args = append(append(args, c.flags...), "--rootfs", e.rootfs, "--", "sh", "-c", "sechelper status; suidhelper status")
				out := e.ok(args...)
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 2 || lines[0] != want || lines[1] != want {
					t.Errorf("%s, init=%v: command, then the setuid-root file:\n%s\nwant twice:\n%s", c.name, init, out, want)
				}
			}
		}
		// What the capabilities are for, from the report that found
		// --init handing out all of them.
		script := "chown 1000 /etc/passwd && echo chown; hostname other 2>/dev/null && echo hostname; ip link set lo down 2>/dev/null && echo ip; echo end"
		for _, c := range []struct {
			flags []string
			want  string
		}{
			{[]string{"--cap-drop", "ALL"}, "end"},
			{nil, "chown\nend"},
			{[]string{"--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN"}, "chown\nhostname\nip\nend"},
		} {
			for _, init := range []bool{false, true} {
				args := []string{"run", "--rm"}
				if init {
					args = append(args, "--init")
				}
				args = append(append(args, c.flags...), "--rootfs", e.rootfs, "--", "sh", "-c", script)
				if out := strings.TrimSpace(e.run("", args...).stdout); out != c.want {
					t.Errorf("%v init=%v: %q, want %q", c.flags, init, out, c.want)
				}
			}
		}
	})
}

func TestRunSeccomp(t *testing.T) {
	securityEnvs(t, func(t *testing.T, e *runEnv) {
		// Creating a user namespace needs no capability, so only the
		// filter stops it.
		r := e.run("", "run", "--rm", "--rootfs", e.rootfs, "--", "unshare", "-U", "true")
		if r.code == 0 || !strings.Contains(r.stderr, "Operation not permitted") {
			t.Errorf("unshare under the default filter: exit %d %q, want EPERM", r.code, r.stderr)
		}
		r = e.run("", "run", "--rm", "--security-opt", "seccomp=unconfined", "--rootfs", e.rootfs, "--", "sh", "-c", "unshare -U true && grep Seccomp: /proc/self/status")
		if r.code != 0 || !strings.Contains(r.stdout, "Seccomp:\t0") {
			t.Errorf("unshare with seccomp=unconfined: exit %d %q %q", r.code, r.stdout, r.stderr)
		}

		// A number no table has is answered ENOSYS, as by a kernel that
		// lacks it, and the caller goes on.
		script := "sechelper add_key; sechelper clone-userns; sechelper clone; sechelper nr 1000; echo alive; mount -t tmpfs none /tmp 2>/dev/null && echo mounted; true"
		want := "add_key: operation not permitted\nclone-userns: fork/exec /bin/true: operation not permitted\nclone: ok\nnr 1000: function not implemented\nalive\n"
		for _, init := range []bool{false, true} {
			args := []string{"run", "--rm"}
			if init {
				args = append(args, "--init")
			}
			args = append(args, "--rootfs", e.rootfs, "--", "sh", "-c", script)
			if out := e.ok(args...); out != want {
				t.Errorf("default filter, init=%v:\n%s\nwant:\n%s", init, out, want)
			}
			// CAP_SYS_ADMIN re-opens mount and namespaces; keyrings stay shut.
			args = append([]string{"run", "--rm", "--cap-add", "SYS_ADMIN"}, args[2:]...)
			if out := e.ok(args...); !strings.Contains(out, "clone-userns: ok") || !strings.Contains(out, "mounted") || !strings.Contains(out, "add_key: operation not permitted") {
				t.Errorf("--cap-add SYS_ADMIN, init=%v:\n%s", init, out)
			}
		}
		if out := e.ok("run", "--rm", "--security-opt", "seccomp=unconfined", "--rootfs", e.rootfs, "--", "sh", "-c", script); strings.Contains(out, "not permitted") || !strings.Contains(out, "clone-userns: ok") {
			t.Errorf("seccomp=unconfined:\n%s", out)
		}
	})
}
