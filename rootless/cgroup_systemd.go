package rootless

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// systemdCgroup is a container's cgroup as a transient scope with
// Delegate=yes on the user's systemd instance, which is what podman and
// crun do: systemd owns the user's cgroups, so strata asks it for one
// instead of writing there behind its back. The limits are unit
// properties too, so that a daemon-reload does not reset them.
//
// go-systemd's dbus package over godbus, rather than the systemd manager
// of opencontainers/cgroups: one call (StartTransientUnit) is all strata
// needs, and the cgroups module would bring runc's whole resource model,
// its device-filter eBPF code and logrus for it. Both are pure Go, so the
// CGO_ENABLED=0 static build stays as it was.
type systemdCgroup struct {
	conn    *sd.Conn
	unit    string
	id      string
	rdir    string
	res     resources
	dir     string
	outside string
	oom     int
	gone    bool
}

const systemdTimeout = 30 * time.Second

func newSystemdCgroup(id, rdir string, r resources) (*systemdCgroup, error) {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	conn, err := sd.NewUserConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("cgroup: connect to your systemd instance on D-Bus (%s): %w", userBusAddress(), err)
	}
	// The server goes back where strata runs, outside the scope; the
	// move needs a common ancestor the user may write, which a login
	// session's scope does not share with the user manager, so it is
	// best effort there.
	cur, _ := currentCgroup()
	return &systemdCgroup{conn: conn, unit: "strata-" + id + ".scope", id: id, rdir: rdir, res: r,
		outside: filepath.Join(cgroupRoot, cur)}, nil
}

func (c *systemdCgroup) properties(pid int) []sd.Property {
	p := []sd.Property{
		sd.PropDescription("strata container " + c.id),
		sd.PropSlice("user.slice"),
		sd.PropPids(uint32(pid)),
		{Name: "Delegate", Value: dbus.MakeVariant(true)},
		// An empty scope goes away, also when strata was SIGKILLed.
		{Name: "CollectMode", Value: dbus.MakeVariant("inactive-or-failed")},
	}
	u64 := func(name string, v uint64) { p = append(p, sd.Property{Name: name, Value: dbus.MakeVariant(v)}) }
	r := c.res
	if r.memory != 0 {
		u64("MemoryMax", uint64(r.memory))
		switch {
		case !r.swapSet:
			u64("MemorySwapMax", uint64(r.memory))
		case r.memorySwap == -1:
			u64("MemorySwapMax", ^uint64(0))
		default:
			u64("MemorySwapMax", uint64(r.memorySwap-r.memory))
		}
	}
	if r.memoryLow != 0 {
		u64("MemoryLow", uint64(r.memoryLow))
	}
	if r.cpuQuota != 0 {
		u64("CPUQuotaPerSecUSec", uint64(r.cpuQuota)*(1000000/cpuPeriod))
	}
	if r.cpuWeight != 0 {
		u64("CPUWeight", r.cpuWeight)
	}
	if r.pidsSet {
		v := ^uint64(0)
		if r.pidsMax > 0 {
			v = uint64(r.pidsMax)
		}
		u64("TasksMax", v)
	}
	if r.cpusetCPUs != "" {
		if mask, err := cpuMask(r.cpusetCPUs); err == nil {
			p = append(p, sd.Property{Name: "AllowedCPUs", Value: dbus.MakeVariant(mask)})
		}
	}
	return p
}

func (c *systemdCgroup) Join(pid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	done := make(chan string, 1)
	if _, err := c.conn.StartTransientUnitContext(ctx, c.unit, "replace", c.properties(pid), done); err != nil {
		return fmt.Errorf("cgroup: start systemd scope %s: %w", c.unit, err)
	}
	select {
	case res := <-done:
		if res != "done" {
			return fmt.Errorf("cgroup: start systemd scope %s: job %s", c.unit, res)
		}
	case <-ctx.Done():
		return fmt.Errorf("cgroup: start systemd scope %s: %w", c.unit, ctx.Err())
	}
	rel, err := procCgroup(strconv.Itoa(pid))
	if err != nil {
		c.stop()
		return err
	}
	c.dir = filepath.Join(cgroupRoot, rel)
	if filepath.Base(c.dir) != c.unit {
		c.stop()
		return fmt.Errorf("cgroup %s: systemd put pid %d here, not in scope %s", c.dir, pid, c.unit)
	}
	os.WriteFile(filepath.Join(c.rdir, cgroupMarker), []byte(c.dir+"\n"), 0o600)
	ctl, err := readControllers(c.dir)
	if err != nil {
		c.stop()
		return fmt.Errorf("cgroup %s: %w", c.dir, err)
	}
	var missing []string
	for _, want := range c.res.controllers() {
		if !ctl[want] {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		c.stop()
		return fmt.Errorf("cgroup %s: systemd did not delegate %s to the scope; delegate them to user sessions, as root:\n%s",
			c.dir, strings.Join(missing, " "), systemdDelegateFix)
	}
	// systemd applied the properties; cpuset and anything it did not
	// know go in directly (the delegated scope is ours to write).
	return writeLimits(c.dir, c.res)
}

func (c *systemdCgroup) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	done := make(chan string, 1)
	if _, err := c.conn.StopUnitContext(ctx, c.unit, "replace", done); err == nil {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
}

func (c *systemdCgroup) Close() error {
	if c.gone {
		return nil
	}
	c.gone = true
	if c.dir != "" {
		c.oom = readOOMKills(c.dir)
		c.stop()
	}
	c.conn.Close()
	return nil
}

func (c *systemdCgroup) OOMKills() int   { return c.oom }
func (c *systemdCgroup) Path() string    { return c.dir }
func (c *systemdCgroup) Outside() string { return c.outside }

// cpuMask turns a cpu list (0-3,5) into systemd's AllowedCPUs bitmask.
func cpuMask(list string) ([]byte, error) {
	var mask []byte
	for _, part := range strings.Split(list, ",") {
		lo, hi, _ := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if hi != "" {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, err
			}
		}
		for cpu := a; cpu <= b && cpu < 1<<16; cpu++ {
			for len(mask) <= cpu/8 {
				mask = append(mask, 0)
			}
			mask[cpu/8] |= byte(1) << (cpu % 8)
		}
	}
	return mask, nil
}
