package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-run/strata/tests/difftest"
	"github.com/strata-run/strata/tests/harness"
	"golang.org/x/sys/unix"
)

// modeList is every permission mode and the set-id and sticky bits on
// top of a few, as lower files, lower dirs and files made through the
// union.
func modeList() []uint32 {
	var modes []uint32
	for m := uint32(0); m <= 0o777; m++ {
		modes = append(modes, m)
	}
	return append(modes, 0o4755, 0o2755, 0o6755, 0o1777, 0o4000, 0o2000, 0o2644, 0o7777)
}

// TestUnionfsModes holds strata to kernel overlayfs on every mode: lower
// files and dirs as they are, and entries created through the mount with
// that mode (umask 0). go-fuse shows a mode of 0 as 0644 unless told not
// to, which would let any user read a file its owner made 0000; so also:
// a root-owned 0000 file is unreadable to uid 65534 through strata, as
// through the kernel.
func TestUnionfsModes(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.Binary(t)
	old := unix.Umask(0)
	defer unix.Umask(old)
	backends := []difftest.Backend{difftest.Kernel{}, difftest.Strata{Bin: bin}}
	views := map[string]map[string]uint32{}
	for _, b := range backends {
		dir := ufScratchDir(t, "strata-modes-")
		lower := filepath.Join(dir, "lower")
		st := difftest.Stack{Lowers: []string{lower}, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work"), Mnt: filepath.Join(dir, "mnt")}
		for _, d := range []string{lower, st.Upper, st.Work, st.Mnt} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range modeList() {
			f := filepath.Join(lower, fmt.Sprintf("f%05o", m))
			if err := os.WriteFile(f, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			d := filepath.Join(lower, fmt.Sprintf("d%05o", m))
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			// chmod after create: create modes lose set-id bits.
			if err := os.Chmod(f, os.FileMode(0)); err != nil {
				t.Fatal(err)
			}
			if err := unix.Chmod(f, m); err != nil {
				t.Fatal(err)
			}
			if err := unix.Chmod(d, m); err != nil {
				t.Fatal(err)
			}
		}
		mnt, err := b.Mount(st)
		if err != nil {
			t.Fatalf("%s: %v", b.Name(), err)
		}
		view := map[string]uint32{}
		func() {
			defer mnt.Unmount()
			for _, m := range modeList() {
				name := fmt.Sprintf("n%05o", m)
				fd, err := unix.Open(filepath.Join(st.Mnt, name), unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, m)
				if err != nil {
					t.Fatalf("%s: create %s: %v", b.Name(), name, err)
				}
				unix.Close(fd)
				if err := unix.Mkdir(filepath.Join(st.Mnt, "m"+name[1:]), m); err != nil {
					t.Fatalf("%s: mkdir %s: %v", b.Name(), name, err)
				}
			}
			ents, err := os.ReadDir(st.Mnt)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				var s unix.Stat_t
				if err := unix.Lstat(filepath.Join(st.Mnt, e.Name()), &s); err != nil {
					t.Fatalf("%s: stat %s: %v", b.Name(), e.Name(), err)
				}
				view[e.Name()] = s.Mode
			}
			// Another user must not read a root-owned 0000 file.
			out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
				"cat", filepath.Join(st.Mnt, "f00000")).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "Permission denied") {
				t.Errorf("%s: uid 65534 read a root-owned 0000 file: err %v, output %q", b.Name(), err, out)
			}
		}()
		views[b.Name()] = view
	}
	k, s := views["kernel"], views["strata"]
	if len(k) != len(s) {
		t.Fatalf("kernel shows %d entries, strata %d", len(k), len(s))
	}
	bad := 0
	for name, km := range k {
		if sm, ok := s[name]; !ok || sm != km {
			if bad++; bad <= 20 {
				t.Errorf("%s: kernel mode %07o, strata %07o", name, km, sm)
			}
		}
	}
	if bad > 20 {
		t.Errorf("... %d entries differ in all", bad)
	}
}
