package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-run/strata/tests/difftest"
	"github.com/strata-run/strata/tests/harness"
)

// TestUnionfsCrossMount checks strata's on-disk format both ways: an upper
// strata wrote (through random operations) shows, mounted by kernel
// overlayfs, the tree strata showed; and an upper the kernel wrote shows
// the same tree through strata. Layouts with and without lower hard links
// run apart, so a hard-link (index) incompatibility does not hide the rest.
// A failure is shrunk to the shortest op list that still shows it.
func TestUnionfsCrossMount(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.Binary(t)
	dir := ufScratchDir(t, "strata-cross-")
	strata := difftest.Strata{Bin: bin}
	kernel := difftest.Kernel{Index: true}
	ids := []int{0, 1000, 1001, 65534}
	for _, hl := range []bool{false, true} {
		for _, way := range []struct {
			name           string
			writer, reader difftest.Backend
		}{
			{"strata-writes-kernel-reads", strata, kernel},
			{"kernel-writes-strata-reads", kernel, strata},
		} {
			name := way.name + map[bool]string{false: "/no-hardlinks", true: "/hardlinks"}[hl]
			t.Run(name, func(t *testing.T) {
				cm := ufCrossMounter{dir: dir, layout: difftest.Layout{HardLinks: hl}, writer: way.writer, reader: way.reader}
				for seed := int64(1); seed <= 3; seed++ {
					// The writer's state drives generation; the list is then fixed.
					ops, msg := cm.run(nil, seed, ids, 300)
					if msg == "" {
						continue
					}
					kind := difftest.FailureKind(msg)
					short, why, note := difftest.ShrinkOps(ops, 30*time.Second, func(o []difftest.Op) string {
						if _, m := cm.run(o, 0, nil, 0); difftest.FailureKind(m) == kind {
							return m
						}
						return ""
					})
					if why == "" {
						t.Errorf("seed %d: %s\n(%s; the %d ops are in the log)", seed, msg, note, len(ops))
						t.Logf("seed %d ops:\n%s", seed, difftest.FormatOps(ops))
					} else {
						t.Errorf("seed %d: %s\nshortest reproduction (%d ops, %s):\n%swhich shows: %s",
							seed, ufFirstLineOf(msg), len(short), note, difftest.FormatOps(short), why)
					}
					return // one shrunk failure per direction is enough to act on
				}
			})
		}
	}
}

func ufFirstLineOf(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

type ufCrossMounter struct {
	dir            string
	layout         difftest.Layout
	writer, reader difftest.Backend
	n              atomic.Int64
}

// run applies ops (or, when ops is nil, n ops generated from seed) through
// the writer, snapshots its merged view, unmounts, mounts the same dirs
// with the reader and compares. It returns the ops and the difference.
func (c *ufCrossMounter) run(ops []difftest.Op, seed int64, ids []int, n int) ([]difftest.Op, string) {
	sub := filepath.Join(c.dir, fmt.Sprintf("x%d", c.n.Add(1)))
	defer os.RemoveAll(sub)
	st, err := difftest.NewStack(sub, c.layout)
	if err != nil {
		return ops, err.Error()
	}
	m, err := c.writer.Mount(st)
	if err != nil {
		return ops, err.Error()
	}
	if ops == nil {
		gen := difftest.NewGenerator(seed, ids)
		for i := 0; i < n; i++ {
			op := gen.Next(st.Mnt)
			difftest.Apply(st.Mnt, op)
			ops = append(ops, op)
		}
	} else {
		for _, op := range ops {
			difftest.Apply(st.Mnt, op)
		}
	}
	want, err := difftest.Snapshot(st.Mnt, difftest.SnapshotOptions{})
	if uerr := m.Unmount(); uerr != nil && err == nil {
		err = uerr
	}
	if err != nil {
		return ops, c.writer.Name() + ": " + err.Error()
	}
	m, err = c.reader.Mount(st)
	if err != nil {
		return ops, fmt.Sprintf("%s cannot mount the upper %s wrote: %v", c.reader.Name(), c.writer.Name(), err)
	}
	got, err := difftest.Snapshot(st.Mnt, difftest.SnapshotOptions{})
	if uerr := m.Unmount(); uerr != nil && err == nil {
		err = uerr
	}
	if err != nil {
		return ops, c.reader.Name() + ": " + err.Error()
	}
	want.ClearDino()
	got.ClearDino()
	if d := difftest.DiffNamed(want, got, c.writer.Name(), c.reader.Name(), 15); len(d) > 0 {
		return ops, fmt.Sprintf("%s shows the upper %s wrote differently:\n    %s",
			c.reader.Name(), c.writer.Name(), strings.Join(d, "\n    "))
	}
	return ops, ""
}
