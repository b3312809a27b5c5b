package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/rootless"
)

func newPsCmd(g *globalOptions) *cobra.Command {
	var all, quiet bool
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List containers (running ones; -a for all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := rootless.List(g.storeRoot())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			if !quiet {
				fmt.Fprintln(w, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tNAME")
			}
			for _, c := range cs {
				if !all && c.State.Status != "running" {
					continue
				}
				if quiet {
					fmt.Fprintln(w, c.ID[:12])
					continue
				}
				status := c.State.Status
				if status == "exited" {
					status = fmt.Sprintf("exited (%d)", c.State.ExitCode)
				}
				command := strings.Join(c.Command, " ")
				if len(command) > 30 {
					command = command[:27] + "..."
				}
				fmt.Fprintf(w, "%s\t%s\t%q\t%s ago\t%s\t%s\n", c.ID[:12], c.Image, command,
					time.Since(c.Created).Round(time.Second), status, c.Name)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show stopped containers too")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print container ids only")
	return cmd
}
