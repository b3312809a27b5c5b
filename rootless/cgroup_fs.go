package rootless

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// selfLeaf is the cgroup, beside the containers', that holds strata and
// whatever else lived in the delegated cgroup: cgroup v2 lets a cgroup
// hand controllers to its children only while it holds no process itself.
const selfLeaf = "strata-self"

// fsCgroup is a container's cgroup made by strata directly in a
// delegated cgroup it can write (HPC nodes, CI runners, containers
// without a user session):
//
//	<base>/strata-self   strata and the base's other processes
//	<base>/strata-<id>   one per container
type fsCgroup struct {
	dir  string
	self string
	oom  int
	gone bool
}

func newFSCgroup(base, id, rdir string, r resources) (*fsCgroup, error) {
	if err := enableControllers(base, r.controllers()); err != nil {
		return nil, err
	}
	self := filepath.Join(base, selfLeaf)
	if err := os.Mkdir(self, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("cgroup %s: create: %w", self, err)
	}
	dir := filepath.Join(base, "strata-"+id)
	// Recorded first, so a SIGKILL from here on leaves a trail for the
	// next strata's sweep.
	if err := os.WriteFile(filepath.Join(rdir, cgroupMarker), []byte(dir+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("cgroup %s: record in %s: %w", dir, rdir, err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup %s: create: %w", dir, err)
	}
	if err := writeLimits(dir, r); err != nil {
		unix.Rmdir(dir)
		return nil, err
	}
	return &fsCgroup{dir: dir, self: self}, nil
}

// enableControllers turns on the controllers in base's subtree_control,
// first moving every process in base into the strata-self leaf if base
// holds any (the no-internal-processes rule). Controllers already on stay
// on; nothing else is changed.
func enableControllers(base string, want []string) error {
	have := map[string]bool{}
	if data, err := os.ReadFile(filepath.Join(base, "cgroup.subtree_control")); err == nil {
		for _, c := range strings.Fields(string(data)) {
			have[c] = true
		}
	}
	var add []string
	for _, c := range want {
		if !have[c] {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	// The root cgroup is exempt from the rule (and its kernel threads
	// cannot move).
	if base != cgroupRoot {
		if err := vacate(base); err != nil {
			return err
		}
	}
	p := filepath.Join(base, "cgroup.subtree_control")
	if err := os.WriteFile(p, []byte(strings.Join(add, " ")), 0); err != nil {
		return fmt.Errorf("cgroup %s: write %q: %w", p, strings.Join(add, " "), err)
	}
	return nil
}

// vacate moves every process of base into base/strata-self. New ones may
// appear meanwhile (a fork in flight), so it loops until base is empty.
func vacate(base string) error {
	leaf := filepath.Join(base, selfLeaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cgroup %s: create: %w", leaf, err)
	}
	procs := filepath.Join(leaf, "cgroup.procs")
	for round := 0; round < 10; round++ {
		data, err := os.ReadFile(filepath.Join(base, "cgroup.procs"))
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", base, err)
		}
		pids := strings.Fields(string(data))
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			err := os.WriteFile(procs, []byte(pid), 0)
			if err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("cgroup %s: move pid %s out of %s (a cgroup hands controllers to its children only when it holds no process): %w", procs, pid, base, err)
			}
		}
	}
	return fmt.Errorf("cgroup %s: processes keep appearing in it; start strata from a leaf cgroup", base)
}

func (c *fsCgroup) Join(pid int) error {
	p := filepath.Join(c.dir, "cgroup.procs")
	if err := os.WriteFile(p, []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("cgroup %s: join pid %d: %w", p, pid, err)
	}
	return nil
}

func (c *fsCgroup) Close() error {
	if c.gone {
		return nil
	}
	c.oom = readOOMKills(c.dir)
	c.gone = true
	return removeCgroup(c.dir)
}

func (c *fsCgroup) OOMKills() int   { return c.oom }
func (c *fsCgroup) Path() string    { return c.dir }
func (c *fsCgroup) Outside() string { return c.self }
