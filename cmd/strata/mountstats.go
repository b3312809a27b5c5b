package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/strata-run/strata/unionfs"
)

// requestStatsEnv names a file that a foreground `strata mount` writes its
// FUSE request counts to, on every SIGUSR1: {"seq":N,"requests":{"LOOKUP":
// ...}}, cumulative since mount, N counting the signals. `strata bench`
// uses it to charge each workload the requests it cost; the file is
// replaced atomically, so a reader never sees half of it.
const requestStatsEnv = "STRATA_REQUEST_STATS"

// serveRequestStats starts answering SIGUSR1 if requestStatsEnv is set.
func serveRequestStats(srv *unionfs.Server) {
	path := os.Getenv(requestStatsEnv)
	if path == "" {
		return
	}
	os.Unsetenv(requestStatsEnv)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		seq := 0
		for range sig {
			seq++
			data, _ := json.Marshal(struct {
				Seq      int               `json:"seq"`
				Requests map[string]uint64 `json:"requests"`
			}{seq, srv.Requests()})
			tmp := path + ".tmp"
			if err := os.WriteFile(tmp, data, 0o644); err != nil {
				slog.Warn("request stats", "err", err)
				continue
			}
			if err := os.Rename(tmp, path); err != nil {
				slog.Warn("request stats", "err", err)
			}
		}
	}()
}
