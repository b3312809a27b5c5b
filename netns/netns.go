// Package netns gives a container's network namespace a user-mode network:
// pasta or slirp4netns when installed, or a gvisor-tap-vsock stack inside
// the strata binary, so one static binary is enough. It also publishes
// ports on the host and says what the container's /etc/resolv.conf and
// /etc/hosts hold.
//
// The work is split the way rootlesskit splits it: a parent side, run by
// the real user before the container's namespace child gets its spec
// (Network.Attach), and a child side, run inside the namespaces by that
// child (Child). What the parent tells the child travels as a ChildConfig.
//
// It is a library: it never parses flags, prints or exits. Diagnostics go
// to Log, which discards them unless a caller sets it.
package netns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Log receives debug output of the drivers; silent by default.
var Log = slog.New(slog.NewTextHandler(io.Discard, nil))

// Driver names, as --net takes them.
const (
	Pasta       = "pasta"
	Slirp4netns = "slirp4netns"
	Builtin     = "builtin" // gvisor-tap-vsock, in process
)

// byDefault is the order the default tries drivers in: fastest first, as
// measured on this project's machine (bench/RESULTS.md). The built-in stack
// led container-to-host throughput in every run and is always there, so it
// is what an empty --net gets; the rest of the list matters only if that
// ever changes.
var byDefault = []string{Builtin, Pasta, Slirp4netns}

// ErrNoTun says /dev/net/tun cannot be opened: no user-mode driver can make
// its tap device then.
var ErrNoTun = errors.New("/dev/net/tun is not usable")

// MTU is what every driver is asked for: the largest the tap allows, which
// is about ten times the throughput of 1500.
const MTU = 65520

// Config is one container's network.
type Config struct {
	// Driver is Pasta, Slirp4netns or Builtin; "" takes the first installed
	// of byDefault.
	Driver string
	// AllowHostLoopback lets host.containers.internal reach services bound
	// to the host's loopback (podman's allow_host_loopback).
	AllowHostLoopback bool
	Ports             []Port
}

// driver is one way of serving the namespace: it starts what carries the
// packets for the child pid and says what the child must do on its side.
type driver interface {
	start(pid int, dir stateDir, ports []Port) (ChildConfig, error)
	// addrs: the container's IPv4 address, the host's as the container
	// sees it, and the DNS servers to put in resolv.conf.
	addrs() (ctr, host string, dns []string)
	// failed delivers an error if the driver dies under a running container.
	failed() <-chan error
	stop() error
}

// Network is a configured user-mode network. It satisfies rootless.Network.
type Network struct {
	cfg   Config
	name  string
	drv   driver
	own   []Port         // ports the driver forwards itself
	ports *portForwarder // rootlesskit's builtin port driver, for the rest
	fwd   []Port
	dir   stateDir
	once  sync.Once
}

// ParseMode splits --net's value DRIVER[:opt=val[,opt=val]] into a Config.
// The only option is podman's allow_host_loopback=true|false.
func ParseMode(mode string) (Config, error) {
	var c Config
	name, opts, _ := strings.Cut(mode, ":")
	c.Driver = name
	if name == "gvisor-tap-vsock" {
		c.Driver = Builtin
	}
	switch c.Driver {
	case "", Pasta, Slirp4netns, Builtin:
	default:
		return c, fmt.Errorf("--net %q: unknown network driver %q; want pasta, slirp4netns, builtin, none or host", mode, name)
	}
	if opts == "" {
		return c, nil
	}
	for _, o := range strings.Split(opts, ",") {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "allow_host_loopback":
			switch v {
			case "true", "":
				c.AllowHostLoopback = true
			case "false":
				c.AllowHostLoopback = false
			default:
				return c, fmt.Errorf("--net %q: allow_host_loopback=%q: want true or false", mode, v)
			}
		default:
			return c, fmt.Errorf("--net %q: unknown option %q; the one option is allow_host_loopback=true", mode, k)
		}
	}
	return c, nil
}

// New checks everything that can be checked before a container exists (the
// driver and its helper binary, /dev/net/tun, each host port being free and
// allowed) and returns the network, not yet attached to anything.
func New(c Config) (*Network, error) {
	if err := checkTun(); err != nil {
		return nil, err
	}
	name := c.Driver
	if name == "" {
		name = Default()
	}
	var drv driver
	switch name {
	case Pasta:
		p, err := newPasta(c)
		if err != nil {
			return nil, err
		}
		drv = p
	case Slirp4netns:
		s, err := newSlirp(c)
		if err != nil {
			return nil, err
		}
		drv = s
	case Builtin:
		drv = newBuiltin(c)
	default:
		return nil, fmt.Errorf("unknown network driver %q", name)
	}
	if err := checkPorts(c.Ports); err != nil {
		return nil, err
	}
	n := &Network{cfg: c, name: name, drv: drv}
	for _, p := range c.Ports {
		if name == Pasta && pastaForwards(p) {
			n.own = append(n.own, p)
		} else {
			n.fwd = append(n.fwd, p)
		}
	}
	if len(n.fwd) > 0 {
		n.ports = &portForwarder{}
	}
	return n, nil
}

// Default is the driver an empty --net picks: the fastest one installed.
// The built-in stack is always there.
func Default() string {
	for _, d := range byDefault {
		switch d {
		case Pasta:
			if _, err := exec.LookPath("pasta"); err == nil && hasDefaultRoute() {
				return d
			}
		case Slirp4netns:
			if _, err := exec.LookPath("slirp4netns"); err == nil {
				return d
			}
		default:
			return d
		}
	}
	return Builtin
}

// Driver is the name of the driver in use.
func (n *Network) Driver() string { return n.name }

// NewNetNS is always true: every driver serves a namespace of its own.
func (n *Network) NewNetNS() bool { return true }

// Attach connects the network namespace of childPID (strata's namespace
// child, blocked until its spec arrives) and returns the ChildConfig it
// must pass to Child. dir is the container's runtime dir, for sockets.
func (n *Network) Attach(childPID int, dir string) ([]byte, error) {
	sd, err := openStateDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.name, err)
	}
	n.dir = sd
	cc, err := n.drv.start(childPID, sd, n.own)
	if err != nil {
		return nil, err
	}
	cc.Dir, cc.ParentDir = sd.path, sd.short
	if err := writePorts(filepath.Join(sd.path, PortsFile), n.cfg.Ports); err != nil {
		return nil, fmt.Errorf("%s: %w", n.name, err)
	}
	if n.ports != nil {
		opaque, err := n.ports.start(sd.short, n.fwd)
		if err != nil {
			return nil, err
		}
		cc.Ports = opaque
	}
	data, err := json.Marshal(cc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.name, err)
	}
	return data, nil
}

// Failed delivers an error when the driver dies while the container runs.
func (n *Network) Failed() <-chan error { return n.drv.failed() }

// Close releases the published ports and stops the driver; safe to call
// more than once.
func (n *Network) Close() error {
	var err error
	n.once.Do(func() {
		if n.ports != nil {
			n.ports.stop()
		}
		err = n.drv.stop()
		n.dir.close()
	})
	return err
}

// PortsFile, in the container's runtime dir, lists its published ports as
// `podman port` prints them ("80/tcp -> 0.0.0.0:41234"): -P and a missing
// host port pick free ones, which the user has to find somewhere.
const PortsFile = "ports"

func writePorts(path string, ports []Port) error {
	if len(ports) == 0 {
		return nil
	}
	var b strings.Builder
	for _, p := range ports {
		ip := p.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		fmt.Fprintf(&b, "%d/%s -> %s\n", p.ContainerPort, p.Proto, net.JoinHostPort(ip, strconv.Itoa(p.HostPort)))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// stateDir is the container's runtime dir, also as /proc/self/fd/N: a unix
// socket's path may have 107 bytes, which a runtime dir under a long
// $XDG_RUNTIME_DIR already comes near, so sockets are bound and dialled
// through a held directory fd.
type stateDir struct {
	path, short string
	f           *os.File
}

func openStateDir(dir string) (stateDir, error) {
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return stateDir{}, err
	}
	return stateDir{path: dir, short: "/proc/self/fd/" + strconv.Itoa(int(f.Fd())), f: f}, nil
}

func (d stateDir) close() {
	if d.f != nil {
		d.f.Close()
	}
}

func checkTun() error {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %v; user-mode networking makes a tap device in the container's namespace: make it usable (chmod 0666 /dev/net/tun, as Debian ships it), or use --net=none", ErrNoTun, err)
	}
	f.Close()
	return nil
}

// lookHelper finds a helper binary, naming its Debian package if missing.
func lookHelper(bin, pkg string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("--net=%s: %s not found in $PATH: install it (apt-get install %s), or use --net=builtin, which needs no helper", bin, bin, pkg)
	}
	return p, nil
}
