package netns

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ChildConfig is what the parent side tells the namespace child to do.
type ChildConfig struct {
	// WaitRoute: a helper configures the interface; the command must not
	// start before the default route is there.
	WaitRoute bool `json:"wait_route,omitempty"`
	// Tap: make this tap device, configure it and hand it to the parent.
	Tap *Tap `json:"tap,omitempty"`
	// Ports is the opaque config of rootlesskit's builtin port driver,
	// whose child side runs here. Its paths start with ParentDir.
	Ports map[string]string `json:"ports,omitempty"`
	// Dir is the container's runtime dir, where the sockets are, and
	// ParentDir the /proc/self/fd path the parent reaches it by.
	Dir       string `json:"dir,omitempty"`
	ParentDir string `json:"parent_dir,omitempty"`
}

// Tap is the built-in network's device inside the namespace.
type Tap struct {
	Name    string `json:"name"`
	CIDR    string `json:"cidr"`
	Gateway string `json:"gateway"`
	MTU     int    `json:"mtu"`
}

// Child does the namespace side of a network, in strata's namespace child
// (root of the container's user namespace, in its network namespace,
// before the container's root is pivoted to). data is what Attach
// returned. The returned stop ends what keeps running (the port driver's
// child side) once the container is gone.
func Child(data []byte) (stop func(), err error) {
	var cc ChildConfig
	if err := json.Unmarshal(data, &cc); err != nil {
		return nil, fmt.Errorf("network config: %w", err)
	}
	var dir stateDir
	if cc.Tap != nil || cc.Ports != nil {
		// The same short paths as the parent's, through a fd of our own.
		if dir, err = openStateDir(cc.Dir); err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
	}
	if cc.Tap != nil {
		err := setupTap(cc.Tap, filepath.Join(dir.short, tapSocket))
		if err != nil {
			dir.close()
			return nil, fmt.Errorf("builtin network: %w", err)
		}
	}
	if cc.WaitRoute {
		if err := waitDefaultRoute(); err != nil {
			dir.close()
			return nil, err
		}
	}
	quit := make(chan struct{})
	if cc.Ports != nil {
		// The namespace child runs with an empty environment; the port
		// driver's source-address mode runs the host's ip and nft.
		if os.Getenv("PATH") == "" {
			os.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
		}
		for k, v := range cc.Ports {
			if rest, ok := strings.CutPrefix(v, cc.ParentDir+"/"); ok {
				cc.Ports[k] = dir.short + "/" + rest
			}
		}
		drv := builtin.NewChildDriver(logWriter("ports-child"))
		go func() {
			if err := drv.RunChildDriver(cc.Ports, quit, ""); err != nil {
				Log.Debug("port driver child", "err", err)
			}
		}()
	}
	return func() { close(quit); dir.close() }, nil
}

// waitDefaultRoute polls this namespace's routing table: the helper
// configures the interface from outside, on its own schedule.
func waitDefaultRoute() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		data, err := os.ReadFile("/proc/net/route")
		if err == nil {
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) > 2 && f[1] == "00000000" {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("network: no default route in the container's namespace after %s", readyTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func setupTap(t *Tap, sock string) error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/net/tun: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(t.Name)
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("create tap %s: %w", t.Name, err)
	}
	link, err := netlink.LinkByName(t.Name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", t.Name, err)
	}
	if err := netlink.LinkSetMTU(link, t.MTU); err != nil {
		return fmt.Errorf("tap %s: set MTU %d: %w", t.Name, t.MTU, err)
	}
	addr, err := netlink.ParseAddr(t.CIDR)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("tap %s: add %s: %w", t.Name, t.CIDR, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tap %s: up: %w", t.Name, err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(t.Gateway)}); err != nil {
		return fmt.Errorf("tap %s: default route via %s: %w", t.Name, t.Gateway, err)
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("hand the tap to strata: %w", err)
	}
	defer c.Close()
	if _, _, err := c.WriteMsgUnix([]byte{0}, unix.UnixRights(fd), nil); err != nil {
		return fmt.Errorf("hand the tap to strata: %w", err)
	}
	return nil
}
