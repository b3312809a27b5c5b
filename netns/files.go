package netns

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net"
	"os"
	"strings"
)

// ResolvConf is the container's /etc/resolv.conf: the driver's DNS
// forwarder, which runs on the host side and so reaches whatever the host
// resolves with, a loopback stub included; the host's search and options
// lines are kept.
func (n *Network) ResolvConf() []byte {
	_, _, dns := n.drv.addrs()
	var b bytes.Buffer
	for _, l := range hostResolvLines() {
		if strings.HasPrefix(l, "search") || strings.HasPrefix(l, "domain") || strings.HasPrefix(l, "options") {
			b.WriteString(l + "\n")
		}
	}
	for _, d := range dns {
		b.WriteString("nameserver " + d + "\n")
	}
	return b.Bytes()
}

// Hosts is the container's /etc/hosts: loopback, the container under its
// host name and name, and host.containers.internal at the address that
// reaches the host (its loopback services only with allow_host_loopback).
func (n *Network) Hosts(hostname, name string) []byte {
	ctr, host, _ := n.drv.addrs()
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	names := hostname
	if name != "" && name != hostname {
		names += " " + name
	}
	if ctr == "" {
		ctr = "127.0.1.1"
	}
	b.WriteString(ctr + "\t" + names + "\n")
	if host != "" {
		b.WriteString(host + "\thost.containers.internal host.docker.internal\n")
	}
	return b.Bytes()
}

func hostResolvLines() []string {
	data, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// defaultRoute reads the host's IPv4 default gateway and its interface
// from /proc/net/route (no netlink needed on the host side).
func defaultRoute() (gw, iface string, ok bool) {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return "", "", false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		raw, err := hex.DecodeString(f[2])
		if err != nil || len(raw) != 4 {
			continue
		}
		ip := make(net.IP, 4)
		binary.LittleEndian.PutUint32(ip, binary.BigEndian.Uint32(raw))
		return ip.String(), f[0], true
	}
	return "", "", false
}

func hasDefaultRoute() bool {
	_, _, ok := defaultRoute()
	return ok
}

// hasIPv6DefaultRoute: IPv6 is switched on for a container only where the
// host can route it.
func hasIPv6DefaultRoute() bool {
	data, err := os.ReadFile("/proc/net/ipv6_route")
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 10 && f[0] == strings.Repeat("0", 32) && f[1] == "00" && f[9] != "lo" {
			return true
		}
	}
	return false
}

func ifaceIPv4(name string) string {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return ""
	}
	addrs, _ := ifi.Addrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}
