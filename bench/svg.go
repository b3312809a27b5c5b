package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// palette keeps strata blue, its feature-off variants in lighter and
// other hues, the native dir grey and fuse-overlayfs orange, so the eye
// finds strata and its rival first.
var palette = map[string]string{
	"native":                "#9e9e9e",
	"strata":                "#1f4e9c",
	"strata-nopassthrough":  "#5b8bd9",
	"strata-nokeepcache":    "#7fb3e0",
	"strata-nocachereaddir": "#6ab0a8",
	"strata-nowriteback":    "#9c8fd1",
	"strata-writeback":      "#9c8fd1",
	"strata-nosplice":       "#c59ad6",
	"strata-lowertimeout0":  "#8fc98f",
	"fuse-overlayfs":        "#e8822a",
}

func colorOf(name string) string {
	if c, ok := palette[name]; ok {
		return c
	}
	return "#444444"
}

// WriteSVG draws one panel per mode: for every workload a group of bars,
// one per backend, each the backend's median time over kernel overlayfs's
// on a log axis. Bars grow from the 1x line, up when slower than the
// kernel and down when faster; a cross marks a backend that did not run.
func (r *Report) WriteSVG(w io.Writer) error {
	var bars []BackendSpec
	for _, b := range r.Backends {
		if b.Kind != "kernel" {
			bars = append(bars, b)
		}
	}
	lo, hi := 1.0, 1.0
	for _, c := range r.Cells {
		if x := ratio(c, r.Cell(c.Workload, "kernel", c.Mode)); x > 0 && c.Backend != "kernel" {
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
	}
	ticks := []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}
	lo = math.Max(0.01, niceBelow(lo, ticks))
	hi = math.Min(1000, niceAbove(hi, ticks))
	if lo == hi {
		hi = lo * 2
	}

	const (
		barW, gap, left, right, top = 9.0, 22.0, 78.0, 20.0, 92.0
		panelH, panelGap, bottom    = 300.0, 70.0, 40.0
	)
	groupW := barW*float64(len(bars)) + gap
	width := left + right + groupW*float64(max(1, len(r.Workloads)))
	width = math.Max(width, 760)
	height := top + float64(len(r.Modes))*(panelH+panelGap) + bottom
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`+"\n", width, height, width, height)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	title := "Time relative to kernel overlayfs (median; log scale; below the line is faster)"
	p(`<text x="%.0f" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", left, esc(title))
	sub := fmt.Sprintf("%s · kernel %s · %d runs", treeName(r), strings.Fields(r.Host.Kernel + " ?")[0], r.Runs)
	p(`<text x="%.0f" y="42" fill="#555">%s</text>`+"\n", left, esc(sub))
	// Legend.
	lx, ly := left, 60.0
	for _, bk := range bars {
		label := bk.Name
		if bk.Off != "" {
			label = "strata, " + bk.Off + " off"
		}
		if bk.On != "" {
			label = "strata, " + bk.On + " on"
		}
		wlen := 22 + 6.8*float64(len(label))
		if lx+wlen > width-right {
			lx, ly = left, ly+18
		}
		p(`<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`, lx, ly-10, colorOf(bk.Name))
		p(`<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+16, ly, esc(label))
		lx += wlen + 10
	}
	if lx+130 > width-right {
		lx, ly = left, ly+18
	}
	p(`<text x="%.1f" y="%.1f" fill="#555">× did not run here / failed</text>`+"\n", lx, ly)
	top2 := math.Max(top, ly+30)

	logY := func(x, y0 float64) float64 {
		f := (math.Log10(x) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
		return y0 + panelH - f*panelH
	}
	for mi, mode := range r.Modes {
		y0 := top2 + float64(mi)*(panelH+panelGap)
		p(`<text x="%.1f" y="%.1f" font-size="14" font-weight="bold">%s</text>`+"\n", left, y0-8, esc(mode))
		// Grid and y axis.
		for _, t := range ticks {
			if t < lo || t > hi {
				continue
			}
			y := logY(t, y0)
			stroke, sw := "#e4e4e4", 1.0
			if t == 1 {
				stroke, sw = "#333", 1.5
			}
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"/>`, left, y, width-right, y, stroke, sw)
			p(`<text x="%.1f" y="%.1f" text-anchor="end" fill="#333">%sx</text>`+"\n", left-6, y+4, trimFloat(t))
		}
		p(`<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle" fill="#333">× kernel overlayfs time</text>`+"\n", 20.0, y0+panelH/2)
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", left, y0, left, y0+panelH)
		base := logY(1, y0)
		for wi, wl := range r.Workloads {
			gx := left + gap/2 + float64(wi)*groupW
			kernel := r.Cell(wl.Name, "kernel", mode)
			for bi, bk := range bars {
				x := gx + float64(bi)*barW
				c := r.Cell(wl.Name, bk.Name, mode)
				q := ratio(c, kernel)
				if c == nil || c.ByDesign {
					continue
				}
				if q <= 0 {
					p(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="%s">×</text>`, x+barW/2, base-2, colorOf(bk.Name))
					continue
				}
				q = math.Min(math.Max(q, lo), hi)
				y := logY(q, y0)
				yt, h := math.Min(y, base), math.Abs(base-y)
				p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s %s: %s, %.2fx kernel</title></rect>`,
					x, yt, barW-1, math.Max(h, 1), colorOf(bk.Name), esc(mode), esc(wl.Name), esc(bk.Name), fmtSecs(c.Median), q)
				if bk.Name == "strata" {
					ty := yt - 3
					if y > base {
						ty = yt + h + 10
					}
					p(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9" fill="#1f4e9c">%.1f</text>`, x+barW/2, ty, q)
				}
			}
			p("\n")
			label := wl.Name
			p(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#222">%s</text>`+"\n", gx+groupW/2-gap/2, y0+panelH+16, esc(label))
			if kernel == nil || !kernel.Ran() {
				p(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9" fill="#a00">no kernel result</text>`+"\n", gx+groupW/2-gap/2, y0+panelH+28)
			}
		}
	}
	p(`<text x="%.1f" y="%.1f" fill="#555" font-size="11">Blue number: strata's ratio to kernel overlayfs. Each strata variant changes one speed feature; variants run on the warm read paths and copyup-small.</text>`+"\n", left, height-12)
	p("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func treeName(r *Report) string {
	if r.Tree == nil {
		return "?"
	}
	return fmt.Sprintf("%s (%d files)", r.Tree.Name, r.Tree.Files)
}

func niceBelow(x float64, ticks []float64) float64 {
	out := ticks[0]
	for _, t := range ticks {
		if t <= x {
			out = t
		}
	}
	return out
}

func niceAbove(x float64, ticks []float64) float64 {
	for _, t := range ticks {
		if t >= x {
			return t
		}
	}
	return ticks[len(ticks)-1]
}

func trimFloat(f float64) string {
	s := fmt.Sprintf("%g", f)
	return s
}

func esc(s string) string { return html.EscapeString(s) }
