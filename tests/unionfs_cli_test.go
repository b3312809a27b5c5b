package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-run/strata/tests/harness"
	"golang.org/x/sys/unix"
)

// TestUnionfsMountBadInput gives `strata mount` each kind of bad input the
// issue names and requires: a non-zero exit, one error line naming the
// offending option or path, nothing mounted, nothing written into the
// upper or work dir.
func TestUnionfsMountBadInput(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.Binary(t)
	dir := ufScratchDir(t, "strata-cli-")
	p := func(name string) string { return filepath.Join(dir, name) }
	for _, d := range []string{"lower", "lower2", "upper", "work", "mnt", "busy", "tmpfs"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(p("lower/file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("notadir"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p("lower2/up"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Another filesystem for the work dir, and a mountpoint already in use.
	for _, m := range []string{p("tmpfs"), p("busy")} {
		if err := unix.Mount("tmpfs", m, "tmpfs", 0, "size=1m"); err != nil {
			harness.Skip(t, "mounting tmpfs: "+err.Error())
		}
		t.Cleanup(func() { unix.Unmount(m, unix.MNT_DETACH) })
	}
	if err := os.Mkdir(p("tmpfs/work"), 0o755); err != nil {
		t.Fatal(err)
	}

	good := "lowerdir=" + p("lower") + ",upperdir=" + p("upper") + ",workdir=" + p("work")
	cases := []struct {
		name  string
		args  []string
		names string // the error line must contain this
		mnt   string
	}{
		{"missing lowerdir", []string{"-o", "upperdir=" + p("upper") + ",workdir=" + p("work"), p("mnt")}, "lowerdir", p("mnt")},
		{"lowerdir does not exist", []string{"-o", "lowerdir=" + p("nosuch") + ",upperdir=" + p("upper") + ",workdir=" + p("work"), p("mnt")}, p("nosuch"), p("mnt")},
		{"lowerdir not a directory", []string{"-o", "lowerdir=" + p("notadir") + ",upperdir=" + p("upper") + ",workdir=" + p("work"), p("mnt")}, p("notadir"), p("mnt")},
		{"upper inside a lower", []string{"-o", "lowerdir=" + p("lower2") + ",upperdir=" + p("lower2/up") + ",workdir=" + p("work"), p("mnt")}, p("lower2/up"), p("mnt")},
		{"workdir on another filesystem", []string{"-o", "lowerdir=" + p("lower") + ",upperdir=" + p("upper") + ",workdir=" + p("tmpfs/work"), p("mnt")}, p("tmpfs/work"), p("mnt")},
		{"mountpoint missing", []string{"-o", good, p("nomnt")}, p("nomnt"), p("nomnt")},
		{"mountpoint busy", []string{"-o", good, p("busy")}, p("busy"), p("busy")},
		{"unknown option", []string{"-o", good + ",frobnicate=1", p("mnt")}, "frobnicate", p("mnt")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := harness.Mounts()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append([]string{"mount"}, c.args...)...)
			out, err := cmd.CombinedOutput()
			text := strings.TrimSpace(string(out))
			if ctx.Err() != nil {
				t.Fatalf("strata mount %q did not return in 30s; output %q", c.args, text)
			}
			if err == nil {
				t.Errorf("strata mount %q exited 0; output %q", c.args, text)
			}
			if lines := strings.Split(text, "\n"); text == "" || len(lines) != 1 {
				t.Errorf("want one error line, got %d lines: %q", len(lines), text)
			}
			if !strings.Contains(text, c.names) {
				t.Errorf("error %q does not name %q", text, c.names)
			}
			// Only mounts under this test's dir: other tests (and other
			// test processes on the machine) mount elsewhere meanwhile.
			for _, m := range harness.Mounts() {
				if strings.HasPrefix(m, dir+"/") && !ufContains(before, m) {
					t.Errorf("a mount appeared at %s", m)
					exec.Command("umount", "-l", m).Run()
				}
			}
			for _, d := range []string{p("upper"), p("work"), p("lower2/up"), p("tmpfs/work")} {
				if names := ufDirNames(t, d); len(names) > 0 {
					t.Errorf("%s was written to: %q", d, names)
				}
				if x := ufListXattrs(d); x != "" {
					t.Errorf("%s got xattrs: %s", d, x)
				}
			}
			if _, err := os.Stat(p("nomnt")); err == nil {
				t.Errorf("the missing mountpoint %s was created", p("nomnt"))
			}
		})
	}
}

func ufContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func ufDirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func ufListXattrs(p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	return strings.ReplaceAll(strings.TrimRight(string(buf[:n]), "\x00"), "\x00", ",")
}
