package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// run executes the CLI as main does and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExecuteExitStatus(t *testing.T) {
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stdout string // must contain
		stderr string // must contain
	}{
		{"version prints on stdout", []string{"version"}, 0, "strata dev (go", ""},
		{"unknown command", []string{"frobnicate"}, 1, "", `strata: unknown command "frobnicate"`},
		{"bad log level", []string{"--log-level", "loud", "version"}, 1, "", `--log-level "loud": want debug, info, warn or error`},
		{"missing argument", []string{"umount"}, 1, "", "strata: accepts 1 arg(s), received 0"},
		// strata's own failures in run exit 125, before any container starts.
		{"run: bad --security-opt", []string{"run", "--security-opt", "apparmor=x", "--rootfs", "/", "true"}, 125, "", `--security-opt "apparmor=x"`},
		{"run: no image", []string{"--root", "/nonexistent", "run"}, 125, "", "give an IMAGE"},
		{"help", []string{"--help"}, 0, "Common tasks:", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, c.args...)
			if code != c.code || !strings.Contains(stdout, c.stdout) || !strings.Contains(stderr, c.stderr) {
				t.Errorf("strata %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					c.args, code, stdout, stderr, c.code, c.stdout, c.stderr)
			}
		})
	}
}

// Two CLIs built side by side share no flag state.
func TestRootCmdsIndependent(t *testing.T) {
	a, b := newRootCmd(), newRootCmd()
	if err := a.PersistentFlags().Parse([]string{"--root", "/elsewhere", "--log-level", "debug"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"root", "log-level"} {
		if got, want := b.PersistentFlags().Lookup(name).Value.String(), b.PersistentFlags().Lookup(name).DefValue; got != want {
			t.Errorf("--%s of a second CLI = %q, want its default %q", name, got, want)
		}
	}
}

func TestOnlyContextAwareCommandsKeepSignals(t *testing.T) {
	want := map[string]bool{"pull": true, "bench": true, "mount-image": true, "commit": true}
	for _, c := range newRootCmd().Commands() {
		if got := watchesContext(c); got != want[c.Name()] {
			t.Errorf("%s: watches its context = %v, want %v", c.Name(), got, want[c.Name()])
		}
	}
}

func TestInterrupted(t *testing.T) {
	canceled := func(cause error) context.Context {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(cause)
		return ctx
	}
	sig := errors.New("interrupt signal received")
	for _, c := range []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"not cancelled", context.Background(), context.Canceled, "context canceled"},
		{"cancelled by a signal", canceled(sig), fmt.Errorf("pull x: %w", context.Canceled), "pull x: context canceled (interrupt signal received)"},
		{"signal named already", canceled(sig), fmt.Errorf("get: %w", sig), "get: interrupt signal received"},
		{"another failure", canceled(sig), errors.New("404"), "404"},
	} {
		if got := interrupted(c.ctx, c.err).Error(); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
