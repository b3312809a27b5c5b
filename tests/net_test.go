package tests

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-run/strata/tests/harness"
)

// TestNetDrivers: for each user-mode driver, the container reaches the
// host's loopback through host.containers.internal only when allowed,
// resolves through a DNS server on the host's loopback, serves a page on
// -p that sees the client's address, and echoes UDP on -p .../udp.
func TestNetDrivers(t *testing.T) {
	e := newNetEnv(t)
	startDNS(t)
	hostPort := startHostHTTP(t)
	for _, d := range netDrivers {
		t.Run(d.name, func(t *testing.T) {
			requireDriver(t, d.bin, d.pkg)
			parent := e.t
			e.t = t
			defer func() { e.t = parent }()
			client := func(mode string, script string) result {
				cmd := e.command("run", "--rm", "--net", mode, "--rootfs", e.rootfs, "--", "sh", "-c", script)
				return runCmd(t, withResolvConf(t, cmd))
			}

			// Interface, MTU, route, DNS and host access.
			url := fmt.Sprintf("http://host.containers.internal:%d/", hostPort)
			r := client(d.name+":allow_host_loopback=true",
				"ip -o link show | grep -v ' lo:' | grep -o 'mtu [0-9]*'; ip route | grep -c '^default'; "+
					"grep -q host.containers.internal /etc/hosts && echo hosts-ok; "+
					"nslookup "+testDNSName+" | grep -A2 '^Name' | grep -o '"+testDNSAddr+"'; "+
					"timeout 10 wget -q -O- "+url+"; exit $?") // not exec'd: PID 1 ignores timeout's SIGTERM
			if r.code != 0 {
				t.Fatalf("allow_host_loopback: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			for _, want := range []string{"mtu 65520\n", "1\n", "hosts-ok\n", testDNSAddr + "\n", "hello from the host\n"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("container output lacks %q:\n%s\nstderr: %s", want, r.stdout, r.stderr)
				}
			}
			// IPv6 where the host routes it, from pasta and slirp4netns
			// (whose address comes by router advertisement, so poll).
			if d.name != "builtin" && hostHasIPv6Route() {
				r := client(d.name, "for i in $(seq 50); do ip -6 addr show scope global | grep -q inet6 && break; sleep 0.1; done; ip -6 addr show scope global | grep -c inet6")
				if strings.TrimSpace(r.stdout) == "0" || r.stdout == "" {
					t.Errorf("no global IPv6 address in the container though the host has a default IPv6 route: %q %s", r.stdout, r.stderr)
				}
			}
			if r := client(d.name, "timeout 5 wget -q -O- "+url+"; exit $?"); r.code == 0 || strings.Contains(r.stdout, "hello from the host") {
				t.Errorf("without allow_host_loopback the host's loopback answered: exit %d %q", r.code, r.stdout)
			}

			// Published ports: TCP with the client's address, and UDP.
			ports := freePorts(t, 2)
			s := e.startServer("run", "--rm", "--init", "--net", d.name, "--rootfs", e.rootfs,
				"-p", fmt.Sprintf("%d:80", ports[0]), "-p", fmt.Sprintf("%d:81/udp", ports[1]),
				"--", "sh", "-c", "netecho 81 & exec httpd -f -p 80 -h /www")
			s.port = ports[0]
			peer := httpGet(t, s, fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/peer", ports[0]))
			if !strings.Contains(peer, "peer=127.0.0.1") && !strings.Contains(peer, "peer=[::ffff:127.0.0.1]") {
				t.Errorf("the container saw %q, want the client's 127.0.0.1", strings.TrimSpace(peer))
			}
			udpEcho(t, fmt.Sprintf("127.0.0.1:%d", ports[1]))
			t.Run("non-loopback client", func(t *testing.T) { nonLoopbackPeer(t, d.name, s) })
			s.stop(t)
			if !portFree(ports[0], "tcp") || !portFree(ports[1], "udp") {
				t.Errorf("published ports %v still bound after the container ended", ports)
			}
		})
	}
}

// nonLoopbackPeer fetches the peer CGI through the host's own non-loopback
// address. slirp4netns and builtin (rootlesskit's port driver in its
// source-address mode) show that address; pasta gives the container the
// host's address, so a client on the host itself shows as pasta's gateway,
// as in podman: not 127.0.0.1 is what holds for all three.
func nonLoopbackPeer(t *testing.T, driver string, s *server) {
	addr := hostAddr(t)
	if driver != "pasta" {
		if !haveTool("nft") && !haveTool("iptables") {
			harness.Skip(t, "nft or iptables, which the port driver's source-address mode runs")
		}
	}
	port := s.port
	peer := httpGet(t, s, fmt.Sprintf("http://%s:%d/cgi-bin/peer", addr, port))
	switch {
	case strings.Contains(peer, "127.0.0.1"):
		t.Errorf("a client at %s was seen as %q", addr, strings.TrimSpace(peer))
	case driver != "pasta" && !strings.Contains(peer, "="+addr) && !strings.Contains(peer, ":"+addr+"]"):
		t.Errorf("a client at %s was seen as %q", addr, strings.TrimSpace(peer))
	}
}

// TestNetPorts: two containers publish different ports at once; the same
// port twice is refused with exit 125 and nothing left behind.
func TestNetPorts(t *testing.T) {
	e := newNetEnv(t)
	for _, d := range netDrivers {
		t.Run(d.name, func(t *testing.T) {
			requireDriver(t, d.bin, d.pkg)
			parent := e.t
			e.t = t
			defer func() { e.t = parent }()
			ports := freePorts(t, 2)
			var servers []*server
			for i, p := range ports {
				spec := fmt.Sprintf("%d:80", p)
				if i == 0 {
					spec = "127.0.0.1:" + spec // on one host address only
				}
				servers = append(servers, e.startServer("run", "--rm", "--init", "--net", d.name, "--rootfs", e.rootfs,
					"-p", spec, "--", "httpd", "-f", "-p", "80", "-h", "/www"))
			}
			for i, p := range ports {
				if got := httpGet(t, servers[i], fmt.Sprintf("http://127.0.0.1:%d/", p)); got != "hello from the container\n" {
					t.Errorf("port %d: %q", p, got)
				}
			}
			before := len(e.containers())
			r := e.run("", "run", "--rm", "--net", d.name, "--rootfs", e.rootfs, "-p", fmt.Sprintf("%d:80", ports[0]), "true")
			if r.code != 125 || !strings.Contains(r.stderr, strconv.Itoa(ports[0])) {
				t.Errorf("the same port twice: exit %d, stderr %q; want 125 naming the port", r.code, r.stderr)
			}
			if n := len(e.containers()); n != before {
				t.Errorf("a refused run left a container behind: %d containers, had %d", n, before)
			}
			for _, s := range servers {
				s.stop(t)
			}
		})
	}
}

// TestNetBadInput: each mistake is one error naming it, exit 125, and no
// container, helper or port left.
func TestNetBadInput(t *testing.T) {
	e := newNetEnv(t)
	held, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().(*net.TCPAddr).Port
	start := 1024
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		start, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--net", "bogus"}, `unknown network driver "bogus"`},
		{[]string{"--net", "builtin:frobnicate=1"}, "unknown option"},
		{[]string{"--net", "builtin", "-p", fmt.Sprintf("%d:80", taken)}, strconv.Itoa(taken)},
		{[]string{"--net", "builtin", "-p", "80x"}, "-p 80x"},
		{[]string{"--net", "none", "-p", "8080:80"}, "user-mode network"},
	}
	if start > 1 {
		cases = append(cases, struct {
			args []string
			want string
		}{[]string{"--net", "builtin", "-p", fmt.Sprintf("%d:80", start-1)}, "ip_unprivileged_port_start"})
	}
	for _, c := range cases {
		args := append(append([]string{"run", "--rm"}, c.args...), "--rootfs", e.rootfs, "true")
		r := e.run("", args...)
		if r.code != 125 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want 125 and one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
	// A helper missing from $PATH: only the id-mapping tools are there.
	bin := filepath.Join(e.dir, "pathbin")
	os.MkdirAll(bin, 0o755)
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if p, err := lookPathIn(tool); err == nil {
			os.Symlink(p, filepath.Join(bin, tool))
		}
	}
	for _, d := range netDrivers[:2] {
		cmd := e.command("run", "--rm", "--net", d.name, "--rootfs", e.rootfs, "true")
		for i, v := range cmd.Env {
			if strings.HasPrefix(v, "PATH=") {
				cmd.Env[i] = "PATH=" + bin
			}
		}
		r := runCmd(t, cmd)
		if r.code != 125 || !strings.Contains(r.stderr, d.bin+" not found") || !strings.Contains(r.stderr, d.pkg) {
			t.Errorf("--net=%s without %s: exit %d, stderr %q", d.name, d.bin, r.code, r.stderr)
		}
	}
	if n := len(e.containers()); n != 0 {
		t.Errorf("refused runs left %d containers", n)
	}
}

func lookPathIn(tool string) (string, error) {
	for _, dir := range []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, tool)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// TestNetKill9: SIGKILL of strata while a container serves a port frees
// the port and leaves no helper process; the next strata sweeps the rest.
func TestNetKill9(t *testing.T) {
	e := newNetEnv(t)
	for _, d := range netDrivers {
		t.Run(d.name, func(t *testing.T) {
			requireDriver(t, d.bin, d.pkg)
			parent := e.t
			e.t = t
			defer func() { e.t = parent }()
			port := freePorts(t, 1)[0]
			s := e.startServer("run", "--init", "--net", d.name, "--rootfs", e.rootfs,
				"-p", fmt.Sprintf("%d:80", port), "--", "httpd", "-f", "-p", "80", "-h", "/www")
			httpGet(t, s, fmt.Sprintf("http://127.0.0.1:%d/", port))
			// strata runs under setpriv, which execs it: same pid.
			var helpers []int
			if d.bin != "" {
				helpers = helperPIDs(s.cmd.Process.Pid, d.bin)
				if len(helpers) != 1 {
					t.Fatalf("want one %s under strata (pid %d), found %v", d.bin, s.cmd.Process.Pid, helpers)
				}
			}
			s.cmd.Process.Signal(syscall.SIGKILL)
			<-s.done
			s.done <- nil
			deadline := time.Now().Add(5 * time.Second)
			for {
				alive := 0
				for _, pid := range helpers {
					if syscall.Kill(pid, 0) == nil {
						alive++
					}
				}
				if alive == 0 && portFree(port, "tcp") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after kill -9 of strata: helpers %v alive: %d, port %d free: %v", helpers, alive, port, portFree(port, "tcp"))
				}
				time.Sleep(50 * time.Millisecond)
			}
			// The next run sweeps the dead container's runtime state.
			e.ok("run", "--rm", "--net", "none", "--rootfs", e.rootfs, "true")
		})
	}
}

// TestNetDefault: with no --net the container gets a user-mode network
// (the fastest driver installed), and --net=none keeps only loopback; the
// default image resolves names (host.containers.internal) with its wget.
func TestNetDefault(t *testing.T) {
	e := newNetEnv(t)
	hostPort := startHostHTTP(t)
	e.ok("image", "build-default")
	if out := e.ok("run", "--rm", "--net", "builtin:allow_host_loopback=true", "strata/busybox",
		"sh", "-c", fmt.Sprintf("wget -qO- http://host.containers.internal:%d/; exit $?", hostPort)); out != "hello from the host\n" {
		t.Errorf("default image, wget host.containers.internal: %q", out)
	}
	if out := e.ok("run", "--rm", "--rootfs", e.rootfs, "--", "sh", "-c", "ip route | grep -c ^default; ls /sys/class/net | grep -vc '^lo$'"); out != "1\n1\n" {
		t.Errorf("default network: %q, want a default route and one interface besides lo", out)
	}
	if out := e.ok("run", "--rm", "--net", "none", "--rootfs", e.rootfs, "--", "ls", "/sys/class/net"); strings.TrimSpace(out) != "lo" {
		t.Errorf("--net=none: %q, want only lo", out)
	}
	if out := e.ok("run", "--rm", "--name", "web1", "--hostname", "box", "--net", "builtin", "--rootfs", e.rootfs, "--", "cat", "/etc/hosts"); !strings.Contains(out, "10.0.2.100\tbox web1\n") {
		t.Errorf("/etc/hosts lacks the container's address, host name and name:\n%s", out)
	}
}

// TestNetHelperDies: a helper killed under a running container ends it
// with exit 125 and an error naming the helper, not a hang.
func TestNetHelperDies(t *testing.T) {
	e := newNetEnv(t)
	for _, d := range netDrivers[:2] {
		t.Run(d.name, func(t *testing.T) {
			requireDriver(t, d.bin, d.pkg)
			parent := e.t
			e.t = t
			defer func() { e.t = parent }()
			// The container writes to a file on a volume once it runs.
			mark := filepath.Join(e.dir, "up-"+d.name)
			os.WriteFile(mark, nil, 0o666)
			os.Chmod(mark, 0o666)
			s := e.startServer("run", "--rm", "--init", "--net", d.name, "-v", mark+":/up", "--rootfs", e.rootfs,
				"--", "sh", "-c", "echo up > /up; exec sleep 600")
			for i := 0; i < 200; i++ {
				if data, _ := os.ReadFile(mark); len(data) > 0 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			helpers := helperPIDs(s.cmd.Process.Pid, d.bin)
			if len(helpers) != 1 {
				t.Fatalf("want one %s under strata, found %v", d.bin, helpers)
			}
			syscall.Kill(helpers[0], syscall.SIGKILL)
			select {
			case err := <-s.done:
				s.done <- err
				code := -1
				if s.cmd.ProcessState != nil {
					code = s.cmd.ProcessState.ExitCode()
				}
				if code != 125 || !strings.Contains(s.stderr.String(), d.bin) || !strings.Contains(s.stderr.String(), "exited while the container ran") {
					t.Errorf("exit %d, stderr %q; want 125 naming %s", code, s.stderr.String(), d.bin)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("strata still runs 15s after %s died", d.bin)
			}
		})
	}
}
