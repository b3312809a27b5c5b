package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
)

// ratio returns c's median over ref's, or 0 when either did not run.
func ratio(c, ref *Cell) float64 {
	if c == nil || ref == nil || !c.Ran() || !ref.Ran() || ref.Median <= 0 {
		return 0
	}
	return c.Median / ref.Median
}

func fmtRatio(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", x)
}

func fmtSecs(s float64) string {
	switch {
	case s >= 10:
		return fmt.Sprintf("%.1fs", s)
	case s >= 0.1:
		return fmt.Sprintf("%.2fs", s)
	default:
		return fmt.Sprintf("%.1fms", s*1000)
	}
}

func fmtRSS(kib int64) string {
	if kib == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(kib)/1024)
}

// cellText is what a table shows for one cell.
func cellText(c *Cell) (timing, spread string) {
	switch {
	case c.NotRun != "":
		return "not run", shorten(c.NotRun, 70)
	case c.Error != "":
		return "FAILED", shorten(c.Error, 70)
	case !c.Ran():
		return "-", ""
	}
	return fmtSecs(c.Median), fmtSecs(c.Min) + ".." + fmtSecs(c.Max)
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// WriteTable prints the terminal table: one block per workload, a row per
// backend and mode, with ratios to native and to kernel overlayfs.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tMODE\tBACKEND\tMEDIAN\tMIN..MAX\txNATIVE\txKERNEL\tPEAK RSS\tFUSE REQUESTS")
	for _, wl := range r.Workloads {
		for _, m := range r.Modes {
			native, kernel := r.Cell(wl.Name, "native", m), r.Cell(wl.Name, "kernel", m)
			for _, b := range r.Backends {
				c := r.Cell(wl.Name, b.Name, m)
				t, spread := cellText(c)
				reqs := ""
				if c.Requests != nil {
					reqs = fmtRequests(c.Requests, 6)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", wl.Name, m, b.Name, t, spread,
					fmtRatio(ratio(c, native)), fmtRatio(ratio(c, kernel)), fmtRSS(c.PeakRSSKiB), reqs)
			}
			if ref := refSeconds(native); ref > 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\t\t\t\n", wl.Name, m, "(cp --reflink=auto)", fmtSecs(ref))
			}
		}
	}
	tw.Flush()
}

func refSeconds(native *Cell) float64 {
	if native == nil || native.Extra == nil {
		return 0
	}
	return native.Extra["cp_reflink_auto_s"]
}

// WriteJSON writes the whole report.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteMarkdown writes a self-contained report: set-up, then one table per
// mode with a column per backend, then memory and failures.
func (r *Report) WriteMarkdown(w io.Writer, svgName string) {
	fmt.Fprintf(w, "# strata bench\n\n")
	fmt.Fprintf(w, "Command: `%s`  \n", r.Command)
	fmt.Fprintf(w, "Started %s, took %.1f min; %d runs per cell (interleaved), seed %d.\n\n",
		r.Started.Format("2006-01-02 15:04 UTC"), r.Seconds/60, r.Runs, r.Seed)
	h := r.Host
	fmt.Fprintf(w, "| host | |\n|---|---|\n")
	fmt.Fprintf(w, "| kernel | %s |\n| FUSE protocol | %s |\n| CPU | %s (%d cores) |\n| memory | %.1f GiB |\n",
		h.Kernel, h.FUSEProtocol, h.CPU, h.Cores, h.MemoryGiB)
	if h.FuseOverlayfs != "" {
		fmt.Fprintf(w, "| fuse-overlayfs | %s |\n", h.FuseOverlayfs)
	}
	fmt.Fprintf(w, "| strata speed defaults | %s |\n", strings.Join(h.StrataDefaults, ", "))
	if t := r.Tree; t != nil {
		fmt.Fprintf(w, "| tree | %s: %d files, %d dirs, %.0f MiB; big file %d MiB; rm-rf removes `%s` |\n",
			t.Name, t.Files, t.Dirs, float64(t.Bytes)/(1<<20), t.BigSize>>20, t.RmDir)
	}
	if t := r.Tree1M; t != nil {
		fmt.Fprintf(w, "| walk-1m tree | %s: %d files, %d dirs |\n", t.Name, t.Files, t.Dirs)
	}
	fmt.Fprintln(w)
	if svgName != "" {
		fmt.Fprintf(w, "![time relative to kernel overlayfs](%s)\n\n", svgName)
	}
	fmt.Fprintf(w, "Backends: ")
	var bs []string
	for _, b := range r.Backends {
		d := b.Name
		if b.Off != "" {
			d += " (" + b.Off + " off)"
		}
		if b.On != "" {
			d += " (" + b.On + " on)"
		}
		bs = append(bs, d)
	}
	fmt.Fprintf(w, "%s. Cells show the median time and, below it, the ratio to kernel overlayfs (lower is better).\n\n", strings.Join(bs, ", "))
	fmt.Fprintf(w, "Workloads:\n\n")
	for _, wl := range r.Workloads {
		fmt.Fprintf(w, "- **%s**: %s\n", wl.Name, wl.Desc)
	}
	fmt.Fprintln(w)
	for _, m := range r.Modes {
		fmt.Fprintf(w, "## %s\n\n| workload |", m)
		for _, b := range r.Backends {
			fmt.Fprintf(w, " %s |", b.Name)
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(r.Backends)))
		for _, wl := range r.Workloads {
			kernel := r.Cell(wl.Name, "kernel", m)
			fmt.Fprintf(w, "| %s |", wl.Name)
			for _, b := range r.Backends {
				c := r.Cell(wl.Name, b.Name, m)
				switch {
				case c == nil:
					fmt.Fprintf(w, " |")
				case c.NotRun != "":
					fmt.Fprintf(w, " not run |")
				case c.Error != "":
					fmt.Fprintf(w, " FAILED |")
				case c.Ran():
					fmt.Fprintf(w, " %s<br>%s [%s..%s] |", fmtSecs(c.Median), fmtRatio(ratio(c, kernel)), fmtSecs(c.Min), fmtSecs(c.Max))
				default:
					fmt.Fprintf(w, " - |")
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
		if ref := refSeconds(r.Cell("copyup-big", "native", m)); ref > 0 {
			fmt.Fprintf(w, "copy-up reference, `cp --reflink=auto` of the big file onto the upper's filesystem plus syncfs: %s (median).\n\n", fmtSecs(ref))
		}
	}
	r.writeRequests(w)
	r.writeMemory(w)
	r.writeProblems(w)
	fmt.Fprintf(w, "## Mount options\n\n")
	seen := map[string]bool{}
	for _, c := range r.Cells {
		k := c.Mode + "/" + c.Backend
		if c.MountOptions == "" || seen[k] {
			continue
		}
		seen[k] = true
		fmt.Fprintf(w, "- %s %s: `%s`\n", c.Mode, c.Backend, c.MountOptions)
	}
	fmt.Fprintln(w)
}

func (r *Report) writeMemory(w io.Writer) {
	var rows []string
	for _, m := range r.Modes {
		for _, b := range r.Backends {
			var peak int64
			var worst string
			for _, wl := range r.Workloads {
				if c := r.Cell(wl.Name, b.Name, m); c != nil && c.PeakRSSKiB > peak {
					peak, worst = c.PeakRSSKiB, wl.Name
				}
			}
			if peak > 0 {
				rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s |", m, b.Name, fmtRSS(peak), worst))
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "## Peak memory of the FUSE server (VmHWM)\n\n| mode | backend | peak | in workload |\n|---|---|---:|---|\n%s\n\n", strings.Join(rows, "\n"))
	var samples []string
	for _, c := range r.Cells {
		if c.Workload != "walk-1m" || len(c.Extra) == 0 {
			continue
		}
		keys := make([]string, 0, len(c.Extra))
		for k := range c.Extra {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return pctKey(keys[i]) < pctKey(keys[j]) })
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %s", strings.TrimPrefix(k, "rss_kib_at_"), fmtRSS(int64(c.Extra[k]))))
		}
		samples = append(samples, fmt.Sprintf("- %s %s: %s", c.Mode, c.Backend, strings.Join(parts, ", ")))
	}
	if len(samples) > 0 {
		fmt.Fprintf(w, "Resident memory during the 1M-file walk, by share of the walk done:\n\n%s\n\n", strings.Join(samples, "\n"))
	}
}

func pctKey(k string) int {
	var n int
	fmt.Sscanf(strings.TrimPrefix(k, "rss_kib_at_"), "%d", &n)
	return n
}

func (r *Report) writeProblems(w io.Writer) {
	var lines []string
	seen := map[string]bool{}
	for _, c := range r.Cells {
		why, kind := c.NotRun, "not run"
		if c.Error != "" {
			why, kind = c.Error, "failed"
		}
		if why == "" {
			continue
		}
		// One line per backend and reason, not per workload.
		k := c.Mode + c.Backend + why
		if seen[k] {
			continue
		}
		seen[k] = true
		lines = append(lines, fmt.Sprintf("- %s %s (%s, first in %s): %s", c.Mode, c.Backend, kind, c.Workload,
			strings.ReplaceAll(shorten(why, 300), "|", "\\|")))
	}
	for _, c := range r.Cells {
		for _, wr := range c.Warnings {
			lines = append(lines, fmt.Sprintf("- %s %s %s (measured; teardown problem): %s", c.Mode, c.Backend, c.Workload,
				strings.ReplaceAll(shorten(wr, 300), "|", "\\|")))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "## Not run, failed, or with warnings\n\n%s\n\n", strings.Join(lines, "\n"))
	}
}

// WriteDir writes report.json, report.md and chart.svg into dir.
func (r *Report) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output dir %s: %w", dir, err)
	}
	write := func(name string, fn func(io.Writer) error) error {
		p := filepath.Join(dir, name)
		f, err := os.Create(p + ".tmp")
		if err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		err = fn(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(p + ".tmp")
			return fmt.Errorf("write %s: %w", p, err)
		}
		return os.Rename(p+".tmp", p)
	}
	if err := write("report.json", r.WriteJSON); err != nil {
		return err
	}
	if err := write("chart.svg", func(w io.Writer) error { return r.WriteSVG(w) }); err != nil {
		return err
	}
	return write("report.md", func(w io.Writer) error { r.WriteMarkdown(w, "chart.svg"); return nil })
}

// writeRequests lists, for each cell whose server counted them, the FUSE
// requests its timed part cost (medians over runs): what each speed lever
// is meant to remove shows here before it shows in the seconds.
func (r *Report) writeRequests(w io.Writer) {
	var rows []string
	for _, wl := range r.Workloads {
		for _, m := range r.Modes {
			for _, b := range r.Backends {
				c := r.Cell(wl.Name, b.Name, m)
				if c == nil || c.Requests == nil {
					continue
				}
				var total float64
				for _, v := range c.Requests {
					total += v
				}
				rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", wl.Name, m, b.Name,
					fmtSecs(c.Median), fmtCount(total), fmtRequests(c.Requests, 0)))
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "## FUSE requests\n\nCounted by the server over the timed part of each run (medians per opcode).\n\n")
	fmt.Fprintf(w, "| workload | mode | backend | median | requests | by opcode |\n|---|---|---|---:|---:|---|\n")
	for _, row := range rows {
		fmt.Fprintln(w, row)
	}
	fmt.Fprintln(w)
}
