package rootless

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Options describe one `strata run`.
type Options struct {
	Root   string   // store root (containers/ lives here)
	Image  string   // reference recorded in the container's image file
	Layers []string // image layer dirs, top first (or the --rootfs dir)
	Config ImageConfig

	Args       []string  // command from the command line; replaces Cmd
	Entrypoint *[]string // --entrypoint; nil keeps the image's
	Name       string
	Hostname   string
	Env        []string // -e KEY=VAL or KEY (taken from strata's environment)
	EnvFiles   []string
	WorkingDir string
	User       string
	Volumes    []string // host:ctr[:ro]
	Net        string   // "" (the fastest user-mode driver), none, host, pasta, slirp4netns or builtin[:opts]
	Publish    []string // -p [hostIP:]hostPort:containerPort[/proto]
	PublishAll bool     // -P: publish the image's exposed ports
	UserNS     string   // "" or "keep-id"
	CapAdd     []string
	CapDrop    []string
	Seccomp    bool
	Init       bool
	TTY        bool
	Stdin      bool // -i: connect stdin
	Remove     bool
	ReadOnly   bool

	Limits  Limits       // resource limits (cgroup v2), podman's flags
	Cgroups CgroupConfig // how to find a delegated cgroup

	// Warn receives one-line warnings (no subordinate ids, no cgroup v2).
	Warn func(string)
}

// Run creates a container, runs it to completion and returns its exit
// status. A non-nil error is strata's own failure (an *ExitError carries
// 125, 126 or 127); nothing of the container is left behind then.
func Run(o Options) (int, error) {
	if err := CleanStale(o.Root); err != nil {
		return 125, err
	}
	p, err := PlanRun(o)
	if err != nil {
		return exitCodeOf(err), err
	}
	if o.Warn != nil {
		for _, w := range p.Warnings {
			o.Warn(w)
		}
	}
	return p.Execute()
}

// RunPlan is a `strata run` that passed validation: every decision is
// made and nothing is created yet, so a test can read it without running
// anything. Execute carries it out.
type RunPlan struct {
	opts Options
	ids  idPlan
	net  Network
	cg   cgroupPlan
	// spec is the container's spec but for what only creating the
	// container decides: its id, its directories and its hostname.
	spec Spec
	// Warnings are one-line notes for the user (no subordinate ids, no
	// cgroup v2), to show before the container starts.
	Warnings []string
}

// Spec is the planned spec (without id, directories and hostname).
func (p *RunPlan) Spec() Spec { return p.spec }

// PlanRun validates o and decides the container's spec. It reads the host
// (subordinate ids, /dev/fuse, the store) but changes nothing.
func PlanRun(o Options) (*RunPlan, error) {
	fail := func(err error) (*RunPlan, error) {
		var ee *ExitError
		if errors.As(err, &ee) {
			return nil, err
		}
		return nil, &ExitError{Code: 125, Err: err}
	}
	var exposed, netWarnings []string
	if o.PublishAll {
		exposed = o.Config.ExposedPorts
	}
	net, err := NetworkFor(o.Net, o.Publish, exposed, func(w string) { netWarnings = append(netWarnings, w) })
	if err != nil {
		return fail(err)
	}
	mounts, err := ParseVolumes(o.Volumes)
	if err != nil {
		return fail(err)
	}
	caps, err := CapSet(o.CapAdd, o.CapDrop)
	if err != nil {
		return fail(err)
	}
	if o.User != "" {
		if err := checkUserSpec(o.User); err != nil {
			return fail(err)
		}
	}
	env, err := buildEnv(o)
	if err != nil {
		return fail(err)
	}
	args := CommandLine(o.Config, o.Entrypoint, o.Args)
	if len(args) == 0 {
		return fail(fmt.Errorf("no command: the image has no Entrypoint or Cmd; give one after the image"))
	}
	for _, l := range o.Layers {
		if fi, err := os.Stat(l); err != nil || !fi.IsDir() {
			return fail(fmt.Errorf("layer %s: not a directory", l))
		}
	}
	if err := checkFuse(); err != nil {
		return fail(err)
	}
	if o.UserNS != "" && o.UserNS != "keep-id" {
		return fail(fmt.Errorf("--userns %q: want keep-id (or leave it unset)", o.UserNS))
	}
	ids, err := planIDs(o.UserNS == "keep-id")
	if err != nil {
		return fail(err)
	}
	p := &RunPlan{opts: o, ids: ids, net: net, Warnings: netWarnings}
	user := o.User
	if user == "" {
		user = o.Config.User
	}
	if o.UserNS == "keep-id" && user == "" && os.Getuid() != 0 {
		user = strconv.Itoa(os.Getuid()) + ":" + strconv.Itoa(os.Getgid())
	}
	if ids.warning != "" {
		p.Warnings = append(p.Warnings, ids.warning)
	}
	// A host that cannot give the limits fails the run here, before
	// anything exists.
	cg, w, err := planCgroup(o.Limits, o.Cgroups)
	if err != nil {
		return fail(err)
	}
	if w != "" {
		p.Warnings = append(p.Warnings, w)
	}
	p.cg = cg
	wd := o.WorkingDir
	if wd == "" {
		wd = o.Config.WorkingDir
	}
	if wd == "" {
		wd = "/"
	}
	if !filepath.IsAbs(wd) {
		return fail(fmt.Errorf("working directory %q: must be an absolute path", wd))
	}
	if err := checkNameFree(o.Root, o.Name); err != nil {
		return fail(err)
	}
	p.spec = Spec{
		Mode:       modeRun,
		ReadOnly:   o.ReadOnly,
		NetNS:      net.NewNetNS(),
		Mounts:     mounts,
		Args:       args,
		Env:        env,
		WorkingDir: wd,
		User:       user,
		Caps:       caps,
		Seccomp:    o.Seccomp,
		Init:       o.Init,
		TTY:        o.TTY,
		Remove:     o.Remove,
	}
	if o.TTY && !hasEnv(p.spec.Env, "TERM") {
		p.spec.Env = append(p.spec.Env, "TERM=xterm")
	}
	return p, nil
}

// Execute creates the planned container, runs it to completion and
// returns its exit status; on strata's own failure it removes what it made.
func (p *RunPlan) Execute() (int, error) {
	o := p.opts
	c, rdir, lock, err := create(o, p.spec.Args)
	if err != nil {
		return 125, err
	}
	defer lock.release()
	cleanup := func() {
		removeTree(c.Dir)
		os.RemoveAll(rdir)
	}
	if err := writeInitLayer(filepath.Join(c.Dir, "init"), c.Hostname, c.Name, p.net); err != nil {
		cleanup()
		return 125, err
	}
	cg, err := p.cg.create(c.ID, rdir)
	if err != nil {
		cleanup()
		return 125, err
	}
	spec := p.spec
	spec.ID = c.ID
	spec.ContainerDir = c.Dir
	spec.Lowers = append([]string{filepath.Join(c.Dir, "init")}, o.Layers...)
	spec.Upper = filepath.Join(c.Dir, "upper")
	spec.Work = filepath.Join(c.Dir, "work")
	spec.Rootfs = filepath.Join(rdir, "rootfs")
	spec.Hostname = c.Hostname
	spec.Env = append(append([]string{}, spec.Env...), "HOSTNAME="+c.Hostname)

	code, started, err := supervise(o, p.ids, &spec, p.net, cg, rdir)
	cg.Close() // supervise closed it unless the child never started
	if n := cg.OOMKills(); n > 0 && o.Warn != nil {
		o.Warn(oomMessage(code, n, o.Limits))
	}
	if !started {
		cleanup()
		if err == nil {
			err = exitErr(125, "container did not start")
		}
		return exitCodeOf(err), err
	}
	// A container that ran may still end in strata's error: its network
	// died under it.
	if !o.Remove {
		writeJSON(filepath.Join(c.Dir, "state.json"), State{Status: "exited", ExitCode: code, Finished: time.Now()})
	} else {
		removeTree(c.Dir) // the child removed it already, unless it was killed
	}
	os.RemoveAll(rdir)
	return code, err
}

// CommandLine composes argv as Docker does: Entrypoint followed by Cmd;
// arguments on the command line replace Cmd; --entrypoint replaces
// Entrypoint and drops the image's Cmd.
func CommandLine(cfg ImageConfig, entrypoint *[]string, args []string) []string {
	argv := append([]string{}, cfg.Entrypoint...)
	cmd := cfg.Cmd
	if entrypoint != nil {
		argv = append([]string{}, *entrypoint...)
		cmd = nil
	}
	if len(args) > 0 {
		cmd = args
	}
	return append(argv, cmd...)
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

func checkFuse() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open /dev/fuse: %w; strata needs FUSE: load the module (modprobe fuse) and make /dev/fuse readable and writable by you (chmod 0666 /dev/fuse)", err)
	}
	f.Close()
	return nil
}

func checkNameFree(root, name string) error {
	if name == "" {
		return nil
	}
	if err := ValidateName(name); err != nil {
		return err
	}
	cs, err := List(root)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if c.Name == name {
			return fmt.Errorf("--name %s: already in use by container %.12s; remove it first (strata rm %s)", name, c.ID, name)
		}
	}
	return nil
}

// create makes the runtime dir, locks it (so no concurrent CleanStale
// takes the half-made container for a dead one), then the container dir.
func create(o Options, args []string) (Container, string, *runLock, error) {
	id := newID()
	name := o.Name
	if name == "" {
		name = id[:12]
	}
	hostname := o.Hostname
	if hostname == "" {
		hostname = id[:12]
		if o.Net == "host" {
			hostname, _ = os.Hostname()
		}
	}
	c := Container{ID: id, Name: name, Image: o.Image, Command: args, Created: time.Now(), Remove: o.Remove, Hostname: hostname,
		Dir: filepath.Join(containersDir(o.Root), id)}
	run, err := RuntimeDir()
	if err != nil {
		return c, "", nil, err
	}
	rdir := filepath.Join(run, id)
	if err := os.Mkdir(rdir, 0o700); err != nil {
		return c, "", nil, fmt.Errorf("create %s: %w", rdir, err)
	}
	lock, err := lockRuntime(rdir)
	if err != nil {
		os.RemoveAll(rdir)
		return c, "", nil, err
	}
	fail := func(err error) (Container, string, *runLock, error) {
		os.RemoveAll(c.Dir)
		os.RemoveAll(rdir)
		lock.release()
		return c, "", nil, err
	}
	for _, d := range []string{c.Dir, filepath.Join(c.Dir, "upper"), filepath.Join(c.Dir, "work"), filepath.Join(c.Dir, "init"),
		filepath.Join(rdir, "rootfs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fail(fmt.Errorf("create %s: %w", d, err))
		}
	}
	// The upper's root becomes the container's "/": world-searchable, like
	// any root directory.
	os.Chmod(filepath.Join(c.Dir, "upper"), 0o755)
	os.Chmod(filepath.Join(c.Dir, "init"), 0o755)
	if err := os.WriteFile(filepath.Join(c.Dir, "image"), []byte(o.Image+"\n"), 0o600); err != nil {
		return fail(fmt.Errorf("write %s: %w", filepath.Join(c.Dir, "image"), err))
	}
	if err := writeJSON(filepath.Join(c.Dir, "config.json"), c); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(rdir, "root"), []byte(o.Root), 0o600); err != nil {
		return fail(fmt.Errorf("write %s: %w", rdir, err))
	}
	if err := os.WriteFile(filepath.Join(rdir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return fail(fmt.Errorf("write %s: %w", rdir, err))
	}
	return c, rdir, lock, nil
}

// supervise starts the child, relays terminal I/O and signals, and waits.
// started is false when setup failed before the command ran.
func supervise(o Options, plan idPlan, spec *Spec, net Network, cg Cgroup, rdir string) (code int, started bool, err error) {
	// Pdeathsig fires when the forking thread exits, not the process: keep
	// this goroutine on one thread for good.
	runtime.LockOSThread()

	var consoleParent, consoleChild *os.File
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 125, false, err
	}
	defer null.Close()
	// With a tty, init sends the master of a pty it opens inside the
	// container, and the child's own stdio carries only its errors.
	stdio := [3]*os.File{os.Stdin, os.Stdout, os.Stderr}
	if !o.Stdin {
		stdio[0] = null
	}
	if o.TTY {
		consoleParent, consoleChild, err = consolePair()
		if err != nil {
			return 125, false, err
		}
		defer consoleParent.Close()
		stdio = [3]*os.File{null, os.Stderr, os.Stderr}
	}

	errR, errW, err := os.Pipe()
	if err != nil {
		return 125, false, err
	}
	relay := catchForwarded()
	defer relay.stop()

	extra := []*os.File{errW}
	if consoleChild != nil {
		extra = append(extra, consoleChild)
	}
	prepare := func(pid int) error {
		if err := cg.Join(pid); err != nil {
			return err
		}
		// The spec is sent after prepare: the cgroup, and what the
		// network driver needs done inside the namespace, go with it.
		spec.Cgroup, spec.ServerCgroup = cg.Path() != "", cg.Outside()
		data, err := net.Attach(pid, rdir)
		spec.Net = data
		return err
	}
	// Before the child starts: a failed Attach may have started a helper.
	defer net.Close()
	cmd, err := startChild(plan, spec, spec.NetNS, stdio, prepare, extra...)
	errW.Close()
	if consoleChild != nil {
		consoleChild.Close()
	}
	if err != nil {
		errR.Close()
		return 125, false, err
	}
	defer cg.Close()
	stopWatch, netDied := watchNetwork(net, cmd.Process)
	defer stopWatch()

	var ptmx *os.File
	if consoleParent != nil {
		ptmx, err = receiveConsole(consoleParent)
		if err != nil {
			cmd.Process.Kill()
		}
	}
	var outDone <-chan struct{}
	if ptmx != nil {
		defer ptmx.Close()
		var stopTerminal func()
		outDone, stopTerminal = relayTerminal(ptmx, o.Stdin)
		defer stopTerminal()
	}
	relay.to(cmd.Process)

	setupErr := readSetupError(errR)
	werr := cmd.Wait()
	if outDone != nil {
		// All slave fds are gone once the container is; the master then
		// reads EIO. Bounded, in case a process escaped with the slave.
		select {
		case <-outDone:
		case <-time.After(2 * time.Second):
		}
	}
	if netErr := netDied(); netErr != nil {
		return 125, setupErr == nil, exitErr(125, "container ended: its network died: %w", netErr)
	}
	if setupErr != nil {
		return setupErr.Code, false, &ExitError{Code: setupErr.Code, Err: errors.New(setupErr.Msg)}
	}
	code, err = waitCode(werr, "container")
	return code, err == nil, err
}

// watchNetwork kills the container when its network dies under it (a
// helper exiting). died, asked once the container has been waited for,
// returns the network's error if that is what ended it.
func watchNetwork(net Network, p *os.Process) (stop func(), died func() error) {
	exited := make(chan struct{})
	dead := make(chan error, 1)
	go func() {
		select {
		case err := <-net.Failed():
			// A helper also ends when the namespace goes, i.e. after the
			// child: that is no failure.
			if running(p.Pid) {
				p.Kill()
				if err == nil {
					err = errors.New("its helper exited")
				}
				dead <- err
			}
		case <-exited:
		}
	}()
	return func() { close(exited) }, func() error {
		select {
		case err := <-dead:
			return err
		default:
			return nil
		}
	}
}

// readSetupError reads the error pipe to EOF: nothing means every re-exec
// got as far as executing the command.
func readSetupError(r *os.File) *setupError {
	defer r.Close()
	data, _ := io.ReadAll(r)
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	var e setupError
	if err := json.Unmarshal(data, &e); err != nil {
		return &setupError{Code: 125, Msg: strings.TrimSpace(string(data))}
	}
	return &e
}
