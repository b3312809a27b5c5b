package rootless

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// pauseTimeout bounds how long Pause waits for every process to stop: one
// in an uninterruptible sleep (a hung NFS read, say) may never get there.
const pauseTimeout = 10 * time.Second

// Pause stops every process of the running container id with SIGSTOP, so
// that its files hold still while strata reads them (commit), and returns
// the func that sends them SIGCONT again; it is safe to call more than
// once and from another goroutine. A container that is not running needs
// no pause and gets a resume that does nothing.
//
// This is podman's commit --pause without a cgroup freezer, which hybrid
// hosts and undelegated cgroups do not offer. The processes are those
// below the container's strata process in a deeper PID namespace: init
// and everything it started. The union filesystem's server (the child in
// strata's own PID namespace) keeps running, so a process stopped in the
// middle of a file system request still gets its answer and reaches the
// stopped state. Processes see the stop as a job-control stop (their
// parent may get SIGCHLD); a SIGKILL of the caller while they are stopped
// leaves them stopped, as `kill -CONT` of them undoes.
func Pause(id string) (resume func() error, err error) {
	run, err := RuntimeDir()
	if err != nil {
		return nil, err
	}
	rdir := filepath.Join(run, id)
	noop := func() error { return nil }
	if !isRunning(rdir) {
		return noop, nil
	}
	data, err := os.ReadFile(filepath.Join(rdir, "pid"))
	if err != nil {
		return nil, fmt.Errorf("pause container %.12s: %w", id, err)
	}
	strata, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || strata <= 0 {
		return nil, fmt.Errorf("pause container %.12s: bad pid file %s", id, filepath.Join(rdir, "pid"))
	}

	var (
		mu      sync.Mutex
		stopped []int
		once    sync.Once
		rerr    error
	)
	resume = func() error {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			for _, pid := range stopped {
				if err := unix.Kill(pid, unix.SIGCONT); err != nil && err != unix.ESRCH && rerr == nil {
					rerr = fmt.Errorf("resume container %.12s: pid %d: %w", id, pid, err)
				}
			}
		})
		return rerr
	}
	seen := map[int]bool{}
	deadline := time.Now().Add(pauseTimeout)
	for {
		procs := scanProcs()
		top, ok := procs[strata]
		if !ok {
			return resume, nil // exited meanwhile: nothing left to hold still
		}
		fresh, waiting := false, 0
		for _, pid := range descendants(procs, strata) {
			p := procs[pid]
			if p.nsDepth <= top.nsDepth {
				continue // strata's own child, which serves the file system
			}
			if !seen[pid] {
				seen[pid] = true
				mu.Lock()
				stopped = append(stopped, pid)
				mu.Unlock()
				if err := unix.Kill(pid, unix.SIGSTOP); err != nil && err != unix.ESRCH {
					resume()
					return nil, fmt.Errorf("pause container %.12s: stop pid %d: %w", id, pid, err)
				}
				fresh = true
				continue
			}
			if !p.stopped() || !threadsStopped(pid) {
				waiting = pid
			}
		}
		// Stopped processes cannot fork: once all are stopped and a fresh
		// scan finds no new one, the set is complete.
		if !fresh && waiting == 0 {
			return resume, nil
		}
		if time.Now().After(deadline) {
			resume()
			if waiting == 0 {
				return nil, fmt.Errorf("pause container %.12s: new processes kept appearing for %v", id, pauseTimeout)
			}
			return nil, fmt.Errorf("pause container %.12s: pid %d did not stop within %v", id, waiting, pauseTimeout)
		}
		if !fresh {
			time.Sleep(time.Millisecond)
		}
	}
}

type procInfo struct {
	ppid    int
	state   byte
	nsDepth int // how many PID namespaces it is seen from: len(NSpid)
}

func (p procInfo) stopped() bool {
	switch p.state {
	case 'T', 't', 'Z', 'X':
		return true
	}
	return false
}

// threadsStopped reports whether every thread of pid has stopped: the
// group stop SIGSTOP starts reaches each thread on its own, and a thread
// still inside a rename is what the pause must wait for.
func threadsStopped(pid int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return true // gone
	}
	for _, e := range ents {
		data, err := os.ReadFile(dir + "/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "tid (comm) S ...": comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 || i+2 >= len(data) {
			continue
		}
		if !(procInfo{state: data[i+2]}).stopped() {
			return false
		}
	}
	return true
}

// scanProcs reads /proc/PID/status of every process; ones that vanish
// while being read are left out.
func scanProcs() map[int]procInfo {
	out := map[int]procInfo{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := readProc(pid); err == nil {
			out[pid] = p
		}
	}
	return out
}

func readProc(pid int) (procInfo, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return procInfo{}, err
	}
	defer f.Close()
	var p procInfo
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "State":
			if v != "" {
				p.state = v[0]
			}
		case "PPid":
			p.ppid, _ = strconv.Atoi(v)
		case "NSpid":
			p.nsDepth = len(strings.Fields(v))
		}
	}
	if p.nsDepth == 0 {
		return p, errors.New("no NSpid")
	}
	return p, sc.Err()
}

// descendants lists the processes below pid in procs, parents first.
func descendants(procs map[int]procInfo, pid int) []int {
	children := map[int][]int{}
	for c, p := range procs {
		children[p.ppid] = append(children[p.ppid], c)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}
