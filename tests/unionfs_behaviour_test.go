package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-run/strata/tests/difftest"
	"github.com/strata-run/strata/tests/harness"
	"github.com/strata-run/strata/unionfs/mounts"
	"golang.org/x/sys/unix"
)

// behaviourStack makes a one-lower stack under a scratch dir, with files
// made by fill in the lower.
func behaviourStack(t *testing.T, fill func(lower string)) difftest.Stack {
	t.Helper()
	dir := ufScratchDir(t, "strata-behaviour-")
	st := difftest.Stack{Lowers: []string{filepath.Join(dir, "lower")}, Upper: filepath.Join(dir, "upper"),
		Work: filepath.Join(dir, "work"), Mnt: filepath.Join(dir, "mnt")}
	for _, d := range []string{st.Lowers[0], st.Upper, st.Work, st.Mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if fill != nil {
		fill(st.Lowers[0])
	}
	return st
}

// mountOptionsOf is the per-mount option field of mnt in /proc/self/mounts.
func mountOptionsOf(t *testing.T, mnt string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == mnt {
			return strings.Split(f[3], ",")
		}
	}
	t.Fatalf("%s is not mounted", mnt)
	return nil
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// TestUnionfsMountFlags: as root, -o dev,suid are honoured (containers-
// storage asks for them for rootful podman) and a device node in a layer
// opens; without them the mount is nosuid,nodev and the device refuses.
func TestUnionfsMountFlags(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.Binary(t)
	for _, c := range []struct {
		name      string
		extra     []string
		nosuidDev bool
	}{
		{"default", nil, true},
		{"dev,suid", []string{"dev", "suid"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := behaviourStack(t, func(lower string) {
				if err := unix.Mknod(filepath.Join(lower, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
					harness.Skip(t, "mknod of a device node: "+err.Error())
				}
			})
			m, err := (difftest.Strata{Bin: bin, Extra: c.extra}).Mount(st)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Unmount()
			opts := mountOptionsOf(t, st.Mnt)
			if hasOption(opts, "nosuid") != c.nosuidDev || hasOption(opts, "nodev") != c.nosuidDev {
				t.Errorf("mount options %v; want nosuid,nodev: %v", opts, c.nosuidDev)
			}
			f, err := os.OpenFile(filepath.Join(st.Mnt, "null"), os.O_WRONLY, 0)
			if c.nosuidDev {
				if err == nil {
					f.Close()
					t.Error("a device node opened on a nodev mount")
				}
				return
			}
			if err != nil {
				t.Fatalf("open the device node on a dev mount: %v", err)
			}
			f.Close()
		})
	}
}

// TestUnionfsRenameWhiteout: renameat2(RENAME_WHITEOUT) is refused with
// EINVAL, as kernel overlayfs refuses it, and changes nothing.
func TestUnionfsRenameWhiteout(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.Binary(t)
	for _, b := range []difftest.Backend{difftest.Kernel{}, difftest.Strata{Bin: bin}} {
		t.Run(b.Name(), func(t *testing.T) {
			st := behaviourStack(t, func(lower string) {
				os.WriteFile(filepath.Join(lower, "f"), []byte("f\n"), 0o644)
			})
			m, err := b.Mount(st)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Unmount()
			err = unix.Renameat2(unix.AT_FDCWD, filepath.Join(st.Mnt, "f"), unix.AT_FDCWD, filepath.Join(st.Mnt, "g"), unix.RENAME_WHITEOUT)
			if err != unix.EINVAL {
				t.Errorf("renameat2(RENAME_WHITEOUT) = %v, want EINVAL", err)
			}
			if _, err := os.Lstat(filepath.Join(st.Mnt, "f")); err != nil {
				t.Errorf("source after a refused rename: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(st.Mnt, "g")); !os.IsNotExist(err) {
				t.Errorf("target after a refused rename: %v", err)
			}
		})
	}
}

// TestUnionfsUnlinkedOpenFile: a file unlinked while open can still be
// truncated and stat'ed through its fd, as on kernel overlayfs (iperf3 and
// many temp-file users rely on it). (fchmod reaches strata without the
// file handle, so an unlinked file's mode cannot be changed yet.)
func TestUnionfsUnlinkedOpenFile(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.Binary(t)
	for _, b := range []difftest.Backend{difftest.Kernel{}, difftest.Strata{Bin: bin}} {
		t.Run(b.Name(), func(t *testing.T) {
			st := behaviourStack(t, nil)
			m, err := b.Mount(st)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Unmount()
			p := filepath.Join(st.Mnt, "tmp")
			f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("0123456789"); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(4); err != nil {
				t.Errorf("ftruncate of an unlinked open file: %v", err)
			}
			fi, err := f.Stat()
			if err != nil {
				t.Fatalf("fstat of an unlinked open file: %v", err)
			}
			if fi.Size() != 4 {
				t.Errorf("after ftruncate: size %d, want 4", fi.Size())
			}
		})
	}
}

// TestUnionfsMountProgramArgv: containers-storage calls its mount_program
// as `PROGRAM -o OPTS MNT` with no subcommand, and users link strata in as
// fuse-overlayfs; both mount, return once serving, and unmount cleanly.
func TestUnionfsMountProgramArgv(t *testing.T) {
	harness.RequireRoot(t)
	bin := harness.Binary(t)
	alias := filepath.Join(t.TempDir(), "fuse-overlayfs")
	if err := os.Symlink(bin, alias); err != nil {
		t.Fatal(err)
	}
	for _, prog := range []string{bin, alias} {
		t.Run(filepath.Base(prog), func(t *testing.T) {
			st := behaviourStack(t, func(lower string) {
				os.WriteFile(filepath.Join(lower, "f"), []byte("lower\n"), 0o644)
			})
			out, err := exec.Command(prog, "-o", st.OverlayData()+",nodiratime,noatime", st.Mnt).CombinedOutput()
			if err != nil {
				t.Fatalf("%s -o ... %s: %v: %s", prog, st.Mnt, err, out)
			}
			defer mounts.Unmount(st.Mnt, true)
			if b, err := os.ReadFile(filepath.Join(st.Mnt, "f")); err != nil || string(b) != "lower\n" {
				t.Errorf("read through the mount: %q, %v", b, err)
			}
			if err := mounts.Unmount(st.Mnt, false); err != nil {
				t.Errorf("unmount: %v", err)
			}
		})
	}
}
