package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/strata-run/strata/rootless"
)

// runOptionsFor runs `strata --root STORE run ARGS` up to the point where
// it would start a container, and returns the options it would start it
// with and the command's error; start answers code.
func runOptionsFor(t *testing.T, store string, code int, args ...string) (*rootless.Options, error) {
	t.Helper()
	var got *rootless.Options
	cmd := newRunCmd(&globalOptions{root: store}, func(o rootless.Options) (int, error) {
		got = &o
		return code, nil
	})
	cmd.SetArgs(args)
	cmd.SetOut(&strings.Builder{})
	cmd.SetErr(&strings.Builder{})
	return got, cmd.Execute()
}

func TestRunFlags(t *testing.T) {
	store, rootfs := t.TempDir(), t.TempDir()
	o, err := runOptionsFor(t, store, 0, "--rootfs", rootfs, "--name", "web", "--hostname", "h",
		"--rm", "--read-only", "-i", "-t", "--init", "-e", "A=1", "-e", "B", "--env-file", "/f",
		"-w", "/srv", "-u", "1000:1000", "-v", "/h:/c:ro", "--net", "host", "--userns", "keep-id",
		"--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"-p", "8080:80", "-p", "53/udp", "-P", "-m", "64m", "--cpus", "0.5", "--pids-limit", "10", "--cgroup-parent", "/my",
		"sh", "-c", "echo hi", "--not-a-strata-flag")
	var ee *rootless.ExitError
	if !errors.As(err, &ee) || ee.Code != 0 || ee.Err != nil {
		t.Fatalf("err = %v, want a silent exit 0", err)
	}
	want := rootless.Options{
		Root: store, Image: "rootfs:" + rootfs, Layers: []string{rootfs},
		Args: []string{"sh", "-c", "echo hi", "--not-a-strata-flag"}, // flags after the command are its own
		Name: "web", Hostname: "h", Remove: true, ReadOnly: true, Stdin: true, TTY: true, Init: true,
		Env: []string{"A=1", "B"}, EnvFiles: []string{"/f"}, WorkingDir: "/srv", User: "1000:1000",
		Volumes: []string{"/h:/c:ro"}, Net: "host", UserNS: "keep-id",
		CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"ALL"}, Seccomp: true,
		Publish: []string{"8080:80", "53/udp"}, PublishAll: true,
		Limits:  rootless.Limits{Memory: "64m", CPUs: "0.5", PidsLimit: "10"},
		Cgroups: cgroupConfig("/my"),
	}
	if o.Warn == nil {
		t.Error("no Warn callback")
	}
	o.Warn = nil
	if !reflect.DeepEqual(*o, want) {
		t.Errorf("options:\n got %+v\nwant %+v", *o, want)
	}
}

func TestRunDefaultsAndEntrypoint(t *testing.T) {
	rootfs := t.TempDir()
	for _, c := range []struct {
		name       string
		args       []string
		entrypoint *[]string
		seccomp    bool
	}{
		{"defaults", []string{"--rootfs", rootfs, "true"}, nil, true},
		{"empty entrypoint clears the image's", []string{"--entrypoint", "", "--rootfs", rootfs, "true"}, &[]string{}, true},
		{"entrypoint", []string{"--entrypoint=/bin/env", "--rootfs", rootfs}, &[]string{"/bin/env"}, true},
		{"seccomp off", []string{"--security-opt", "seccomp=unconfined", "--rootfs", rootfs, "true"}, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, _ := runOptionsFor(t, t.TempDir(), 0, c.args...)
			if o == nil {
				t.Fatal("start was not called")
			}
			// An empty --net lets rootless pick the fastest driver installed.
			if !reflect.DeepEqual(o.Entrypoint, c.entrypoint) || o.Seccomp != c.seccomp || o.Net != "" {
				t.Errorf("entrypoint %v seccomp %v net %q; want %v, %v, \"\"", o.Entrypoint, o.Seccomp, o.Net, c.entrypoint, c.seccomp)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	rootfs := t.TempDir()
	notDir := filepath.Join(rootfs, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		code    int // what start answers
		args    []string
		want    int
		message string
	}{
		{"the command's status passes through", 3, []string{"--rootfs", rootfs, "false"}, 3, ""},
		{"a signal's status passes through", 137, []string{"--rootfs", rootfs, "sleep"}, 137, ""},
		{"bad --security-opt", 0, []string{"--security-opt", "label=x", "--rootfs", rootfs, "true"}, 125, `--security-opt "label=x"`},
		{"--rootfs not a directory", 0, []string{"--rootfs", notDir, "true"}, 125, "--rootfs " + notDir + ": not a directory"},
		{"no image", 0, nil, 125, "give an IMAGE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := runOptionsFor(t, t.TempDir(), c.code, c.args...)
			var ee *rootless.ExitError
			if !errors.As(err, &ee) || ee.Code != c.want {
				t.Fatalf("err = %v, want an exit %d", err, c.want)
			}
			if c.message == "" && ee.Err != nil || c.message != "" && (ee.Err == nil || !strings.Contains(ee.Err.Error(), c.message)) {
				t.Errorf("message %v, want %q", ee.Err, c.message)
			}
			if c.want == 125 && o != nil {
				t.Error("start was called despite strata's own failure")
			}
		})
	}
}
