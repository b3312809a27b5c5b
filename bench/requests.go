package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// requestCounter is a driver whose server counts the FUSE requests it
// serves; execute charges each run the difference over its timed part.
type requestCounter interface {
	Requests() (map[string]uint64, error)
}

// strataDriver is a strata mount that reports its request counts: on
// SIGUSR1 the server writes them to the file named by
// STRATA_REQUEST_STATS (see cmd/strata/mountstats.go).
type strataDriver struct {
	*fuseDriver
	stats string
	seq   int
}

var _ requestCounter = (*strataDriver)(nil)

func (d *strataDriver) Setup(lowers []string, upper, work, mnt string) (string, error) {
	d.stats = filepath.Join(filepath.Dir(mnt), "requests.json")
	d.fuseDriver.env = []string{"STRATA_REQUEST_STATS=" + d.stats}
	return d.fuseDriver.Setup(lowers, upper, work, mnt)
}

// Requests asks the server for its counts so far and waits for the answer.
func (d *strataDriver) Requests() (map[string]uint64, error) {
	pid := d.PID()
	if pid == 0 {
		return nil, fmt.Errorf("no server")
	}
	d.seq++
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var snap struct {
			Seq      int               `json:"seq"`
			Requests map[string]uint64 `json:"requests"`
		}
		if data, err := os.ReadFile(d.stats); err == nil && json.Unmarshal(data, &snap) == nil && snap.Seq >= d.seq {
			d.seq = snap.Seq
			return snap.Requests, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("strata did not write its request counts to %s within 5s", d.stats)
		}
		time.Sleep(time.Millisecond)
	}
}

// requestDiff is after minus before, leaving out opcodes that did not move.
func requestDiff(before, after map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for op, n := range after {
		if d := n - before[op]; d > 0 {
			out[op] = d
		}
	}
	return out
}

// fmtRequests shows request counts busiest first, e.g.
// "LOOKUP 5.3k, GETATTR 812, READ 40"; limit 0 shows all.
func fmtRequests(reqs map[string]float64, limit int) string {
	if len(reqs) == 0 {
		return "-"
	}
	ops := make([]string, 0, len(reqs))
	for op := range reqs {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool {
		if reqs[ops[i]] != reqs[ops[j]] {
			return reqs[ops[i]] > reqs[ops[j]]
		}
		return ops[i] < ops[j]
	})
	var parts []string
	for i, op := range ops {
		if limit > 0 && i == limit {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, op+" "+fmtCount(reqs[op]))
	}
	return strings.Join(parts, ", ")
}

func fmtCount(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.1fM", x/1e6)
	case x >= 1e4:
		return fmt.Sprintf("%.0fk", x/1e3)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	case x != float64(int64(x)):
		return fmt.Sprintf("%.1f", x) // a median between two runs
	default:
		return fmt.Sprintf("%.0f", x)
	}
}
