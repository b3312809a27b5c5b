package rootless

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Network is the seam for user-mode networking. Today there are "none" (a
// network namespace with only loopback) and "host" (no network namespace);
// slirp4netns, pasta or gvisor-tap-vsock drivers from netns/ plug in here by
// attaching to the child's network namespace through its pid.
type Network interface {
	// NewNetNS says whether the child gets its own network namespace.
	NewNetNS() bool
	// Attach is called once the child exists, before the command runs.
	Attach(childPID int) error
	// ResolvConf is the container's /etc/resolv.conf.
	ResolvConf() []byte
	Close() error
}

// NetworkFor returns the driver for --net.
func NetworkFor(mode string) (Network, error) {
	switch mode {
	case "", "none":
		return noneNet{}, nil
	case "host":
		return hostNet{}, nil
	}
	return nil, fmt.Errorf("--net %q: want none or host (user-mode networks come later)", mode)
}

type noneNet struct{}

func (noneNet) NewNetNS() bool     { return true }
func (noneNet) Attach(int) error   { return nil }
func (noneNet) ResolvConf() []byte { return hostResolvConf() }
func (noneNet) Close() error       { return nil }

type hostNet struct{}

func (hostNet) NewNetNS() bool     { return false }
func (hostNet) Attach(int) error   { return nil }
func (hostNet) ResolvConf() []byte { return hostResolvConf() }
func (hostNet) Close() error       { return nil }

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
