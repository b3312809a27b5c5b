package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin"
)

// Port is one published port: HostIP:HostPort on the host reaches
// ContainerPort in the container.
type Port struct {
	HostIP        string // "" is every address
	HostPort      int
	ContainerPort int
	Proto         string // "tcp" or "udp"
	spec          string // as given, for messages
}

func (p Port) String() string {
	return fmt.Sprintf("%s/%s", net.JoinHostPort(p.HostIP, strconv.Itoa(p.HostPort)), p.Proto)
}

// ParsePorts reads -p values as podman takes them:
// [[hostIP:][hostPort[-end]]:]containerPort[-end][/tcp|/udp|/tcp,udp], an
// IPv6 hostIP in brackets. A missing host port is a free one picked now.
func ParsePorts(specs []string) ([]Port, error) {
	var out []Port
	seen := map[string]string{}
	for _, s := range specs {
		ps, err := parsePort(s)
		if err != nil {
			return nil, fmt.Errorf("-p %s: %w", s, err)
		}
		for _, p := range ps {
			key := fmt.Sprintf("%d/%s", p.HostPort, p.Proto)
			if prev, ok := seen[key]; ok {
				return nil, fmt.Errorf("-p %s: host port %s is already published by -p %s", s, key, prev)
			}
			seen[key] = s
			out = append(out, p)
		}
	}
	return out, nil
}

func parsePort(s string) ([]Port, error) {
	rest, protos, _ := strings.Cut(s, "/")
	if protos == "" {
		protos = "tcp"
	}
	var hostIP string
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			//lint:ignore ST1005 the trailing colon is the syntax the message shows, not punctuation
			return nil, errors.New("an IPv6 host address must be written [ADDR]:")
		}
		hostIP, rest = rest[1:end], rest[end+2:]
	}
	parts := strings.Split(rest, ":")
	var hostPart, ctrPart string
	switch len(parts) {
	case 1:
		ctrPart = parts[0]
	case 2:
		hostPart, ctrPart = parts[0], parts[1]
	case 3:
		if hostIP != "" {
			return nil, errors.New("too many colons")
		}
		hostIP, hostPart, ctrPart = parts[0], parts[1], parts[2]
	default:
		return nil, errors.New("want [[hostIP:][hostPort]:]containerPort[/tcp|/udp]")
	}
	if hostIP != "" && net.ParseIP(hostIP) == nil {
		return nil, fmt.Errorf("host address %q is not an IP address", hostIP)
	}
	c0, c1, err := portRange(ctrPart)
	if err != nil {
		return nil, fmt.Errorf("container port: %w", err)
	}
	h0, h1 := 0, 0
	if hostPart != "" {
		if h0, h1, err = portRange(hostPart); err != nil {
			return nil, fmt.Errorf("host port: %w", err)
		}
		if h1-h0 != c1-c0 {
			return nil, fmt.Errorf("host range %s and container range %s differ in size", hostPart, ctrPart)
		}
	}
	var out []Port
	for _, proto := range strings.Split(protos, ",") {
		if proto != "tcp" && proto != "udp" {
			return nil, fmt.Errorf("protocol %q: want tcp or udp", proto)
		}
		for i := 0; i <= c1-c0; i++ {
			hp := 0
			if h0 != 0 {
				hp = h0 + i
			} else if hp, err = freePort(hostIP, proto); err != nil {
				return nil, err
			}
			out = append(out, Port{HostIP: hostIP, HostPort: hp, ContainerPort: c0 + i, Proto: proto, spec: s})
		}
	}
	return out, nil
}

func portRange(s string) (int, int, error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(a)
	if err != nil || lo < 1 || lo > 65535 {
		return 0, 0, fmt.Errorf("%q is not a port (1-65535)", a)
	}
	if !isRange {
		return lo, lo, nil
	}
	hi, err := strconv.Atoi(b)
	if err != nil || hi < lo || hi > 65535 {
		return 0, 0, fmt.Errorf("%q is not a port range", s)
	}
	return lo, hi, nil
}

// ExposedPorts turns an image's EXPOSE list ("80/tcp", "53/udp", "8000")
// into -P mappings, each to a free host port.
func ExposedPorts(exposed []string) ([]Port, error) {
	sorted := append([]string{}, exposed...)
	sort.Strings(sorted)
	var specs []string
	for _, e := range sorted {
		p, proto, _ := strings.Cut(e, "/")
		if proto == "" {
			proto = "tcp"
		}
		specs = append(specs, p+"/"+proto)
	}
	return ParsePorts(specs)
}

func freePort(hostIP, proto string) (int, error) {
	addr := net.JoinHostPort(hostIP, "0")
	if proto == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return 0, fmt.Errorf("pick a free udp port: %w", err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("pick a free tcp port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// checkPorts fails early, before any container exists, on a port the user
// may not bind or one something else holds.
func checkPorts(ports []Port) error {
	start := unprivilegedPortStart()
	for _, p := range ports {
		if p.HostPort < start && os.Geteuid() != 0 {
			return fmt.Errorf("-p %s: host port %d is below net.ipv4.ip_unprivileged_port_start (%d), which only root may bind: publish on a port >= %d, or lower it (sysctl net.ipv4.ip_unprivileged_port_start=%d)",
				p.spec, p.HostPort, start, start, p.HostPort)
		}
		addr := net.JoinHostPort(p.HostIP, strconv.Itoa(p.HostPort))
		var err error
		if p.Proto == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp", addr); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp", addr); err == nil {
				l.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("-p %s: host port %s cannot be bound (taken by another process or container?): %w", p.spec, p, err)
		}
	}
	return nil
}

func unprivilegedPortStart() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 1024
	}
	return n
}

// portForwarder publishes ports with rootlesskit's builtin port driver:
// strata listens on the host, and for each connection the child side,
// running in strata's namespace child, dials the container's loopback and
// hands the socket back. A server in the container sees 127.0.0.1 for a
// loopback client; for any other TCP client the child dials from the
// client's own address (IP_TRANSPARENT, with policy routing set up by the
// host's nft or iptables and ip inside the namespace), and falls back to
// 127.0.0.1 where those tools are missing.
type portForwarder struct {
	drv  port.ParentDriver
	quit chan struct{}
	fifo string
}

func (f *portForwarder) start(dir string, ports []Port) (map[string]string, error) {
	drv, err := builtin.NewParentDriver(logWriter("ports"), dir, true, "auto")
	if err != nil {
		return nil, fmt.Errorf("port forwarding: %w", err)
	}
	f.drv, f.quit = drv, make(chan struct{})
	opaque := drv.OpaqueForChild()
	f.fifo = opaque["builtin.readypipepath"]
	go func() {
		// Blocks until the child side is up, then until quit.
		if err := drv.RunParentDriver(make(chan struct{}, 1), f.quit, nil); err != nil {
			Log.Debug("port driver", "err", err)
		}
	}()
	for _, p := range ports {
		spec := port.Spec{Proto: p.Proto, ParentIP: p.HostIP, ParentPort: p.HostPort, ChildPort: p.ContainerPort,
			// Not the host address: the child dials inside the namespace.
			ChildIP: "127.0.0.1"}
		if _, err := drv.AddPort(context.Background(), spec); err != nil {
			f.stop()
			return nil, fmt.Errorf("-p %s: publish %s: %w", p.spec, p, err)
		}
	}
	return opaque, nil
}

func (f *portForwarder) stop() {
	if f.drv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if st, err := f.drv.ListPorts(ctx); err == nil {
		for _, s := range st {
			f.drv.RemovePort(ctx, s.ID)
		}
	}
	close(f.quit)
	// A child that never came leaves RunParentDriver blocked opening the
	// ready fifo; a writer that opens and closes it lets it return.
	if w, err := os.OpenFile(f.fifo, os.O_WRONLY|unixNonblock, 0); err == nil {
		w.Close()
	}
	f.drv = nil
}
