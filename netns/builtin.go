package netns

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"github.com/containers/gvisor-tap-vsock/pkg/virtualnetwork"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// The built-in network: gvisor-tap-vsock's user-mode stack inside strata.
// The namespace child makes the tap device and hands its fd over; strata
// reads and writes frames on it directly, so no packet crosses a second
// process or socket. Addresses follow slirp4netns, so a container sees the
// same network whichever of the two serves it.
const (
	builtinSubnet = "10.0.2.0/24"
	builtinCIDR   = "10.0.2.100/24"
	builtinCtr    = "10.0.2.100"
	builtinGW     = "10.0.2.2" // also DNS, and the host's loopback when allowed
	tapSocket     = "tap.sock" // in the runtime dir: takes the tap fd
)

var quietLogrus sync.Once

type builtinNet struct {
	cfg    Config
	ln     *net.UnixListener
	sock   string
	cancel context.CancelFunc
	mu     sync.Mutex
	tap    *os.File
}

func newBuiltin(c Config) *builtinNet { return &builtinNet{cfg: c} }

func (b *builtinNet) start(pid int, dir stateDir, _ []Port) (ChildConfig, error) {
	// gvisor-tap-vsock logs through logrus to stderr; a library stays quiet.
	quietLogrus.Do(func() { logrus.SetOutput(logWriter("gvisor-tap-vsock")) })
	conf := &types.Configuration{
		MTU:               MTU,
		Subnet:            builtinSubnet,
		GatewayIP:         builtinGW,
		GatewayMacAddress: "5a:94:ef:e4:0c:dd",
		DHCPStaticLeases:  map[string]string{},
		NAT:               map[string]string{},
		Protocol:          types.VfkitProtocol,
	}
	if b.cfg.AllowHostLoopback {
		conf.NAT[builtinGW] = "127.0.0.1"
	}
	vn, err := virtualnetwork.New(conf)
	if err != nil {
		return ChildConfig{}, fmt.Errorf("builtin network: %w", err)
	}
	sock, real := filepath.Join(dir.short, tapSocket), filepath.Join(dir.path, tapSocket)
	os.Remove(real)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return ChildConfig{}, fmt.Errorf("builtin network: %w", err)
	}
	// Removed by its real name, below, not by the fd path it was bound by.
	ln.SetUnlinkOnClose(false)
	ctx, cancel := context.WithCancel(context.Background())
	b.ln, b.cancel, b.sock = ln, cancel, real
	go func() {
		tap, err := receiveTap(ln)
		ln.Close()
		// By its real name: the fd behind the short one may be gone.
		os.Remove(real)
		if err != nil {
			Log.Debug("builtin network: no tap", "err", err)
			return
		}
		b.mu.Lock()
		b.tap = tap
		b.mu.Unlock()
		// Frames, one per read and write: what vfkit's datagram protocol
		// expects of its connection.
		if err := vn.AcceptVfkit(ctx, tapConn{tap}); err != nil {
			Log.Debug("builtin network", "err", err)
		}
	}()
	return ChildConfig{Tap: &Tap{Name: "eth0", CIDR: builtinCIDR, Gateway: builtinGW, MTU: MTU}}, nil
}

func receiveTap(ln *net.UnixListener) (*os.File, error) {
	c, err := ln.AcceptUnix()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(readyTimeout))
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := c.ReadMsgUnix(make([]byte, 1), oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("no tap fd from the child: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("no tap fd from the child: %v", err)
	}
	unix.SetNonblock(fds[0], true)
	return os.NewFile(uintptr(fds[0]), "tap"), nil
}

func (b *builtinNet) addrs() (string, string, []string) {
	return builtinCtr, builtinGW, []string{builtinGW}
}

// failed: the stack lives in strata itself, so it cannot die alone.
func (b *builtinNet) failed() <-chan error { return nil }

func (b *builtinNet) stop() error {
	if b.cancel != nil {
		b.cancel()
	}
	if b.ln != nil {
		b.ln.Close()
		os.Remove(b.sock)
	}
	// A read blocked on the tap only ends when it is closed.
	b.mu.Lock()
	if b.tap != nil {
		b.tap.Close()
	}
	b.mu.Unlock()
	return nil
}

// tapConn is the tap device as the net.Conn gvisor-tap-vsock's switch reads
// frames from.
type tapConn struct{ *os.File }

type tapAddr struct{}

func (tapAddr) Network() string { return "tap" }
func (tapAddr) String() string  { return "tap" }

func (tapConn) LocalAddr() net.Addr  { return tapAddr{} }
func (tapConn) RemoteAddr() net.Addr { return tapAddr{} }

var _ io.ReadWriteCloser = tapConn{}
