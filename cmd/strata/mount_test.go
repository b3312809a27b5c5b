package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/strata-run/strata/unionfs"
)

// mountRequestFor runs `strata mount ARGS` up to the point where it would
// mount, and returns what it would have mounted.
func mountRequestFor(t *testing.T, args ...string) (mountRequest, error) {
	t.Helper()
	var got *mountRequest
	cmd := newMountCmd(func(_ *cobra.Command, r mountRequest) error { got = &r; return nil })
	cmd.SetArgs(args)
	cmd.SetOut(&strings.Builder{})
	cmd.SetErr(&strings.Builder{})
	if err := cmd.Execute(); err != nil {
		if got != nil {
			t.Errorf("mount was called despite %v", err)
		}
		return mountRequest{}, err
	}
	if got == nil {
		t.Fatalf("strata mount %q: mount was not called", args)
	}
	return *got, nil
}

func TestMountFlags(t *testing.T) {
	slow := unionfs.DefaultSpeed
	slow.Passthrough, slow.LowerTimeout = false, 0
	for _, c := range []struct {
		name       string
		args       []string
		lowers     []string
		upper      string
		work       string
		foreground bool
		speed      unionfs.Speed
	}{
		{"fuse-overlayfs argv", []string{"-o", "lowerdir=/l1:/l2,upperdir=/u,workdir=/w", "/mnt"},
			[]string{"/l1", "/l2"}, "/u", "/w", false, unionfs.DefaultSpeed},
		{"long flags, lowers split on colons and kept in order", []string{"--lower", "/l1", "--lower", "/l2:/l3", "--upper", "/u", "--work", "/w", "-f", "/mnt"},
			[]string{"/l1", "/l2", "/l3"}, "/u", "/w", true, unionfs.DefaultSpeed},
		{"flags override -o", []string{"-o", "lowerdir=/l,upperdir=/u1,workdir=/w1", "--upper", "/u2", "--work", "/w2", "/mnt"},
			[]string{"/l"}, "/u2", "/w2", false, unionfs.DefaultSpeed},
		{"read-only drops upper and work", []string{"-o", "lowerdir=/l,upperdir=/u,workdir=/w", "--read-only", "/mnt"},
			[]string{"/l"}, "", "", false, unionfs.DefaultSpeed},
		{"repeated -o and speed switches", []string{"-o", "lowerdir=/l", "-o", "nopassthrough,lowertimeout=0", "--foreground", "/mnt"},
			[]string{"/l"}, "", "", true, slow},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := mountRequestFor(t, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			u := r.union
			if r.mountpoint != "/mnt" || r.foreground != c.foreground || !reflect.DeepEqual(u.Lowers, c.lowers) ||
				u.Upper != c.upper || u.Work != c.work || u.Speed != c.speed {
				t.Errorf("strata mount %q:\n got mnt %s fg %v lowers %q upper %q work %q speed %+v\nwant mnt /mnt fg %v lowers %q upper %q work %q speed %+v",
					c.args, r.mountpoint, r.foreground, u.Lowers, u.Upper, u.Work, u.Speed,
					c.foreground, c.lowers, c.upper, c.work, c.speed)
			}
			if u.DirectMount != (os.Geteuid() == 0) || u.Logger == nil {
				t.Errorf("DirectMount %v (euid %d), Logger %v: want mount(2) exactly as root, and a logger", u.DirectMount, os.Geteuid(), u.Logger)
			}
		})
	}
}

func TestMountFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args  []string
		names string
	}{
		{[]string{"-o", "lowerdir=/l,frobnicate=1", "/mnt"}, "frobnicate"},
		{[]string{"-o", "lowerdir=/l,lowertimeout=soon", "/mnt"}, "lowertimeout"},
		{[]string{"-o", "lowerdir=/l"}, "accepts 1 arg"},
	} {
		if _, err := mountRequestFor(t, c.args...); err == nil || !strings.Contains(err.Error(), c.names) {
			t.Errorf("strata mount %q: err %v, want one naming %q", c.args, err, c.names)
		}
	}
}

// TestMountProgramArgs: containers-storage's mount_program argv and the
// fuse-overlayfs name both become `strata mount`; strata's own argv stays.
func TestMountProgramArgs(t *testing.T) {
	cases := []struct {
		argv []string
		want string
	}{
		{[]string{"/usr/bin/strata", "-o", "lowerdir=/l,upperdir=/u,workdir=/w", "/mnt"}, "mount -o lowerdir=/l,upperdir=/u,workdir=/w /mnt"},
		{[]string{"strata", "-olowerdir=/l", "/mnt"}, "mount -olowerdir=/l /mnt"},
		{[]string{"/usr/local/bin/fuse-overlayfs", "-o", "lowerdir=/l", "/mnt"}, "mount -o lowerdir=/l /mnt"},
		{[]string{"fuse-overlayfs", "-f", "-o", "lowerdir=/l", "/mnt"}, "mount -f -o lowerdir=/l /mnt"},
		{[]string{"fuse-overlayfs", "--version"}, "version"},
		{[]string{"strata", "mount", "-o", "lowerdir=/l", "/mnt"}, "mount -o lowerdir=/l /mnt"},
		{[]string{"strata", "run", "-o"}, "run -o"},
		{[]string{"strata"}, ""},
	}
	for _, c := range cases {
		if got := strings.Join(mountProgramArgs(c.argv), " "); got != c.want {
			t.Errorf("mountProgramArgs(%q) = %q, want %q", c.argv, got, c.want)
		}
	}
}
