package main

import (
	"fmt"
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

// openImageStore opens the image store at --root.
func openImageStore() (*image.Store, error) {
	s, err := image.Open(storeRoot())
	if err != nil {
		return nil, err
	}
	if v := os.Getenv(envMaxLayerSize); v != "" {
		n, err := parseSize(v)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %w", envMaxLayerSize, v, err)
		}
		s.MaxLayerSize = n
	}
	return s, nil
}

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

// layerBars draws one progress bar per layer on stderr, unless quiet or
// stderr is not a terminal. Call wait when the transfer is over.
type layerBars struct {
	p    *mpb.Progress
	mu   sync.Mutex // events come from one goroutine per layer
	bars map[string]*mpb.Bar
}

func newLayerBars(quiet bool) *layerBars {
	fd := int(os.Stderr.Fd())
	if quiet || !term.IsTerminal(fd) {
		return &layerBars{}
	}
	if w, _, err := term.GetSize(fd); err != nil || w == 0 {
		return &layerBars{} // a terminal of no width shows no bars
	}
	return &layerBars{p: mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40)), bars: map[string]*mpb.Bar{}}
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

func printLoaded(imgs []image.Loaded) {
	for _, img := range imgs {
		names := img.Loaded
		if len(names) == 0 {
			names = []string{"<none>"}
		}
		for _, n := range names {
			fmt.Printf("Loaded image %s %s\n", image.ShortID(img.ID), n)
		}
	}
}
