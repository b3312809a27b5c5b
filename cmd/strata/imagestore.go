package main

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/strata-run/strata/image"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

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
