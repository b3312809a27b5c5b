package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"sync"

	"github.com/strata-run/strata/image"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// envMaxLayerSize overrides image.DefaultMaxLayerSize: bytes, or a number
// with a K, M, G or T suffix (powers of 1024).
const envMaxLayerSize = "STRATA_MAX_LAYER_SIZE"

// parseSize reads "1048576", "512M", "64G", "1T".
func parseSize(v string) (int64, error) {
	shift := 0
	if i := len(v) - 1; i > 0 {
		switch v[i] {
		case 'K', 'k':
			shift = 10
		case 'M', 'm':
			shift = 20
		case 'G', 'g':
			shift = 30
		case 'T', 't':
			shift = 40
		}
		if shift != 0 {
			v = v[:i]
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("want a positive size in bytes, or with a K, M, G or T suffix")
	}
	return n << shift, nil
}

// layerBars draws one progress bar per layer on w, unless quiet or w is
// not a terminal. Call wait when the transfer is over.
type layerBars struct {
	p    *mpb.Progress
	mu   sync.Mutex // events come from one goroutine per layer
	bars map[string]*mpb.Bar
}

func newLayerBars(quiet bool, w io.Writer) *layerBars {
	f, ok := w.(*os.File)
	if quiet || !ok || !term.IsTerminal(int(f.Fd())) {
		return &layerBars{}
	}
	if width, _, err := term.GetSize(int(f.Fd())); err != nil || width == 0 {
		return &layerBars{} // a terminal of no width shows no bars
	}
	return &layerBars{p: mpb.New(mpb.WithOutput(f), mpb.WithWidth(40)), bars: map[string]*mpb.Bar{}}
}

// event feeds an image.ProgressEvent to the bars; nil when bars are off.
func (l *layerBars) event() func(image.ProgressEvent) {
	if l.p == nil {
		return nil
	}
	return func(ev image.ProgressEvent) {
		l.mu.Lock()
		defer l.mu.Unlock()
		b := l.bars[ev.Layer]
		if b == nil {
			status := decor.OnComplete(decor.Percentage(), "done")
			if ev.Skipped {
				status = decor.Name("already present")
			}
			b = l.p.AddBar(ev.Total,
				mpb.PrependDecorators(decor.Name(image.ShortID(ev.Layer)+" "), decor.CountersKibiByte("% .1f / % .1f")),
				mpb.AppendDecorators(status))
			l.bars[ev.Layer] = b
		}
		b.SetCurrent(ev.Current)
		if ev.Done {
			b.SetTotal(-1, true)
		}
	}
}

func (l *layerBars) wait() {
	if l.p == nil {
		return
	}
	for _, b := range l.bars {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	l.p.Wait()
}

func printLoaded(w io.Writer, imgs []image.Loaded) {
	for _, img := range imgs {
		names := img.Loaded
		if len(names) == 0 {
			names = []string{"<none>"}
		}
		for _, n := range names {
			fmt.Fprintf(w, "Loaded image %s %s\n", image.ShortID(img.ID), n)
		}
	}
}
