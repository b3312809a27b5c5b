package rootless

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/strata-run/strata/netns"
	"golang.org/x/sys/unix"
)

// Network is the seam for networking. "none" (a network namespace with
// only loopback) and "host" (no network namespace) live here; the
// user-mode drivers (pasta, slirp4netns, the built-in gvisor-tap-vsock
// stack) are netns.Network.
type Network interface {
	// NewNetNS says whether the child gets its own network namespace.
	NewNetNS() bool
	// Attach is called once the child exists, before it gets its spec;
	// stateDir is the container's runtime dir. What it returns travels in
	// the spec to the child, which hands it to netns.Child.
	Attach(childPID int, stateDir string) ([]byte, error)
	// ResolvConf and Hosts are the container's /etc/resolv.conf and
	// /etc/hosts, written into its init layer.
	ResolvConf() []byte
	Hosts(hostname, name string) []byte
	// Failed delivers an error if the network dies under the container.
	Failed() <-chan error
	Close() error
}

// NetworkFor returns the driver for --net (DRIVER[:allow_host_loopback=true])
// with the published ports. An empty mode is the fastest user-mode driver
// installed; where none can work (no usable /dev/net/tun) and nothing is
// published, it is none, with a warning.
func NetworkFor(mode string, publish []string, exposed []string, warn func(string)) (Network, error) {
	switch mode {
	case "none", "host":
		if len(publish) > 0 || len(exposed) > 0 {
			return nil, fmt.Errorf("-p/-P with --net=%s: publishing ports needs a user-mode network (--net=pasta, slirp4netns or builtin)", mode)
		}
		if mode == "host" {
			return hostNet{}, nil
		}
		return noneNet{}, nil
	}
	cfg, err := netns.ParseMode(mode)
	if err != nil {
		return nil, err
	}
	if cfg.Ports, err = netns.ParsePorts(publish); err != nil {
		return nil, err
	}
	if len(exposed) > 0 {
		more, err := netns.ExposedPorts(exposed)
		if err != nil {
			return nil, fmt.Errorf("-P: the image's exposed ports: %w", err)
		}
		cfg.Ports = append(cfg.Ports, more...)
	}
	n, err := netns.New(cfg)
	if err != nil {
		if mode == "" && len(cfg.Ports) == 0 && errors.Is(err, netns.ErrNoTun) {
			warn(err.Error() + "; the container gets no network")
			return noneNet{}, nil
		}
		return nil, err
	}
	return n, nil
}

type noneNet struct{}

func (noneNet) NewNetNS() bool                     { return true }
func (noneNet) Attach(int, string) ([]byte, error) { return nil, nil }
func (noneNet) ResolvConf() []byte                 { return hostResolvConf() }
func (noneNet) Hosts(hostname, _ string) []byte    { return localHosts(hostname) }
func (noneNet) Failed() <-chan error               { return nil }
func (noneNet) Close() error                       { return nil }

type hostNet struct{}

func (hostNet) NewNetNS() bool                     { return false }
func (hostNet) Attach(int, string) ([]byte, error) { return nil, nil }
func (hostNet) ResolvConf() []byte                 { return hostResolvConf() }
func (hostNet) Hosts(hostname, _ string) []byte    { return localHosts(hostname) }
func (hostNet) Failed() <-chan error               { return nil }
func (hostNet) Close() error                       { return nil }

func localHosts(hostname string) []byte {
	return []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"127.0.1.1\t" + hostname + "\n")
}

// hostResolvConf prefers systemd-resolved's upstream list, because the
// stub at 127.0.0.53 is unreachable from another network namespace.
func hostResolvConf() []byte {
	for _, p := range []string{"/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"} {
		if data, err := os.ReadFile(p); err == nil && !strings.Contains(string(data), "127.0.0.53") {
			return data
		}
	}
	return []byte("nameserver 8.8.8.8\n")
}

// running says whether pid is alive and not yet a zombie.
func running(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(data), ')')
	return i > 0 && i+2 < len(data) && data[i+2] != 'Z' && data[i+2] != 'X'
}

// loopbackUp sets lo up in a fresh network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}
