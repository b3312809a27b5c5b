package rootless

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/strata-run/strata/tests/harness"
)

// TestPlanRun reads the plans of a few runs without running anything: the
// command line, working dir, user, capabilities and network namespace it
// decides, and the option that each bad run is refused for.
func TestPlanRun(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		harness.Skip(t, "/dev/fuse (PlanRun checks for it)")
	}
	root, layer := t.TempDir(), t.TempDir()
	base := Options{Root: root, Layers: []string{layer}, Config: ImageConfig{Cmd: []string{"/bin/sh"}, WorkingDir: "/srv", User: "daemon"}}
	with := func(f func(*Options)) Options {
		o := base
		f(&o)
		return o
	}
	good := []struct {
		name  string
		o     Options
		check func(t *testing.T, s Spec)
	}{
		{"image defaults", base, func(t *testing.T, s Spec) {
			if !slices.Equal(s.Args, []string{"/bin/sh"}) || s.WorkingDir != "/srv" || s.User != "daemon" || !s.NetNS {
				t.Errorf("spec %+v", s)
			}
		}},
		{"command, workdir and user from the command line", with(func(o *Options) {
			o.Args, o.WorkingDir, o.User = []string{"id", "-u"}, "/tmp", "1000:1000"
		}), func(t *testing.T, s Spec) {
			if !slices.Equal(s.Args, []string{"id", "-u"}) || s.WorkingDir != "/tmp" || s.User != "1000:1000" {
				t.Errorf("spec %+v", s)
			}
		}},
		{"host network", with(func(o *Options) { o.Net = "host" }), func(t *testing.T, s Spec) {
			if s.NetNS {
				t.Error("--net host planned a network namespace")
			}
		}},
		{"cap-drop ALL", with(func(o *Options) { o.CapDrop = []string{"ALL"} }), func(t *testing.T, s Spec) {
			if len(s.Caps) != 0 {
				t.Errorf("caps %v", s.Caps)
			}
		}},
		{"tty gets TERM", with(func(o *Options) { o.TTY = true }), func(t *testing.T, s Spec) {
			if !hasEnv(s.Env, "TERM") {
				t.Errorf("env %v", s.Env)
			}
		}},
	}
	for _, g := range good {
		t.Run(g.name, func(t *testing.T) {
			p, err := PlanRun(g.o)
			if err != nil {
				t.Fatal(err)
			}
			g.check(t, p.Spec())
		})
	}
	bad := []struct {
		name, names string
		o           Options
	}{
		{"unknown network", "--net", with(func(o *Options) { o.Net = "frob" })},
		{"relative workdir", "working directory", with(func(o *Options) { o.WorkingDir = "rel" })},
		{"no command", "no command", with(func(o *Options) { o.Config.Cmd = nil })},
		{"missing layer", "/nonexistent", with(func(o *Options) { o.Layers = []string{"/nonexistent"} })},
		{"bad userns", "--userns", with(func(o *Options) { o.UserNS = "auto" })},
		{"bad capability", "FROB", with(func(o *Options) { o.CapAdd = []string{"FROB"} })},
		{"bad volume", "relative:/x", with(func(o *Options) { o.Volumes = []string{"relative:/x"} })},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			_, err := PlanRun(b.o)
			var ee *ExitError
			if err == nil || !errors.As(err, &ee) || ee.Code != 125 {
				t.Fatalf("PlanRun: %v, want an exit-125 error", err)
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(b.names)) {
				t.Errorf("error %q does not name %q", err, b.names)
			}
		})
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("planning wrote into the store: %v", entries)
	}
}
