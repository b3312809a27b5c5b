package netns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// readyTimeout bounds how long a helper may take to configure the namespace.
const readyTimeout = 10 * time.Second

// pastaDNS is the address pasta answers DNS on, forwarding to the host's
// first nameserver from the host side, so a loopback stub works too.
const pastaDNS = "169.254.1.1"

// pastaNet runs pasta (the passt package) on the namespace. pasta copies the
// host's address and routes into it, forwards published ports itself with
// the client's real address, and maps the gateway address to the host's
// loopback unless told not to.
type pastaNet struct {
	bin      string
	cfg      Config
	gw, addr string
	h        *helper
}

func newPasta(c Config) (*pastaNet, error) {
	bin, err := lookHelper("pasta", "passt")
	if err != nil {
		return nil, err
	}
	gw, iface, ok := defaultRoute()
	if !ok {
		return nil, errors.New("--net=pasta: the host has no IPv4 default route, whose interface pasta copies into the container; use --net=slirp4netns or --net=builtin")
	}
	return &pastaNet{bin: bin, cfg: c, gw: gw, addr: ifaceIPv4(iface)}, nil
}

func (p *pastaNet) start(pid int, dir stateDir, ports []Port) (ChildConfig, error) {
	pidFile := filepath.Join(dir.path, "pasta.pid")
	args := []string{"--config-net", "--foreground", "--quiet", "--mtu", strconv.Itoa(MTU),
		"--dns-forward", pastaDNS, "--pid", pidFile}
	if os.Geteuid() == 0 {
		// As root pasta would switch to nobody, who may not enter the
		// container's user namespace.
		args = append(args, "--runas", "0:0")
	}
	if !p.cfg.AllowHostLoopback {
		args = append(args, "--no-map-gw")
	}
	nt, nu := 0, 0
	for _, pt := range ports {
		spec := strconv.Itoa(pt.HostPort) + ":" + strconv.Itoa(pt.ContainerPort)
		if pt.HostIP != "" {
			spec = pt.HostIP + "/" + spec
		}
		if pt.Proto == "udp" {
			args, nu = append(args, "-u", spec), nu+1
		} else {
			args, nt = append(args, "-t", spec), nt+1
		}
	}
	// Without these pasta forwards every port bound on either side.
	if nt == 0 {
		args = append(args, "-t", "none")
	}
	if nu == 0 {
		args = append(args, "-u", "none")
	}
	args = append(args, "-T", "none", "-U", "none", strconv.Itoa(pid))
	h, err := startHelper("pasta", exec.Command(p.bin, args...), dir.path)
	if err != nil {
		return ChildConfig{}, err
	}
	p.h = h
	// pasta writes its pid file once the namespace is configured.
	deadline := time.Now().Add(readyTimeout)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		select {
		case <-h.exited:
			return ChildConfig{}, h.deathError("configuring the container's network")
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			h.stop()
			return ChildConfig{}, fmt.Errorf("pasta: not ready after %s%s", readyTimeout, h.out.suffix())
		}
	}
	return ChildConfig{WaitRoute: true}, nil
}

// pastaForwards says whether pasta's own forwarding serves p. Not UDP to
// another port number: Debian 12's pasta (2023-03) drops those datagrams
// on its loopback path, so rootlesskit's port driver carries them.
func pastaForwards(p Port) bool {
	return p.Proto == "tcp" || p.HostPort == p.ContainerPort
}

func (p *pastaNet) addrs() (string, string, []string) {
	return p.addr, p.gw, []string{pastaDNS}
}

func (p *pastaNet) failed() <-chan error { return p.h.failed() }
func (p *pastaNet) stop() error          { return p.h.stop() }

// slirpNet runs slirp4netns on the namespace: 10.0.2.100/24, gateway (and
// the host's loopback, when allowed) at 10.0.2.2, DNS at 10.0.2.3.
type slirpNet struct {
	bin   string
	cfg   Config
	ipv6  bool
	h     *helper
	exitW *os.File
}

func newSlirp(c Config) (*slirpNet, error) {
	bin, err := lookHelper("slirp4netns", "slirp4netns")
	if err != nil {
		return nil, err
	}
	return &slirpNet{bin: bin, cfg: c, ipv6: hasIPv6DefaultRoute()}, nil
}

func (s *slirpNet) start(pid int, dir stateDir, _ []Port) (ChildConfig, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return ChildConfig{}, fmt.Errorf("slirp4netns: %w", err)
	}
	defer readyR.Close()
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return ChildConfig{}, fmt.Errorf("slirp4netns: %w", err)
	}
	// fd 3 says ready; slirp4netns quits when fd 4 reaches EOF, which is
	// also what strata's death does to it.
	args := []string{"--configure", "--mtu=" + strconv.Itoa(MTU), "--ready-fd=3", "--exit-fd=4"}
	if !s.cfg.AllowHostLoopback {
		args = append(args, "--disable-host-loopback")
	}
	if s.ipv6 {
		args = append(args, "--enable-ipv6")
	}
	args = append(args, strconv.Itoa(pid), "tap0")
	cmd := exec.Command(s.bin, args...)
	cmd.ExtraFiles = []*os.File{readyW, exitR}
	h, err := startHelper("slirp4netns", cmd, dir.path)
	readyW.Close()
	exitR.Close()
	if err != nil {
		exitW.Close()
		return ChildConfig{}, err
	}
	s.h, s.exitW = h, exitW
	readyR.SetReadDeadline(time.Now().Add(readyTimeout))
	b := make([]byte, 1)
	if _, err := io.ReadFull(readyR, b); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.stop()
			return ChildConfig{}, fmt.Errorf("slirp4netns: not ready after %s%s", readyTimeout, h.out.suffix())
		}
		return ChildConfig{}, h.deathError("configuring the container's network")
	}
	return ChildConfig{WaitRoute: true}, nil
}

func (s *slirpNet) addrs() (string, string, []string) {
	return "10.0.2.100", "10.0.2.2", []string{"10.0.2.3"}
}

func (s *slirpNet) failed() <-chan error { return s.h.failed() }

func (s *slirpNet) stop() error {
	if s.exitW != nil {
		s.exitW.Close()
	}
	return s.h.stop()
}
