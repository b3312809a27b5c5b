package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/strata-run/strata/tests/harness"
)

// TestRunBasics: the namespaces and the view from inside, as the
// unprivileged test user with a subordinate id range.
func TestRunBasics(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	start, count := subRange(t, "/etc/subuid", u.Name)
	r := func(args ...string) string {
		return e.ok(append([]string{"run", "--rm", "--rootfs", e.rootfs, "--"}, args...)...)
	}

	if out := r("sh", "-c", "umask"); out != "0022\n" {
		t.Errorf("umask %q, want 0022 whatever strata's caller had", out)
	}
	if out := r("id"); !strings.HasPrefix(out, "uid=0(root) gid=0(root)") {
		t.Errorf("id: %q, want uid=0(root) gid=0(root)", out)
	}
	want := fmt.Sprintf("0 %d 1\n1 %d %d", u.UID, start, count)
	if got := squeeze(r("cat", "/proc/self/uid_map")); got != want {
		t.Errorf("uid_map:\n%s\nwant:\n%s", got, want)
	}
	if out := e.ok("run", "--rm", "--hostname", "box1", "--rootfs", e.rootfs, "--", "sh", "-c", "hostname; cat /etc/hostname; grep box1 /etc/hosts"); !strings.HasPrefix(out, "box1\nbox1\n") || !strings.Contains(out, "\tbox1") {
		t.Errorf("hostname, /etc/hostname, /etc/hosts: %q", out)
	}
	ps := r("ps", "-o", "pid,comm")
	if !strings.Contains(ps, "\n    1 ps") || strings.Count(strings.TrimSpace(ps), "\n") != 1 {
		t.Errorf("ps in a new PID namespace should show only itself as pid 1:\n%s", ps)
	}
	mounts := r("mount")
	for _, w := range []string{"on / type fuse.strata", "proc on /proc type proc", "on /dev type tmpfs", "devpts on /dev/pts",
		"on /dev/shm type tmpfs", "mqueue on /dev/mqueue", "on /sys type sysfs (ro", "on /proc/sys type proc (ro", "on /proc/keys "} {
		if !strings.Contains(mounts, w) {
			t.Errorf("mount inside lacks %q:\n%s", w, mounts)
		}
	}
	caps := r("grep", "Cap", "/proc/self/status")
	for _, w := range []string{"CapInh:\t0000000000000000", "CapPrm:\t00000000a80425fb", "CapEff:\t00000000a80425fb",
		"CapBnd:\t00000000a80425fb", "CapAmb:\t0000000000000000"} {
		if !strings.Contains(caps, w) {
			t.Errorf("capabilities: want %q in\n%s", w, caps)
		}
	}
	if out := e.ok("run", "--rm", "--cap-drop", "ALL", "--cap-add", "chown", "--rootfs", e.rootfs, "--", "grep", "CapBnd", "/proc/self/status"); !strings.Contains(out, "0000000000000001") {
		t.Errorf("--cap-drop ALL --cap-add chown: %q", out)
	}
	if out := r("cat", "/proc/self/status"); !strings.Contains(out, "NoNewPrivs:\t1") || !strings.Contains(out, "Seccomp:\t2") {
		t.Errorf("want no_new_privs and a seccomp filter:\n%s", out)
	}
	if out := r("ls", "/dev"); squeeze(out) != squeeze("core\nfd\nfull\nmqueue\nnull\nptmx\npts\nrandom\nshm\nstderr\nstdin\nstdout\ntty\nurandom\nzero") {
		t.Errorf("/dev: %q", out)
	}
	if out := r("sh", "-c", "head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; ls /sys/firmware | wc -l; cat /proc/kcore 2>/dev/null | wc -c"); squeeze(out) != "4\nnull-ok\n0\n0" {
		t.Errorf("devices and masked paths: %q", out)
	}
	// Only stdio (and ls's own directory fd) reach the command: no FUSE
	// device, no pipes of strata's.
	if out := r("ls", "/proc/self/fd"); squeeze(out) != "0\n1\n2\n3" {
		t.Errorf("open fds inside: %q, want 0 1 2 and ls's own 3", out)
	}
	if r := e.run("", "run", "--rm", "--rootfs", e.rootfs, "--", "sh", "-c", "echo 1 > /proc/sys/kernel/domainname"); r.code == 0 || !strings.Contains(r.stderr, "Read-only") {
		t.Errorf("/proc/sys should be read-only: exit %d, %s", r.code, r.stderr)
	}
	if e.containers() != nil {
		t.Errorf("--rm left containers: %v", e.containers())
	}
}

// squeeze normalises whitespace per line, for comparing column output.
func squeeze(s string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}

func TestRunExitCodes(t *testing.T) {
	e := newRunEnv(t, harness.User(t), false)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"true"}, 0},
		{[]string{"false"}, 1},
		{[]string{"sh", "-c", "exit 42"}, 42},
		{[]string{"/notexec"}, 126},
		{[]string{"/etc"}, 126},
		{[]string{"no-such-command"}, 127},
		{[]string{"/bin/no-such-file"}, 127},
		// PID 1 is immune to its own signals, so these two use --init.
		{[]string{"--init", "sh", "-c", "kill -9 $$"}, 137},
		{[]string{"--init", "sh", "-c", "kill -TERM $$; sleep 5"}, 143},
	} {
		args := append([]string{"run", "--rm", "--rootfs", e.rootfs}, c.args[0])
		if c.args[0] == "--init" {
			c.args = c.args[1:]
			args = append(args, "--")
		} else {
			args[len(args)-1] = "--"
		}
		r := e.run("", append(args, c.args...)...)
		if r.code != c.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", c.args, r.code, c.code, r.stderr)
		}
		if c.code >= 126 && c.code <= 127 && !strings.Contains(r.stderr, c.args[0]) {
			t.Errorf("%v: error should name the command: %q", c.args, r.stderr)
		}
	}
	// --init passes the status through too, and is PID 1 itself.
	if r := e.run("", "run", "--rm", "--init", "--rootfs", e.rootfs, "--", "sh", "-c", "echo $$; exit 7"); r.code != 7 || strings.TrimSpace(r.stdout) == "1" {
		t.Errorf("--init: exit %d stdout %q, want 7 and a pid other than 1", r.code, r.stdout)
	}
	// Orphans are reparented to PID 1, which with --init reaps them.
	out := e.ok("run", "--rm", "--init", "--rootfs", e.rootfs, "--", "sh", "-c", "(sleep 0.2 &); sleep 1; ps -o stat,comm")
	if strings.Contains(out, "Z ") || !strings.Contains(out, "strata-init") {
		t.Errorf("--init should reap orphans:\n%s", out)
	}
	if e.containers() != nil {
		t.Errorf("containers left: %v", e.containers())
	}
}

func TestRunStdinEnvUser(t *testing.T) {
	e := newRunEnv(t, harness.User(t), false)
	if r := e.run("hello from stdin\n", "run", "--rm", "-i", "--rootfs", e.rootfs, "--", "sh", "-c", "tr a-z A-Z"); r.stdout != "HELLO FROM STDIN\n" {
		t.Errorf("stdin piping: %q (exit %d, %s)", r.stdout, r.code, r.stderr)
	}
	// Without -i stdin is /dev/null, as in Docker.
	if r := e.run("ignored\n", "run", "--rm", "--rootfs", e.rootfs, "--", "cat"); r.stdout != "" || r.code != 0 {
		t.Errorf("without -i: %q exit %d", r.stdout, r.code)
	}
	envFile := filepath.Join(e.dir, "env")
	os.WriteFile(envFile, []byte("# comment\nA=from-file\nB=file\n"), 0o644)
	os.Chmod(envFile, 0o644)
	out := e.ok("run", "--rm", "--env-file", envFile, "-e", "B=flag", "-e", "LOGNAME", "-w", "/work/dir", "-u", "user",
		"--rootfs", e.rootfs, "--", "sh", "-c", "echo $A $B $LOGNAME $HOME $PATH; pwd; id")
	want := "from-file flag " + e.user.Name + " /home/user /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/work/dir\nuid=1000(user) gid=1000(user) groups=50(staff),1000(user)\n"
	if out != want {
		t.Errorf("env, workdir, user:\n%s\nwant:\n%s", out, want)
	}
	if out := e.ok("run", "--rm", "-u", "1000:50", "--rootfs", e.rootfs, "--", "id"); !strings.HasPrefix(out, "uid=1000(user) gid=50(staff)") {
		t.Errorf("-u 1000:50: %q", out)
	}
	if out := e.ok("run", "--rm", "-u", "1000", "--rootfs", e.rootfs, "--", "grep", "CapEff", "/proc/self/status"); !strings.Contains(out, "0000000000000000") {
		t.Errorf("a non-root user should have no effective capabilities: %q", out)
	}
}

func TestRunVolumesReadOnly(t *testing.T) {
	e := newRunEnv(t, harness.User(t), false)
	vol := filepath.Join(e.dir, "vol")
	os.Mkdir(vol, 0o755)
	os.WriteFile(filepath.Join(vol, "data"), []byte("on the host\n"), 0o644)
	os.Chown(vol, e.user.UID, e.user.GID)
	os.Chown(filepath.Join(vol, "data"), e.user.UID, e.user.GID)
	out := e.ok("run", "--rm", "-v", vol+":/mnt/v", "--rootfs", e.rootfs, "--", "sh", "-c", "cat /mnt/v/data; echo new > /mnt/v/out")
	if out != "on the host\n" {
		t.Errorf("-v read: %q", out)
	}
	if data, _ := os.ReadFile(filepath.Join(vol, "out")); string(data) != "new\n" {
		t.Errorf("-v write did not reach the host: %q", data)
	}
	r := e.run("", "run", "--rm", "-v", vol+":/mnt/v:ro", "--rootfs", e.rootfs, "--", "sh", "-c", "cat /mnt/v/data; echo x > /mnt/v/out")
	if r.code == 0 || !strings.Contains(r.stderr, "Read-only") {
		t.Errorf("-v :ro should refuse writes: exit %d %q", r.code, r.stderr)
	}
	r = e.run("", "run", "--rm", "--read-only", "--rootfs", e.rootfs, "--", "sh", "-c", "echo ok > /dev/shm/x && cat /dev/shm/x; touch /newfile")
	if r.code == 0 || r.stdout != "ok\n" || !strings.Contains(r.stderr, "Read-only") {
		t.Errorf("--read-only: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// TestRunUpperAndOwnership: writes land in the container's upper, never in
// the lower, and a file made by uid 1000 inside belongs to the mapped
// subordinate id on the host.
func TestRunUpperAndOwnership(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	start, _ := subRange(t, "/etc/subuid", u.Name)
	gstart, _ := subRange(t, "/etc/subgid", u.Name)
	lowerPasswd, _ := os.ReadFile(filepath.Join(e.rootfs, "etc/passwd"))
	e.ok("run", "--name", "keep", "--rootfs", e.rootfs, "--", "sh", "-c",
		"echo upper > /newfile && echo extra >> /etc/motd && rm /etc/group && su user -c 'touch /tmp/by1000' 2>/dev/null || chroot / sh -c 'true'; true")
	// su needs setuid root; do the uid 1000 write with -u instead.
	e.ok("run", "--name", "keep1000", "-u", "1000:1000", "--rootfs", e.rootfs, "--", "sh", "-c", "touch /tmp/by1000 && mkdir /tmp/dir1000")

	cs := e.containers()
	if len(cs) != 2 {
		t.Fatalf("want 2 kept containers, have %v", cs)
	}
	if data, _ := os.ReadFile(filepath.Join(e.rootfs, "etc/motd")); string(data) != "lower layer\n" {
		t.Errorf("the lower changed: /etc/motd = %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(e.rootfs, "etc/passwd")); string(data) != string(lowerPasswd) {
		t.Errorf("the lower changed: /etc/passwd")
	}
	for _, f := range []string{"newfile", "etc/group"} {
		if _, err := os.Stat(filepath.Join(e.rootfs, f)); (f == "newfile") != os.IsNotExist(err) {
			t.Errorf("the lower changed at %s (%v)", f, err)
		}
	}
	var keepDir, dir1000 string
	for _, id := range cs {
		cfg, _ := os.ReadFile(filepath.Join(e.store, "containers", id, "config.json"))
		if strings.Contains(string(cfg), `"name": "keep1000"`) {
			dir1000 = filepath.Join(e.store, "containers", id)
		} else {
			keepDir = filepath.Join(e.store, "containers", id)
		}
	}
	if data, err := os.ReadFile(filepath.Join(keepDir, "upper/newfile")); string(data) != "upper\n" {
		t.Errorf("upper/newfile: %q %v", data, err)
	}
	if data, _ := os.ReadFile(filepath.Join(keepDir, "upper/etc/motd")); string(data) != "lower layer\nextra\n" {
		t.Errorf("upper/etc/motd (copy-up): %q", data)
	}
	if fi, err := os.Lstat(filepath.Join(keepDir, "upper/etc/group")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("upper/etc/group should be a whiteout: %v %v", fi, err)
	}
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		if _, err := os.Stat(filepath.Join(keepDir, "upper/etc", f)); err == nil {
			t.Errorf("/etc/%s belongs in the init layer, not the upper", f)
		}
		if _, err := os.Stat(filepath.Join(keepDir, "init/etc", f)); err != nil {
			t.Errorf("init layer lacks /etc/%s: %v", f, err)
		}
	}
	for _, f := range []string{"upper/tmp/by1000", "upper/tmp/dir1000"} {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir1000, f), &st); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if int(st.Uid) != start+999 || int(st.Gid) != gstart+999 {
			t.Errorf("%s owned by %d:%d on the host, want the subordinate ids %d:%d", f, st.Uid, st.Gid, start+999, gstart+999)
		}
	}

	// ps -a lists both as exited; rm deletes them, subordinate-owned files too.
	ps := e.ok("ps", "-a")
	if !strings.Contains(ps, "keep1000") || !strings.Contains(ps, "exited (0)") {
		t.Errorf("ps -a:\n%s", ps)
	}
	if out := e.ok("ps"); strings.Contains(out, "keep") {
		t.Errorf("ps without -a lists exited containers:\n%s", out)
	}
	if r := e.run("", "run", "--name", "keep", "--rootfs", e.rootfs, "--", "true"); r.code != 125 || !strings.Contains(r.stderr, "keep") {
		t.Errorf("a second --name keep: exit %d %q", r.code, r.stderr)
	}
	e.ok("rm", "keep", "keep1000")
	if cs := e.containers(); len(cs) != 0 {
		t.Errorf("rm left %v", cs)
	}
	if r := e.run("", "rm", "keep"); r.code == 0 || !strings.Contains(r.stderr, "no such container") {
		t.Errorf("rm of a removed container: exit %d %q", r.code, r.stderr)
	}
}

// TestRunSingleID: a user without subordinate ids gets one mapped id and
// one plain warning.
func TestRunSingleID(t *testing.T) {
	u := noSubUser(t)
	e := newRunEnv(t, u, false)
	r := e.run("", "run", "--rm", "--rootfs", e.rootfs, "--", "sh", "-c", "id -u; cat /proc/self/uid_map; touch /f && echo wrote")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if want := fmt.Sprintf("0\n0 %d 1\nwrote", u.UID); squeeze(r.stdout) != want {
		t.Errorf("stdout %q, want %q", squeeze(r.stdout), want)
	}
	if strings.Count(r.stderr, "no subordinate ids") != 1 {
		t.Errorf("want one warning about subordinate ids: %q", r.stderr)
	}
	if r := e.run("", "run", "--rm", "-u", "1000", "--rootfs", e.rootfs, "--", "id"); r.code != 125 || !strings.Contains(r.stderr, "not mapped") {
		t.Errorf("-u 1000 without subordinate ids: exit %d %q", r.code, r.stderr)
	}
}

func TestRunBadInput(t *testing.T) {
	e := newRunEnv(t, harness.User(t), false)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "no-such-image"}, "no-such-image"},
		{[]string{"run", "--rootfs", filepath.Join(e.dir, "nope"), "true"}, "--rootfs"},
		{[]string{"run", "-v", "relative:/x", "--rootfs", e.rootfs, "true"}, "-v"},
		{[]string{"run", "-v", "/nonexistent-host-path:/x", "--rootfs", e.rootfs, "true"}, "/nonexistent-host-path"},
		{[]string{"run", "-v", e.dir + ":/x:bogus", "--rootfs", e.rootfs, "true"}, "bogus"},
		{[]string{"run", "--cap-add", "NOT_A_CAP", "--rootfs", e.rootfs, "true"}, "NOT_A_CAP"},
		{[]string{"run", "--net", "bridge", "--rootfs", e.rootfs, "true"}, "--net"},
		{[]string{"run", "-u", "nobody-here", "--rootfs", e.rootfs, "true"}, "nobody-here"},
		{[]string{"run", "--security-opt", "apparmor=x", "--rootfs", e.rootfs, "true"}, "--security-opt"},
		{[]string{"run", "--rootfs", e.rootfs}, "no command"},
	} {
		r := e.run("", c.args...)
		if r.code != 125 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
			t.Errorf("%v: exit %d, stderr %q; want 125 and one error naming %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if cs := e.containers(); len(cs) != 0 {
		t.Errorf("bad input left containers: %v", cs)
	}
}

// TestRunSignalsAndKill: SIGTERM reaches the command; a SIGKILL of strata
// takes everything down, and the next strata cleans the state.
func TestRunSignalsAndKill(t *testing.T) {
	e := newRunEnv(t, harness.User(t), false)
	script := `trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.1; done`
	for _, init := range []bool{false, true} {
		args := []string{"run", "--rm", "--rootfs", e.rootfs, "--", "sh", "-c", script}
		if init {
			args = []string{"run", "--rm", "--init", "--rootfs", e.rootfs, "--", "sh", "-c", script}
		}
		cmd := e.command(args...)
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(stdout)
		line, _ := br.ReadString('\n')
		if line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("init=%v: first line %q; stderr %q", init, line, stderr.String())
		}
		cmd.Process.Signal(syscall.SIGTERM)
		rest, _ := io.ReadAll(br)
		err := cmd.Wait()
		code := 0
		if err != nil {
			code = err.(interface{ ExitCode() int }).ExitCode()
		}
		if string(rest) != "got TERM\n" || code != 3 {
			t.Errorf("init=%v: SIGTERM forwarding: output %q exit %d, want \"got TERM\" and 3; stderr %q", init, rest, code, stderr.String())
		}
	}

	cmd := e.command("run", "--name", "victim", "--rootfs", e.rootfs, "--", "sh", "-c", "echo ready; sleep 1000")
	cmd2 := e.command("run", "--rm", "--rootfs", e.rootfs, "--", "sh", "-c", "echo ready; sleep 1000")
	for _, c := range []*exchanger{start(t, cmd), start(t, cmd2)} {
		c.expect("ready")
		c.cmd.Process.Signal(syscall.SIGKILL)
		c.cmd.Wait()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(strataProcs(e.bin)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if pids := strataProcs(e.bin); len(pids) > 0 {
		t.Errorf("processes survived a SIGKILL of strata: %v", pids)
	}
	ps := e.ok("ps", "-a") // cleans stale state
	if !strings.Contains(ps, "victim") || !strings.Contains(ps, "exited (137)") {
		t.Errorf("ps -a after SIGKILL:\n%s", ps)
	}
	if cs := e.containers(); len(cs) != 1 {
		t.Errorf("after SIGKILL and cleanup want only the kept container, have %v", cs)
	}
	e.ok("rm", "victim")
}

// exchanger drives a process through its stdout (or a pty).
type exchanger struct {
	t       *testing.T
	cmd     *exec.Cmd
	r       *bufio.Reader
	buf     strings.Builder
	pending chan bool
}

func start(t *testing.T, cmd *exec.Cmd) *exchanger {
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &exchanger{t: t, cmd: cmd, r: bufio.NewReader(out)}
}

// expect reads until want appears, failing after 20 s.
func (x *exchanger) expect(want string) {
	x.t.Helper()
	x.expectWithin(want, 20*time.Second, true)
}

// expectWithin reads until want appears or d passes; a reader left behind
// on timeout keeps consuming into buf, so call it again to go on waiting.
func (x *exchanger) expectWithin(want string, d time.Duration, fatal bool) bool {
	x.t.Helper()
	if x.pending == nil {
		x.pending = make(chan bool, 1)
		go x.readUntil(want)
	}
	select {
	case ok := <-x.pending:
		x.pending = nil
		if !ok {
			x.t.Fatalf("output ended before %q; got %q", want, x.buf.String())
		}
		return true
	case <-time.After(d):
		if fatal {
			x.t.Fatalf("timed out waiting for %q; got %q", want, x.buf.String())
		}
		return false
	}
}

func (x *exchanger) readUntil(want string) {
	got := x.pending
	for {
		b, err := x.r.ReadByte()
		if err != nil {
			got <- false
			return
		}
		x.buf.WriteByte(b)
		if s := x.buf.String(); strings.Contains(s, want) {
			x.buf.Reset()
			x.buf.WriteString(s[strings.Index(s, want)+len(want):])
			got <- true
			return
		}
	}
}

// TestRunTTY drives an interactive shell through a real pseudo-terminal:
// type, read, resize, exit.
func TestRunTTY(t *testing.T) {
	e := newRunEnv(t, harness.User(t), false)
	cmd := e.command("run", "--rm", "-it", "--rootfs", e.rootfs, "--", "sh")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	x := &exchanger{t: t, cmd: cmd, r: bufio.NewReader(ptmx)}
	io.WriteString(ptmx, "stty size; tty; echo $TERM\r")
	x.expect("24 80")
	x.expect("/dev/pts/")
	x.expect("xterm")
	pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 100})
	// SIGWINCH travels to strata, which resizes the container's pty: ask
	// until the new size shows, rather than guess how long that takes.
	for i := 0; ; i++ {
		io.WriteString(ptmx, "stty size\r")
		if x.expectWithin("40 100", time.Second, i == 20) {
			break
		}
	}
	io.WriteString(ptmx, "exit 5\r")
	done := make(chan error, 1)
	go func() { io.Copy(io.Discard, ptmx); done <- cmd.Wait() }()
	select {
	case err := <-done:
		if code := exitCode(err); code != 5 {
			t.Errorf("exit status %d, want 5", code)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("shell did not exit")
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(interface{ ExitCode() int }); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestRunAsRoot: real root gets the identity map and the same container.
func TestRunAsRoot(t *testing.T) {
	harness.RequireRoot(t)
	e := newRunEnv(t, harness.TestUser{Name: "root"}, true)
	out := e.ok("run", "--rm", "--rootfs", e.rootfs, "--", "sh", "-c", "id -u; cat /proc/self/uid_map; echo hi > /f; cat /f; grep CapEff /proc/self/status")
	if want := "0\n0 0 4294967295\nhi\nCapEff: 00000000a80425fb"; squeeze(out) != want {
		t.Errorf("as root:\n%s\nwant:\n%s", squeeze(out), want)
	}
	if _, err := os.Stat(filepath.Join(e.rootfs, "f")); err == nil {
		t.Errorf("a write reached the lower")
	}
	if r := e.run("", "run", "--rm", "--net", "host", "--rootfs", e.rootfs, "--", "sh", "-c", "hostname; ls /sys/class/net | grep -c ."); r.code != 0 {
		t.Errorf("--net=host: exit %d %s", r.code, r.stderr)
	} else if host, _ := os.Hostname(); !strings.HasPrefix(r.stdout, host+"\n") {
		t.Errorf("--net=host hostname: %q, want %q", r.stdout, host)
	}
	if out := e.ok("run", "--rm", "--net", "none", "--rootfs", e.rootfs, "--", "ls", "/sys/class/net"); strings.TrimSpace(out) != "lo" {
		t.Errorf("--net=none should show only lo: %q", out)
	}
	_ = strconv.Itoa
}

// TestRunKeepID: --userns=keep-id runs as the user's own id, unprivileged.
func TestRunKeepID(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	out := e.ok("run", "--rm", "--userns=keep-id", "--rootfs", e.rootfs, "--", "sh", "-c", "id -u; id -g; grep CapEff /proc/self/status; touch /tmp/mine && stat -c %u /tmp/mine")
	want := fmt.Sprintf("%d\n%d\nCapEff: 0000000000000000\n%d", u.UID, u.GID, u.UID)
	if squeeze(out) != want {
		t.Errorf("keep-id:\n%s\nwant:\n%s", squeeze(out), want)
	}
}

// TestRunMissingHostParts: no newuidmap, no usable /dev/fuse: one error
// saying what to install or fix, 125, nothing left.
func TestRunMissingHostParts(t *testing.T) {
	u := harness.User(t)
	e := newRunEnv(t, u, false)
	cmd := e.command("run", "--rm", "--rootfs", e.rootfs, "--", "true")
	for i, v := range cmd.Env {
		if strings.HasPrefix(v, "PATH=") {
			cmd.Env[i] = "PATH=" + e.dir // no newuidmap there
		}
	}
	out, err := cmd.CombinedOutput()
	if exitCode(err) != 125 || !strings.Contains(string(out), "newuidmap not found: install the uidmap package") {
		t.Errorf("without newuidmap: exit %d %q", exitCode(err), out)
	}

	// Hide /dev/fuse behind an unreadable file in a private mount namespace.
	blocker := filepath.Join(e.dir, "nofuse")
	os.WriteFile(blocker, nil, 0)
	inner := e.command("run", "--rm", "--rootfs", e.rootfs, "--", "true")
	script := "mount --bind " + blocker + " /dev/fuse && exec \"$@\""
	cmd = exec.Command("unshare", append([]string{"-m", "--propagation", "private", "--", "sh", "-c", script, "sh"}, inner.Args...)...)
	cmd.Env = inner.Env
	out, err = cmd.CombinedOutput()
	if exitCode(err) != 125 || !strings.Contains(string(out), "/dev/fuse") || !strings.Contains(string(out), "chmod 0666 /dev/fuse") {
		t.Errorf("without /dev/fuse: exit %d %q", exitCode(err), out)
	}
	if cs := e.containers(); len(cs) != 0 {
		t.Errorf("left containers: %v", cs)
	}
}

// TestRunRmRunning: rm refuses a running container, rm -f kills it.
func TestRunRmRunning(t *testing.T) {
	e := newRunEnv(t, harness.User(t), false)
	x := start(t, e.command("run", "--name", "busy", "--rootfs", e.rootfs, "--", "sh", "-c", "echo ready; exec sleep 1000"))
	x.expect("ready")
	if out := e.ok("ps"); !strings.Contains(out, "busy") || !strings.Contains(out, "running") {
		t.Errorf("ps while running:\n%s", out)
	}
	if r := e.run("", "rm", "busy"); r.code == 0 || !strings.Contains(r.stderr, "running") {
		t.Errorf("rm of a running container: exit %d %q", r.code, r.stderr)
	}
	e.ok("rm", "-f", "busy")
	x.cmd.Wait()
	if cs := e.containers(); len(cs) != 0 {
		t.Errorf("rm -f left %v", cs)
	}
}

// TestRunNoUserNamespaces: with user namespaces disabled (here: a limit of
// zero inside an outer user namespace, which leaves the host alone) strata
// says how to enable them, exits 125 and leaves nothing.
func TestRunNoUserNamespaces(t *testing.T) {
	harness.RequireRoot(t)
	e := newRunEnv(t, harness.TestUser{Name: "root"}, true)
	inner := e.command("run", "--rm", "--rootfs", e.rootfs, "--", "true")
	script := "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\""
	cmd := exec.Command("unshare", append([]string{"-U", "--map-root-user", "--", "sh", "-c", script, "sh"}, inner.Args...)...)
	cmd.Env = inner.Env
	out, err := cmd.CombinedOutput()
	if exitCode(err) != 125 || !strings.Contains(string(out), "user namespaces look disabled") || !strings.Contains(string(out), "max_user_namespaces") {
		t.Errorf("exit %d %q", exitCode(err), out)
	}
	if cs := e.containers(); len(cs) != 0 {
		t.Errorf("left containers: %v", cs)
	}
}
