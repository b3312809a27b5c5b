package mounts

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestUnescape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/plain/path", "/plain/path"},
		{`/with\040space`, "/with space"},
		{`/tab\011and\012newline`, "/tab\tand\nnewline"},
		{`/back\134slash`, `/back\slash`},
		{`/two\040\040spaces`, "/two  spaces"},
		{`/trailing\04`, `/trailing\04`},   // too short to be an escape
		{`/not\9octal`, `/not\9octal`},     // 9 is no octal digit
		{`/end\`, `/end\`},                 // a lone backslash stays
		{`/high\377byte`, "/high\377byte"}, // the largest byte
		{`/over\400flow`, `/over\400flow`}, // above a byte: not an escape
	} {
		if got := Unescape(c.in); got != c.want {
			t.Errorf("Unescape(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	table := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
36 22 0:31 / /tmp/dir\040with\040space rw,nosuid,nodev master:7 shared:9 - fuse.strata strata rw,user_id=0,group_id=0
37 22 0:32 / /mnt/over rw - overlay overlay rw,lowerdir=/a:/b,upperdir=/u,workdir=/w
38 22 0:33 /sub /mnt/bind\134x ro - tmpfs my\040tmpfs rw
`
	want := []Info{
		{ID: 22, Parent: 1, Major: 8, Minor: 1, Root: "/", Point: "/", Options: "rw,relatime",
			FSType: "ext4", Source: "/dev/sda1", SuperOptions: "rw,errors=remount-ro"},
		{ID: 36, Parent: 22, Major: 0, Minor: 31, Root: "/", Point: "/tmp/dir with space", Options: "rw,nosuid,nodev",
			FSType: "fuse.strata", Source: "strata", SuperOptions: "rw,user_id=0,group_id=0"},
		{ID: 37, Parent: 22, Major: 0, Minor: 32, Root: "/", Point: "/mnt/over", Options: "rw",
			FSType: "overlay", Source: "overlay", SuperOptions: "rw,lowerdir=/a:/b,upperdir=/u,workdir=/w"},
		{ID: 38, Parent: 22, Major: 0, Minor: 33, Root: "/sub", Point: `/mnt/bind\x`, Options: "ro",
			FSType: "tmpfs", Source: "my tmpfs", SuperOptions: "rw"},
	}
	got, err := Parse(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mounts, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got %+v\nwant %+v", i+1, got[i], want[i])
		}
	}
}

func TestParseBadLines(t *testing.T) {
	for _, c := range []struct{ name, line string }{
		{"no separator", "22 1 8:1 / / rw shared:1 ext4 /dev/sda1 rw"},
		{"nothing after separator", "22 1 8:1 / / rw -"},
		{"bad id", "x 1 8:1 / / rw - ext4 /dev/sda1 rw"},
		{"bad device", "22 1 81 / / rw - ext4 /dev/sda1 rw"},
		{"too short", "22 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			good := "23 1 8:2 / /good rw - ext4 /dev/sda2 rw"
			got, err := Parse(strings.NewReader(c.line + "\n" + good + "\n"))
			if err == nil || !strings.Contains(err.Error(), "line 1") {
				t.Errorf("Parse(%q): err %v, want one naming line 1", c.line, err)
			}
			// The lines after a bad one still count.
			if len(got) != 1 || got[0].Point != "/good" {
				t.Errorf("Parse kept %+v, want only /good", got)
			}
		})
	}
}

func TestIsMountpoint(t *testing.T) {
	if _, err := os.Stat("/proc/self/mountinfo"); err != nil {
		t.Skip("no /proc/self/mountinfo:", err)
	}
	if !IsMountpoint("/") {
		t.Error(`IsMountpoint("/") = false`)
	}
	if IsMountpoint(t.TempDir()) {
		t.Error("IsMountpoint(a fresh temp dir) = true")
	}
}

func TestUnmountNotMounted(t *testing.T) {
	dir := t.TempDir()
	err := Unmount(dir, false)
	if err == nil || !strings.Contains(err.Error(), "not mounted") || !strings.Contains(err.Error(), dir) {
		t.Errorf("Unmount(%s) = %v, want a \"not mounted\" error naming the path", dir, err)
	}
}

func TestUnmountWaitBusyThenDetached(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skip("mount tmpfs:", err)
	}
	f, err := os.Create(filepath.Join(dir, "held"))
	if err != nil {
		unix.Unmount(dir, unix.MNT_DETACH)
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	err = UnmountWait(dir, 100*time.Millisecond)
	if !errors.Is(err, unix.EBUSY) || !errors.Is(err, ErrDetached) || !strings.Contains(err.Error(), dir) {
		t.Errorf("UnmountWait of a busy mount: %v; want EBUSY and ErrDetached, naming %s", err, dir)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("gave up after %v, want at least the patience of 100ms", d)
	}
	if IsMountpoint(dir) {
		t.Errorf("%s still mounted after the detach", dir)
		unix.Unmount(dir, unix.MNT_DETACH)
	}
	if err := UnmountWait(dir, 0); !errors.Is(err, unix.EINVAL) || errors.Is(err, ErrDetached) {
		t.Errorf("UnmountWait of no mount: %v, want EINVAL and no detach", err)
	}
}
