package netns

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestParseMode(t *testing.T) {
	for _, c := range []struct {
		in      string
		driver  string
		allow   bool
		wantErr string
	}{
		{"", "", false, ""},
		{"pasta", Pasta, false, ""},
		{"slirp4netns:allow_host_loopback=true", Slirp4netns, true, ""},
		{"gvisor-tap-vsock", Builtin, false, ""},
		{"builtin:allow_host_loopback=false", Builtin, false, ""},
		{"bridge", "", false, `unknown network driver "bridge"`},
		{"pasta:mtu=1500", "", false, `unknown option "mtu"`},
		{"pasta:allow_host_loopback=maybe", "", false, "want true or false"},
	} {
		cfg, err := ParseMode(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("ParseMode(%q): %v, want error with %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || cfg.Driver != c.driver || cfg.AllowHostLoopback != c.allow {
			t.Errorf("ParseMode(%q) = %+v, %v", c.in, cfg, err)
		}
	}
}

func TestParsePorts(t *testing.T) {
	ps, err := ParsePorts([]string{"8080:80", "127.0.0.1:5353:53/udp", "[::1]:9000-9001:90-91/tcp", "7000:70/tcp,udp"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.String()+">"+strconv.Itoa(p.ContainerPort))
	}
	want := ":8080/tcp>80 127.0.0.1:5353/udp>53 [::1]:9000/tcp>90 [::1]:9001/tcp>91 :7000/tcp>70 :7000/udp>70"
	if strings.Join(got, " ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, " "), want)
	}

	ps, err = ParsePorts([]string{"80", "127.0.0.1::81"})
	if err != nil || len(ps) != 2 || ps[0].HostPort == 0 || ps[1].HostPort == 0 || ps[1].HostIP != "127.0.0.1" {
		t.Errorf("random host ports: %+v %v", ps, err)
	}

	for _, bad := range [][]string{{"x"}, {"0:80"}, {"8080:80/sctp"}, {"1-3:1-2"}, {"a.b.c.d:1:2"}, {"8080:80", "8080:81"}, {"1:2:3:4"}} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q): no error", bad)
		}
	}
}

func TestExposedPorts(t *testing.T) {
	ps, err := ExposedPorts([]string{"80/tcp", "53/udp", "8000"})
	if err != nil || len(ps) != 3 {
		t.Fatalf("%+v %v", ps, err)
	}
	seen := map[string]bool{}
	for _, p := range ps {
		seen[strconv.Itoa(p.ContainerPort)+"/"+p.Proto] = true
		if p.HostPort == 0 {
			t.Errorf("%+v: no host port picked", p)
		}
	}
	if !seen["80/tcp"] || !seen["53/udp"] || !seen["8000/tcp"] {
		t.Errorf("exposed ports: %v", seen)
	}
}

func TestCheckPortsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := l.Addr().(*net.TCPAddr).Port
	ps, err := ParsePorts([]string{"127.0.0.1:" + strconv.Itoa(p) + ":80"})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPorts(ps); err == nil || !strings.Contains(err.Error(), strconv.Itoa(p)) {
		t.Errorf("taken port %d: %v", p, err)
	}
}

func TestFiles(t *testing.T) {
	n := &Network{drv: newBuiltin(Config{})}
	hosts := string(n.Hosts("box", "web"))
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "10.0.2.100\tbox web\n", "10.0.2.2\thost.containers.internal"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	if rc := string(n.ResolvConf()); !strings.Contains(rc, "nameserver 10.0.2.2\n") || strings.Contains(rc, "127.0.0.53") {
		t.Errorf("resolv.conf:\n%s", rc)
	}
}

// TestSweep: a helper recorded in a runtime dir is killed; a pid whose
// start time does not match (reused) is left alone.
func TestSweep(t *testing.T) {
	dir := t.TempDir()
	live := exec.Command("sleep", "60")
	other := exec.Command("sleep", "60")
	for _, c := range []*exec.Cmd{live, other} {
		if err := c.Start(); err != nil {
			t.Skip("no sleep: " + err.Error())
		}
		defer c.Process.Kill()
	}
	st, err := procStart(live.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	rec := fmt.Sprintf("%d %s\n%d 1\n", live.Process.Pid, st, other.Process.Pid)
	if err := os.WriteFile(filepath.Join(dir, helpersFile), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	Sweep(dir)
	if err := live.Wait(); err == nil {
		t.Error("the recorded helper was not killed")
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a pid with another start time was killed: %v", err)
	}
}
