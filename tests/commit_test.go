package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-run/strata/tests/harness"
)

// TestCommitRace: a container keeps exchanging dirs of its upper with
// symlinks to a private host dir holding a secret, while strata commits
// it again and again, paused (the default) and, to test the walk alone,
// with --pause=false. No byte of the secret may reach the store.
func TestCommitRace(t *testing.T) {
	u := harness.User(t)
	for _, asRoot := range []bool{false, true} {
		name := "user"
		if asRoot {
			name = "root"
		}
		t.Run(name, func(t *testing.T) { commitRace(t, newRunEnv(t, u, asRoot)) })
	}
}

func commitRace(t *testing.T, e *runEnv) {
	helper := filepath.Join(e.rootfs, "bin/swapper")
	build := exec.Command("go", "build", "-o", helper, "./tests/testdata/swapper")
	build.Dir = harness.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build swapper: %v\n%s", err, out)
	}
	// The victim is what the user keeps private: a 0600 file in a 0700 dir.
	victim := filepath.Join(e.dir, "victim")
	secret := fmt.Sprintf("SECRET-KEY-%d-%d", os.Getpid(), time.Now().UnixNano())
	if err := os.Mkdir(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victim, "id_rsa"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !e.asRoot {
		for _, p := range []string{helper, victim, filepath.Join(victim, "id_rsa")} {
			os.Chown(p, e.user.UID, e.user.GID)
		}
	}
	e.ok("import", e.rootfs, "racebase")

	cmd := e.command("run", "--name", "racer", "racebase", "/bin/swapper", victim, "4")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	waited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ready <- sc.Scan() && sc.Text() == "ready"
		// Wait closes the pipe: read it to the end first.
		io.Copy(io.Discard, stdout)
		waited <- cmd.Wait()
	}()
	stop := func() {
		cmd.Process.Kill() // strata's own pid; the container follows through Pdeathsig
		select {
		case <-waited:
		case <-time.After(20 * time.Second):
			t.Errorf("strata run did not exit after SIGKILL")
		}
	}
	select {
	case ok := <-ready:
		if !ok {
			stop()
			t.Fatalf("swapper did not start: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		stop()
		t.Fatalf("swapper not ready after 30s: %s", stderr.String())
	}
	defer func() {
		stop()
		e.run("", "rm", "-f", "racer")
	}()

	start := time.Now()
	commits := 0
	for i := 0; i < 6 && time.Since(start) < 8*time.Second; i++ {
		args := []string{"commit", "racer", "raced:" + strconv.Itoa(i)}
		if i%2 == 1 {
			args = append(args, "--pause=false")
		}
		r := e.run("", args...)
		if r.code != 0 {
			t.Errorf("%v of a container racing renames: exit %d: %s", args, r.code, r.stderr)
			continue
		}
		commits++
		if leak := findInTree(filepath.Join(e.store, "layers"), secret); leak != "" {
			t.Fatalf("commit %d (after %v): the secret of %s leaked into the store: %s", i, time.Since(start).Round(time.Millisecond), victim, leak)
		}
		if leak := findInTree(filepath.Join(e.store, "blobs"), secret); leak != "" {
			t.Fatalf("commit %d (after %v): the secret of %s leaked into a blob: %s", i, time.Since(start).Round(time.Millisecond), victim, leak)
		}
		// The container runs on after each commit: it was paused, not left stopped.
		if st := procStates(cmd.Process.Pid); strings.Contains(st, "T") {
			t.Errorf("after commit %d the container's processes are still stopped: %s", i, st)
		}
	}
	t.Logf("%d commits in %v, no leak", commits, time.Since(start).Round(time.Millisecond))
	if r := e.run("", "diff", "racer"); r.code != 0 {
		t.Errorf("diff of a container racing renames: exit %d: %s", r.code, r.stderr)
	} else if strings.Contains(r.stdout, "id_rsa") && strings.Contains(r.stdout, secret) {
		t.Errorf("diff shows the secret: %s", r.stdout)
	}
	if b, err := os.ReadFile(filepath.Join(victim, "id_rsa")); err != nil || string(b) != secret+"\n" {
		t.Errorf("victim changed: %q %v", b, err)
	}
}

// findInTree returns the first regular file below dir that contains s, not
// following symlinks.
func findInTree(dir, s string) string {
	var hit string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || hit != "" || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
			hit = p
		}
		return nil
	})
	return hit
}

// procStates lists "pid:state" of every descendant of pid.
func procStates(pid int) string {
	children := map[int][]int{}
	states := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) S ppid ...: comm may hold spaces and parens.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
		states[p] = f[0]
	}
	var out []string
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, strconv.Itoa(c)+":"+states[c])
			walk(c)
		}
	}
	walk(pid)
	return strings.Join(out, " ")
}
