package tests

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-run/strata/tests/harness"
)

// runEnv is one test's world: the binary, a user, a busybox rootfs the
// user owns (so it is root-owned inside), and a private store root.
type runEnv struct {
	t      *testing.T
	bin    string
	user   harness.TestUser
	asRoot bool
	dir    string // scratch, removed at the end
	rootfs string
	store  string
}

// newRunEnv prepares a rootfs from Debian's busybox-static for u (or for
// root when asRoot) and registers the leftover checks.
func newRunEnv(t *testing.T, u harness.TestUser, asRoot bool) *runEnv {
	t.Helper()
	bin := harness.Binary(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		harness.Skip(t, "/bin/busybox (apt-get install busybox-static)")
	}
	dir, err := os.MkdirTemp("", "strata-run-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	e := &runEnv{t: t, bin: bin, user: u, asRoot: asRoot, dir: dir,
		rootfs: filepath.Join(dir, "rootfs"), store: filepath.Join(dir, "store")}
	makeBusyboxRootfs(t, e.rootfs)
	if !asRoot {
		if out, err := exec.Command("chown", "-R", strconv.Itoa(u.UID)+":"+strconv.Itoa(u.GID), dir).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v: %s", dir, err, out)
		}
	}
	t.Cleanup(func() {
		e.checkNoLeftovers()
		// Container files may belong to subordinate ids; root removes all.
		os.RemoveAll(dir)
	})
	return e
}

func makeBusyboxRootfs(t *testing.T, root string) {
	t.Helper()
	for _, d := range []string{"bin", "etc", "tmp", "root", "home/user"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		os.Symlink("busybox", filepath.Join(root, "bin", applet))
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":  "root:x:0:\nuser:x:1000:\nstaff:x:50:user\n",
		"etc/motd":   "lower layer\n",
		"notexec":    "#!/bin/sh\necho hi\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(filepath.Join(root, "home/user"), 1000, 1000)
}

// command returns strata with args, as the env's user, with --root set.
func (e *runEnv) command(args ...string) *exec.Cmd {
	full := append([]string{"--root", e.store}, args...)
	if e.asRoot {
		cmd := exec.Command(e.bin, full...)
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root",
			"XDG_RUNTIME_DIR=" + filepath.Join(e.dir, "run")}
		os.MkdirAll(filepath.Join(e.dir, "run"), 0o700)
		return cmd
	}
	return e.user.Command(e.bin, full...)
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs strata to completion, feeding stdin.
func (e *runEnv) run(stdin string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := e.command(args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		e.t.Fatalf("strata %v: timed out; stderr: %s", args, errb.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("strata %v: %v", args, err)
		}
		code = ee.ExitCode()
		if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	return result{out.String(), errb.String(), code}
}

// ok runs a container command that must succeed and returns its stdout.
func (e *runEnv) ok(args ...string) string {
	e.t.Helper()
	r := e.run("", args...)
	if r.code != 0 {
		e.t.Fatalf("strata %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// strataProcs lists processes running the test binary (parent, child,
// init): every one of them is a re-exec of it.
func strataProcs(bin string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + d.Name() + "/exe"); err == nil && (exe == bin || exe == bin+" (deleted)") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// checkNoLeftovers fails the test if a strata process, a strata mount or
// runtime state outlived the containers.
func (e *runEnv) checkNoLeftovers() {
	t := e.t
	var pids []int
	for i := 0; i < 50; i++ { // processes being reaped may linger a moment
		if pids = strataProcs(e.bin); len(pids) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range pids {
		t.Errorf("process left behind: pid %d", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, m := range harness.Mounts() {
		if strings.HasPrefix(m, e.dir) || strings.Contains(m, "/strata/") {
			t.Errorf("mount left behind: %s", m)
			exec.Command("umount", "-l", m).Run()
		}
	}
	run := filepath.Join(e.dir, "run", "strata")
	if !e.asRoot {
		run = filepath.Join("/run/user", strconv.Itoa(e.user.UID), "strata")
	}
	ents, _ := os.ReadDir(run)
	for _, d := range ents {
		if d.IsDir() && isContainerID(d.Name()) && e.containerExists(d.Name()) {
			t.Errorf("runtime state left behind: %s", filepath.Join(run, d.Name()))
		}
	}
}

func (e *runEnv) containerExists(id string) bool {
	_, err := os.Stat(filepath.Join(e.store, "containers", id))
	return err == nil
}

func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// containers lists the container dirs in the env's store.
func (e *runEnv) containers() []string {
	ents, _ := os.ReadDir(filepath.Join(e.store, "containers"))
	var out []string
	for _, d := range ents {
		out = append(out, d.Name())
	}
	return out
}

// subRange returns the first /etc/subuid (or subgid) range of name.
func subRange(t *testing.T, file, name string) (start, count int) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), ":")
		if len(p) == 3 && p[0] == name {
			start, _ = strconv.Atoi(p[1])
			count, _ = strconv.Atoi(p[2])
			return
		}
	}
	harness.Skip(t, "a subordinate id range for "+name+" in "+file+" (run ./tests/setup.sh user)")
	return
}

// noSubUser is the second test user, without subordinate ids.
func noSubUser(t *testing.T) harness.TestUser {
	t.Helper()
	harness.RequireRoot(t)
	name := os.Getenv("STRATA_TEST_USER_NOSUB")
	if name == "" {
		name = "stratanosub"
	}
	u, err := user.Lookup(name)
	if err != nil {
		harness.Skip(t, "test user "+name+" (run ./tests/setup.sh user)")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return harness.TestUser{Name: name, UID: uid, GID: gid, Home: u.HomeDir}
}
