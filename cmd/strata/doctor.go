package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/strata-run/strata/rootless"
)

func newDoctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check what this host gives strata: cgroup v2 delegation for resource limits, FUSE, id maps",
		Long: `Check the host: for each requirement, what strata found and the exact fix.

Resource limits (--memory, --cpus, --pids-limit, ...) need a delegated
cgroup v2 subtree, through your systemd user instance (a transient scope
with Delegate=yes) or a cgroup you can write (cgroupfs). strata picks one
automatically; STRATA_CGROUP_MANAGER=systemd|cgroupfs forces one and
STRATA_CGROUP_PARENT names the cgroup cgroupfs uses.

Exit status: 0 when everything needed for containers with limits is there,
1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			checks := rootless.Doctor(cgroupConfig(""))
			w := cmd.OutOrStdout()
			bad := 0
			for _, c := range checks {
				mark := "ok  "
				switch {
				case c.Info:
					mark = "    "
				case !c.OK:
					mark = "FAIL"
					bad++
				}
				fmt.Fprintf(w, "%s %s\n       found: %s\n", mark, c.Name, c.Found)
				if c.Fix != "" {
					fmt.Fprintf(w, "       fix:   %s\n", strings.ReplaceAll(c.Fix, "\n", "\n              "))
				}
			}
			if bad > 0 {
				return withExitCode(1, nil)
			}
			return nil
		},
	}
}

// addLimitFlags adds podman's resource-limit flags to a command.
func addLimitFlags(f *pflag.FlagSet, l *rootless.Limits, cg *rootless.CgroupConfig) {
	f.StringVarP(&l.Memory, "memory", "m", "", "memory limit (`SIZE`: 64m, 1g); needs a delegated cgroup v2 (see strata doctor)")
	f.StringVar(&l.MemorySwap, "memory-swap", "", "memory plus swap limit (`SIZE`, -1 for unlimited swap; default: twice --memory)")
	f.StringVar(&l.MemoryReservation, "memory-reservation", "", "memory soft limit (`SIZE`, memory.low)")
	f.StringVar(&l.CPUs, "cpus", "", "CPU limit as a number of CPUs (0.5: half of one)")
	f.StringVar(&l.CPUShares, "cpu-shares", "", "CPU weight in cgroup v1 shares (1024 is the default)")
	f.StringVar(&l.CPUWeight, "cpu-weight", "", "CPU weight, cgroup v2's 1 to 10000 (100 is the default)")
	f.StringVar(&l.CpusetCPUs, "cpuset-cpus", "", "CPUs the container may run on (`LIST`: 0-3,5)")
	f.StringVar(&l.PidsLimit, "pids-limit", "", "most processes (and threads) at once; -1 for unlimited")
	f.StringVar(&cg.Parent, "cgroup-parent", "", "cgroupfs: create the container's cgroup under this `CGROUP` (default: $STRATA_CGROUP_PARENT, or your current cgroup)")
}

// cgroupConfig is where strata looks for a delegated cgroup: a
// --cgroup-parent, else the environment.
func cgroupConfig(parent string) rootless.CgroupConfig {
	if parent == "" {
		parent = os.Getenv("STRATA_CGROUP_PARENT")
	}
	return rootless.CgroupConfig{Manager: os.Getenv("STRATA_CGROUP_MANAGER"), Parent: parent}
}
