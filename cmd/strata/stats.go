package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/rootless"
)

func newStatsCmd(g *globalOptions) *cobra.Command {
	var noStream bool
	cmd := &cobra.Command{
		Use:   "stats [CONTAINER...]",
		Short: "Live CPU, memory and pids use of running containers (from their cgroups)",
		Long: `Print the CPU %, memory and pids use of running containers, podman's columns,
every second (--no-stream: once). The numbers come from each container's own
cgroup, which exists where strata has a delegated cgroup v2 (strata doctor).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			for {
				if err := printStats(cmd.OutOrStdout(), g.storeRoot(), args); err != nil {
					return err
				}
				if noStream {
					return nil
				}
			}
		},
	}
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print once and exit")
	return cmd
}

// printStats samples the containers twice, a second apart, for CPU %.
func printStats(w io.Writer, storeRoot string, refs []string) error {
	var cs []rootless.Container
	if len(refs) == 0 {
		all, err := rootless.List(storeRoot)
		if err != nil {
			return err
		}
		for _, c := range all {
			if c.State.Status == "running" {
				cs = append(cs, c)
			}
		}
	}
	for _, ref := range refs {
		c, err := rootless.Find(storeRoot, ref)
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	before := map[string]rootless.CgroupUsage{}
	for _, c := range cs {
		before[c.ID], _, _ = rootless.Usage(c.ID)
	}
	start := time.Now()
	time.Sleep(time.Second)
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tPIDS\tCPU TIME")
	for _, c := range cs {
		u, ok, err := rootless.Usage(c.ID)
		if err != nil || !ok {
			fmt.Fprintf(tw, "%s\t%s\t--\t-- / --\t--\t--\t--\n", c.ID[:12], c.Name)
			continue
		}
		cpu := float64(u.CPUUsec-before[c.ID].CPUUsec) / float64(time.Since(start).Microseconds()) * 100
		limit, memPct := "unlimited", "--"
		if u.MemoryLimit > 0 {
			limit = humanBytes(u.MemoryLimit)
			memPct = fmt.Sprintf("%.2f%%", float64(u.Memory)/float64(u.MemoryLimit)*100)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f%%\t%s / %s\t%s\t%d\t%s\n", c.ID[:12], c.Name, cpu, humanBytes(u.Memory), limit, memPct,
			u.Pids, (time.Duration(u.CPUUsec) * time.Microsecond).Round(time.Millisecond))
	}
	return tw.Flush()
}

// humanBytes is a size in binary units, three significant digits.
func humanBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.3g%s", v, units[i])
}
