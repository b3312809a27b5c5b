package tests

import (
	"archive/tar"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestNetPublishAll: -P publishes the image's EXPOSE list on free host
// ports, listed in the runtime dir's ports file, and serves them.
func TestNetPublishAll(t *testing.T) {
	e := newNetEnv(t)
	entries := append(busyboxEntries(t),
		tarEntry{name: "bin/httpd", typ: tar.TypeSymlink, mode: 0o777, link: "busybox"},
		directory("www", 0o755), regular("www/index.html", "exposed\n", 0o644))
	img := buildImage(t, [][]tarEntry{entries}, "amd64")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.ExposedPorts = map[string]struct{}{"80/tcp": {}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.dir, "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "chown", "-R", strconv.Itoa(e.user.UID), dir)
	e.ok("load", "-q", "-i", dir)

	s := e.startServer("run", "--rm", "--init", "--net", "builtin", "-P", "localhost/layout:v1", "httpd", "-f", "-p", "80", "-h", "/www")
	run := filepath.Join("/run/user", strconv.Itoa(e.user.UID), "strata")
	var line string
	for i := 0; i < 200 && line == ""; i++ {
		files, _ := filepath.Glob(filepath.Join(run, "*", "ports"))
		for _, f := range files {
			if data, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(data), "80/tcp -> ") {
				line = strings.TrimSpace(string(data))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, hostPort, ok := strings.Cut(line, "-> 0.0.0.0:")
	if !ok {
		t.Fatalf("no ports file with 80/tcp under %s: %q; stderr: %s", run, line, s.stderr.String())
	}
	if got := httpGet(t, s, fmt.Sprintf("http://127.0.0.1:%s/", hostPort)); got != "exposed\n" {
		t.Errorf("-P port %s: %q", hostPort, got)
	}
}
