package tests

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-run/strata/tests/harness"
	"golang.org/x/net/dns/dnsmessage"
)

// netDrivers are the user-mode drivers with what each needs on the host.
var netDrivers = []struct{ name, bin, pkg string }{
	{"pasta", "pasta", "passt"},
	{"slirp4netns", "slirp4netns", "slirp4netns"},
	{"builtin", "", ""},
}

// testDNSName resolves to testDNSAddr through the test's DNS server only.
const (
	testDNSName = "strata-net-test.example."
	testDNSAddr = "192.0.2.77"
)

// testDNSIP is the loopback address the test's DNS server answers on:
// systemd-resolved's stub address where that is free, another one where
// resolved holds it.
var testDNSIP = "127.0.0.53"

// newNetEnv is a run env whose rootfs has what the network tests use: a
// CGI that prints the peer's address, the UDP echo server, and an
// nsswitch.conf (static busybox's glibc crashes resolving names without).
func newNetEnv(t *testing.T) *runEnv {
	t.Helper()
	u := harness.User(t)
	requireTun(t, u)
	e := newRunEnv(t, u, false)
	files := map[string]string{
		"etc/nsswitch.conf": "hosts: files dns\n",
		"www/index.html":    "hello from the container\n",
		"www/cgi-bin/peer":  "#!/bin/sh\necho Content-Type: text/plain\necho\necho \"peer=$REMOTE_ADDR\"\n",
	}
	for name, content := range files {
		p := filepath.Join(e.rootfs, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	echo := filepath.Join(e.rootfs, "bin/netecho")
	build := exec.Command("go", "build", "-o", echo, "./tests/testdata/netecho")
	build.Dir = harness.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build netecho: %v\n%s", err, out)
	}
	if out, err := exec.Command("chown", "-R", strconv.Itoa(u.UID)+":"+strconv.Itoa(u.GID), e.rootfs).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	return e
}

// requireTun skips unless the test user may open /dev/net/tun, which every
// user-mode driver needs for its tap device.
func requireTun(t *testing.T, u harness.TestUser) {
	t.Helper()
	if err := u.Command("sh", "-c", "exec 3<>/dev/net/tun").Run(); err != nil {
		harness.Skip(t, "a /dev/net/tun the test user may open (./tests/setup.sh user makes it 0666)")
	}
}

func requireDriver(t *testing.T, bin, pkg string) {
	t.Helper()
	if bin == "" {
		return
	}
	if _, err := exec.LookPath(bin); err != nil {
		harness.Skip(t, bin+" (apt-get install "+pkg+")")
	}
}

// withResolvConf runs cmd in a mount namespace of the test's own where
// /etc/resolv.conf names only the test's loopback DNS server: the host's
// resolver, as strata and its helpers see it, becomes a loopback stub.
func withResolvConf(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	f := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(f, []byte("nameserver "+testDNSIP+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--mount", "--propagation", "private", "--", "sh", "-c",
		`mount --bind "$0" /etc/resolv.conf && exec "$@"`, f}, cmd.Args...)
	c := exec.Command("unshare", args...)
	c.Env = cmd.Env
	return c
}

// runCmd runs cmd to completion with a timeout.
func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v: timed out; stderr: %s", cmd.Args, errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// startDNS serves A records for testDNSName on testDNSIP:53 (UDP and TCP)
// and NXDOMAIN for anything else.
func startDNS(t *testing.T) {
	t.Helper()
	var pc net.PacketConn
	var err error
	for _, ip := range []string{"127.0.0.53", "127.53.0.1"} {
		if pc, err = net.ListenPacket("udp", ip+":53"); err == nil {
			testDNSIP = ip
			break
		}
	}
	if err != nil {
		harness.Skip(t, "a free loopback port 53 for the test's DNS server: "+err.Error())
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n]); resp != nil {
				pc.WriteTo(resp, addr)
			}
		}
	}()
}

func dnsAnswer(req []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	h.Response, h.Authoritative, h.RecursionAvailable = true, true, true
	found := strings.EqualFold(q.Name.String(), testDNSName)
	if !found {
		h.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, h)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	if found && q.Type == dnsmessage.TypeA {
		ip := net.ParseIP(testDNSAddr).To4()
		b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
			dnsmessage.AResource{A: [4]byte{ip[0], ip[1], ip[2], ip[3]}})
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// startHostHTTP serves a page on the host's loopback and returns its port.
func startHostHTTP(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the host\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// freePorts returns n host ports free right now (TCP and UDP).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp", fmt.Sprintf(":%d", p)); err == nil {
			u.Close()
			out = append(out, p)
		}
	}
	return out
}

// server is a container started in the background.
type server struct {
	port   int // the published TCP port, where a test needs it
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
}

// startServer runs a long-lived container (with --init, so SIGTERM ends
// it) and registers its end.
func (e *runEnv) startServer(args ...string) *server {
	e.t.Helper()
	cmd := e.command(args...)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errb
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &errb, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	e.t.Cleanup(func() { s.stop(e.t) })
	return s
}

// stop ends the container by SIGTERM to strata, SIGKILL if it lingers.
func (s *server) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Errorf("strata did not end on SIGTERM; stderr: %s", s.stderr.String())
		s.cmd.Process.Kill()
		<-s.done
	}
}

// httpGet fetches url until it answers (the container may still start).
func httpGet(t *testing.T, s *server, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return string(body)
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		select {
		case werr := <-s.done:
			s.done <- werr
			t.Fatalf("GET %s: the container ended (%v); stderr: %s", url, werr, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v; stderr: %s", url, err, s.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// udpEcho sends through addr until the echo comes back.
func udpEcho(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	for i := 0; i < 50; i++ {
		msg := fmt.Sprintf("ping %d", i)
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == msg {
			return
		}
	}
	t.Errorf("UDP echo through %s: no answer", addr)
}

// helperPIDs lists the children of pid started as bin (argv[0]; pasta's
// comm is passt.avx2 on most machines).
func helperPIDs(pid int, bin string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		argv, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if arg0, _, _ := strings.Cut(string(argv), "\x00"); filepath.Base(arg0) != bin {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

func portFree(port int, proto string) bool {
	if proto == "udp" {
		c, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// hostAddr is the host's first non-loopback IPv4 address.
func hostAddr(t *testing.T) string {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	harness.Skip(t, "a non-loopback IPv4 address")
	return ""
}

func haveTool(name string) bool {
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// hostHasIPv6Route: a default IPv6 route not through lo.
func hostHasIPv6Route() bool {
	data, err := os.ReadFile("/proc/net/ipv6_route")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 10 && f[0] == strings.Repeat("0", 32) && f[1] == "00" && f[9] != "lo" {
			return true
		}
	}
	return false
}
