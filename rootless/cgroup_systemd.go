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

// systemdCgroup is a transient scope with Delegate=yes on the user's
// systemd instance, which is what podman and crun do: systemd owns the
// user's cgroups, so strata asks it for a delegated one instead of
// writing there behind its back. Inside the scope strata lays out the
// same tree as with cgroupfs (strata-self for the union filesystem's
// server, strata-<id> with the limits for the container): the server
// then leaves the container's cgroup for one the user may move it to,
// and systemd never writes below a delegated cgroup, so a daemon-reload
// cannot reset the limits.
//
// go-systemd's dbus package over godbus, rather than the systemd manager
// of opencontainers/cgroups: one call (StartTransientUnit) is all strata
// needs, and the cgroups module would bring runc's whole resource model,
// its device-filter eBPF code and logrus for it. Both are pure Go, so the
// CGO_ENABLED=0 static build stays as it was.
type systemdCgroup struct {
	conn *sd.Conn
	unit string
	id   string
	rdir string
	res  resources
	fs   *fsCgroup // the container's cgroup inside the scope, once joined
	oom  int
	gone bool
}

const systemdTimeout = 30 * time.Second

func newSystemdCgroup(id, rdir string, r resources) (*systemdCgroup, error) {
	// godbus closes the connection when this context ends: it must
	// outlive the container, so no deadline here.
	conn, err := sd.NewUserConnectionContext(context.Background())
	if err != nil {
		return nil, fmt.Errorf("cgroup: connect to your systemd instance on D-Bus (%s): %w", userBusAddress(), err)
	}
	return &systemdCgroup{conn: conn, unit: "strata-" + id + ".scope", id: id, rdir: rdir, res: r}, nil
}

// Join starts the scope with the child and strata itself in it, then
// moves the child on into the container's cgroup below. strata keeps the
// scope populated until it has read memory.events: systemd removes an
// empty scope at once, and the container's cgroup with it. A run that
// asked for no limit runs on outside a scope when systemd refuses one.
func (c *systemdCgroup) Join(pid int) error {
	err := c.join(pid)
	if err != nil && !c.res.any() {
		c.fs = nil
		return nil
	}
	return err
}

func (c *systemdCgroup) join(pid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	props := []sd.Property{
		sd.PropDescription("strata container " + c.id),
		sd.PropSlice("user.slice"),
		// The user's manager asks PID 1 to move processes it may not
		// move itself (strata started from a system service, say).
		sd.PropPids(uint32(pid), uint32(os.Getpid())),
		{Name: "Delegate", Value: dbus.MakeVariant(true)},
		// An empty scope goes away, also when strata was SIGKILLed.
		{Name: "CollectMode", Value: dbus.MakeVariant("inactive-or-failed")},
	}
	done := make(chan string, 1)
	if _, err := c.conn.StartTransientUnitContext(ctx, c.unit, "replace", props, done); err != nil {
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
		return err
	}
	scope := filepath.Join(cgroupRoot, rel)
	if filepath.Base(scope) != c.unit {
		return fmt.Errorf("cgroup %s: systemd put pid %d here, not in scope %s", scope, pid, c.unit)
	}
	ctl, err := readControllers(scope)
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", scope, err)
	}
	var missing []string
	for _, want := range c.res.controllers() {
		if !ctl[want] {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cgroup %s: systemd did not delegate %s to the scope; delegate them to user sessions, as root:\n%s",
			scope, strings.Join(missing, " "), systemdDelegateFix)
	}
	if c.fs, err = newFSCgroup(scope, c.id, c.rdir, c.res); err != nil {
		return err
	}
	return c.fs.Join(pid)
}

// Close removes the container's cgroup. The scope itself is not
// stopped: strata is in it, and a stop would SIGTERM strata and wait for
// it; systemd collects the scope once strata exits and leaves it empty.
func (c *systemdCgroup) Close() error {
	if c.gone {
		return nil
	}
	c.gone = true
	var err error
	if c.fs != nil {
		err = c.fs.Close()
		c.oom = c.fs.OOMKills()
	}
	c.conn.Close()
	return err
}

func (c *systemdCgroup) OOMKills() int { return c.oom }

func (c *systemdCgroup) Path() string {
	if c.fs == nil {
		return ""
	}
	return c.fs.Path()
}

// Outside is known only after Join, which runs before the spec is sent.
func (c *systemdCgroup) Outside() string {
	if c.fs == nil {
		return ""
	}
	return c.fs.Outside()
}
