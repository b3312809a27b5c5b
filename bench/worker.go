package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// job is one run of one workload on one backend. Root jobs run in the
// benchmark's own process; rootless jobs are sent to a worker process that
// lives in a user and mount namespace for the whole benchmark.
type job struct {
	Backend  BackendSpec `json:"backend"`
	Rootless bool        `json:"rootless"`
	Workload string      `json:"workload"`
	Run      int         `json:"run"`
	Seed     int64       `json:"seed"`
	Lower    string      `json:"lower"`
	Tree     Tree        `json:"tree"`
	Scratch  string      `json:"scratch"`
	Strata   string      `json:"strata"`
}

// Measurement is the outcome of one run.
type Measurement struct {
	Seconds     float64 `json:"seconds"`
	WallSeconds float64 `json:"wall_s"` // the whole run: mount, warm-up, teardown
	PeakRSSKiB  int64   `json:"peak_rss_kib,omitempty"`
	// Requests: the FUSE requests the timed part cost, by opcode, as the
	// server counted them (strata only).
	Requests     map[string]uint64  `json:"requests,omitempty"`
	Extra        map[string]float64 `json:"extra,omitempty"`
	MountOptions string             `json:"mount_options,omitempty"`
	Error        string             `json:"error,omitempty"`
	// Warning: the run was measured, but taking the mount down went wrong.
	Warning string `json:"warning,omitempty"`
	// SetupFailed: the backend could not even be mounted here.
	SetupFailed bool `json:"setup_failed,omitempty"`
	// NotRun: the host lacks what the workload needs.
	NotRun bool `json:"not_run,omitempty"`
}

var manifests sync.Map // path -> *manifest

func cachedManifest(path string) (*manifest, error) {
	if m, ok := manifests.Load(path); ok {
		return m.(*manifest), nil
	}
	m, err := loadManifest(path)
	if err != nil {
		return nil, err
	}
	manifests.Store(path, m)
	return m, nil
}

type timer time.Time

func startTimer() timer          { return timer(time.Now()) }
func (t timer) seconds() float64 { return time.Since(time.Time(t)).Seconds() }

// execute runs j from mount to unmount; drop empties the kernel caches.
func execute(j job, drop func() error) (m Measurement) {
	wall := startTimer()
	defer func() { m.WallSeconds = wall.seconds() }()
	w := workloadByName(j.Workload)
	fail := func(err error) Measurement {
		m.Error = err.Error()
		var nr notRunError
		m.NotRun = errors.As(err, &nr)
		return m
	}
	man, err := cachedManifest(j.Tree.Manifest)
	if err != nil {
		return fail(err)
	}
	dir := filepath.Join(j.Scratch, fmt.Sprintf("%s.%s.%d", j.Backend.Name, j.Workload, j.Run))
	os.RemoveAll(dir)
	upper, work, mnt := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "mnt")
	for _, d := range []string{upper, work, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
	}
	defer os.RemoveAll(dir)
	c := &wctx{lower: j.Lower, upper: upper, scratch: dir, tree: &j.Tree, man: man, seed: j.Seed, extra: map[string]float64{}}
	// The reference goes first, before this run makes files of its own,
	// so that it sees the same filesystem the backends' runs see.
	if w.Reference != nil && j.Backend.Kind == "native" {
		if w.Prepare != nil {
			if err := w.Prepare(c); err != nil {
				return fail(err)
			}
		}
		name, s, err := w.Reference(c)
		if err != nil {
			return fail(err)
		}
		c.extra[name] = s
	}
	var writes []string
	if w.Writes != nil {
		writes = w.Writes(c)
	}
	d := newDriver(j.Backend, j.Strata, j.Rootless, writes)
	root, err := d.Setup([]string{j.Lower}, upper, work, mnt)
	m.MountOptions = d.MountOptions()
	if err != nil {
		d.Teardown()
		m.SetupFailed = true
		return fail(err)
	}
	c.root, c.pid = root, d.PID()
	err = func() error {
		if w.Prepare != nil {
			if err := w.Prepare(c); err != nil {
				return err
			}
		}
		if w.Warm {
			if err := w.Run(c); err != nil {
				return err
			}
		}
		if w.Cold {
			if err := drop(); err != nil {
				return err
			}
		}
		rc, counts := d.(requestCounter)
		var before map[string]uint64
		if counts {
			var err error
			if before, err = rc.Requests(); err != nil {
				counts = false
				m.Warning = err.Error()
			}
		}
		t := startTimer()
		if err := w.Run(c); err != nil {
			return err
		}
		m.Seconds = t.seconds()
		if counts {
			after, err := rc.Requests()
			if err != nil {
				m.Warning = err.Error()
			} else {
				m.Requests = requestDiff(before, after)
			}
		}
		return nil
	}()
	m.PeakRSSKiB = peakRSS(d.PID())
	if terr := d.Teardown(); terr != nil {
		// The timing stands; the slow or failed teardown is reported.
		m.Warning = strings.TrimPrefix(m.Warning+"; "+terr.Error(), "; ")
	}
	if len(c.extra) > 0 {
		m.Extra = c.extra
	}
	if err != nil {
		return fail(err)
	}
	return m
}

// dropCaches writes back dirty data and empties the page, dentry and inode
// caches, which only real root may do.
func dropCaches() error {
	syncAll()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches (/proc/sys/vm/drop_caches): %w", err)
	}
	return nil
}

// wire is one line between the benchmark and its rootless worker.
type wire struct {
	Job     *job         `json:"job,omitempty"`
	Drop    bool         `json:"drop,omitempty"`
	Dropped bool         `json:"dropped,omitempty"`
	Error   string       `json:"error,omitempty"`
	Result  *Measurement `json:"result,omitempty"`
}

// WorkerMain is the rootless worker: the benchmark starts it (as the
// unprivileged user, inside new user and mount namespaces) and feeds it
// jobs on in; it answers on out. It asks the benchmark to drop caches,
// since inside the namespace it cannot.
func WorkerMain(in io.Reader, out io.Writer) error {
	// The FUSE servers this worker starts are strata too: they must not
	// find the variable and become workers themselves.
	os.Unsetenv(WorkerEnv)
	dec := json.NewDecoder(bufio.NewReader(in))
	enc := json.NewEncoder(out)
	for {
		var msg wire
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("bench worker: read job: %w", err)
		}
		if msg.Job == nil {
			return errors.New("bench worker: expected a job")
		}
		drop := func() error {
			if err := enc.Encode(wire{Drop: true}); err != nil {
				return err
			}
			var ack wire
			if err := dec.Decode(&ack); err != nil {
				return fmt.Errorf("bench worker: drop ack: %w", err)
			}
			if ack.Error != "" {
				return errors.New(ack.Error)
			}
			return nil
		}
		res := execute(*msg.Job, drop)
		if err := enc.Encode(wire{Result: &res}); err != nil {
			return err
		}
	}
}

// worker is the benchmark's handle on a running rootless worker.
type worker struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	enc    *json.Encoder
	dec    *json.Decoder
	stderr *bytes.Buffer
}

// startWorker runs strataBin as uid:gid (when we are root) in a new user
// namespace that maps that user to root, and a new mount namespace.
// util-linux's unshare does the namespace set-up, so the worker itself is
// plain Go and the same code serves every backend.
func startWorker(strataBin, userName string, uid, gid int, home string) (*worker, error) {
	args := []string{"unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "--", strataBin}
	if os.Geteuid() == 0 {
		args = append([]string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--init-groups", "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"HOME=" + home, "USER=" + userName,
		"XDG_RUNTIME_DIR=/run/user/" + strconv.Itoa(uid),
		WorkerEnv + "=1",
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start rootless worker (%s): %w", args[0], err)
	}
	return &worker{cmd: cmd, in: in, enc: json.NewEncoder(in), dec: json.NewDecoder(out), stderr: &stderr}, nil
}

// WorkerEnv is the environment variable that makes strata a bench worker.
const WorkerEnv = "STRATA_BENCH_WORKER"

func (w *worker) run(j job) (Measurement, error) {
	if err := w.enc.Encode(wire{Job: &j}); err != nil {
		return Measurement{}, w.died(err)
	}
	for {
		var msg wire
		if err := w.dec.Decode(&msg); err != nil {
			return Measurement{}, w.died(err)
		}
		switch {
		case msg.Drop:
			ack := wire{Dropped: true}
			if err := dropCaches(); err != nil {
				ack.Error = err.Error()
			}
			if err := w.enc.Encode(ack); err != nil {
				return Measurement{}, w.died(err)
			}
		case msg.Result != nil:
			return *msg.Result, nil
		}
	}
}

func (w *worker) died(err error) error {
	return fmt.Errorf("rootless worker: %w: %s", err, bytes.TrimSpace(w.stderr.Bytes()))
}

func (w *worker) close() {
	w.in.Close()
	done := make(chan struct{})
	go func() { w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		w.cmd.Process.Kill()
		<-done
	}
}
