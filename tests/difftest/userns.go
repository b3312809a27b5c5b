package difftest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Job is a batch of seeds run inside a user namespace by a re-exec of the
// test binary: the unprivileged side of the differential test.
type Job struct {
	Seeds        []int64       `json:"seeds"`
	Ops          int           `json:"ops"`
	Dir          string        `json:"dir"`
	Bin          string        `json:"bin"` // strata binary
	CompareEvery int           `json:"compare_every"`
	ShrinkTime   time.Duration `json:"shrink_time"`
	IDs          []int         `json:"ids"`
	// KernelOnly replaces strata by a second kernel mount (validates the
	// harness inside the namespace).
	KernelOnly bool `json:"kernel_only"`
	// Replay, when set, replays this op list instead of running seeds.
	Replay []Op `json:"replay,omitempty"`
}

// StageEnv selects the re-exec stage; JobEnv carries the Job as JSON.
const (
	StageEnv = "STRATA_DIFFTEST_STAGE"
	JobEnv   = "STRATA_DIFFTEST_JOB"
)

// MaybeChild runs the namespace stages when the test binary was re-executed
// for them, and exits; otherwise it returns at once. Call it from init() in
// the test package, so no TestMain is needed.
//
// Stages: "outer" runs as the unprivileged user in the initial namespaces,
// starts "inner" in new user and mount namespaces and writes its full
// subordinate id map with newuidmap/newgidmap; "inner" waits for the map,
// then re-execs itself as "run" so the exec happens as uid 0 of the
// namespace and keeps its capabilities there; "run" does the work and
// prints one JSON Result per seed on stdout.
func MaybeChild() {
	switch os.Getenv(StageEnv) {
	case "":
		return
	case "outer":
		os.Exit(outer())
	case "inner":
		var b [1]byte
		if _, err := io.ReadFull(os.Stdin, b[:]); err != nil {
			fmt.Fprintln(os.Stderr, "difftest inner: id map never came:", err)
			os.Exit(3)
		}
		env := withStage("run")
		if err := syscall.Exec("/proc/self/exe", os.Args, env); err != nil {
			fmt.Fprintln(os.Stderr, "difftest inner: re-exec:", err)
			os.Exit(3)
		}
	case "run":
		os.Exit(runJob())
	default:
		fmt.Fprintln(os.Stderr, "difftest: unknown stage", os.Getenv(StageEnv))
		os.Exit(3)
	}
}

// withStage is the environment with StageEnv replaced (syscall.Exec,
// unlike os/exec, does not drop an earlier duplicate).
func withStage(stage string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, StageEnv+"=") {
			env = append(env, kv)
		}
	}
	return append(env, StageEnv+"="+stage)
}

func outer() int {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = withStage("inner")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	w, err := cmd.StdinPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "difftest outer:", err)
		return 3
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "difftest outer: start in new user namespace:", err)
		return 3
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	for _, m := range []struct{ tool, file string }{{"newuidmap", "/etc/subuid"}, {"newgidmap", "/etc/subgid"}} {
		own := os.Getuid()
		if m.tool == "newgidmap" {
			own = os.Getgid()
		}
		start, count, err := subRange(m.file)
		if err != nil {
			fmt.Fprintln(os.Stderr, "difftest outer:", err)
			cmd.Process.Kill()
			cmd.Wait()
			return 3
		}
		args := []string{pid, "0", strconv.Itoa(own), "1", "1", strconv.Itoa(start), strconv.Itoa(count)}
		if out, err := exec.Command(m.tool, args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "difftest outer: %s %v: %v: %s\n", m.tool, args, err, out)
			cmd.Process.Kill()
			cmd.Wait()
			return 3
		}
	}
	w.Write([]byte{1})
	w.Close()
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 3
	}
	return 0
}

// subRange reads this user's first range from /etc/subuid or /etc/subgid.
func subRange(file string) (start, count int, err error) {
	u, err := user.Current()
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(parts) == 3 && (parts[0] == u.Username || parts[0] == u.Uid) {
			start, _ = strconv.Atoi(parts[1])
			count, _ = strconv.Atoi(parts[2])
			return start, count, nil
		}
	}
	return 0, 0, fmt.Errorf("%s: no range for %s", file, u.Username)
}

func runJob() int {
	var job Job
	if err := json.Unmarshal([]byte(os.Getenv(JobEnv)), &job); err != nil {
		fmt.Fprintln(os.Stderr, "difftest run: bad job:", err)
		return 3
	}
	// Mounts made here must not leak out, nor anything in from outside.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Fprintln(os.Stderr, "difftest run: make / private:", err)
		return 3
	}
	var subject Backend = Strata{Bin: job.Bin, Extra: []string{"userxattr"}}
	if job.KernelOnly {
		subject = Kernel{UserXattr: true}
	}
	enc := json.NewEncoder(os.Stdout)
	cfg := func(seed int64) Config {
		return Config{
			Seed: seed, Ops: job.Ops, Dir: job.Dir, IDs: job.IDs,
			Layout: Layout{UserXattr: true},
			// see KernelLosesInos: the kernel's st_ino is not kept
			// across copy-up in a user namespace.
			KernelLosesInos: true,
			Oracle:          Kernel{UserXattr: true},
			Subject:         subject,
			CompareEvery:    job.CompareEvery,
			ShrinkTime:      job.ShrinkTime,
			Logf: func(format string, args ...any) {
				fmt.Fprintf(os.Stderr, format+"\n", args...)
			},
		}
	}
	if job.Replay != nil {
		c := cfg(0)
		if enc.Encode(Result{Failure: c.Replay(job.Replay), OpsRun: len(job.Replay)}) != nil {
			return 3
		}
		return 0
	}
	for _, seed := range job.Seeds {
		if err := enc.Encode(Run(cfg(seed))); err != nil {
			return 3
		}
	}
	return 0
}
