package rootless

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// runc's default masked paths: hidden behind /dev/null (files) or an empty
// read-only tmpfs (directories).
var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
	"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
}

// runc's default read-only paths.
var readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

// Devices bound from the host: mknod is useless in a user namespace (every
// mount there is implicitly nodev), a bind of the host node is not.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

func mountErr(what, target string, err error) error {
	return fmt.Errorf("mount %s on %s: %w", what, target, err)
}

// mountSpecial sets up /proc, /dev and /sys under rootfs, before
// pivot_root, while the host's device nodes and /sys are still reachable.
func mountSpecial(rootfs string, netns bool) error {
	in := func(p string) string { return filepath.Join(rootfs, p) }
	for _, d := range []string{"proc", "dev", "sys"} {
		// These paths are resolved from outside the container: a symlink
		// planted by an image would aim the mounts elsewhere.
		if fi, err := os.Lstat(in(d)); err == nil && !fi.IsDir() {
			return fmt.Errorf("the image's /%s is not a directory (%s); strata mounts over it", d, fi.Mode().Type())
		}
		if err := os.MkdirAll(in(d), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", in(d), err)
		}
	}
	if err := unix.Mount("proc", in("proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return mountErr("proc", in("proc"), err)
	}
	if err := unix.Mount("tmpfs", in("dev"), "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return mountErr("tmpfs", in("dev"), err)
	}
	for _, d := range devices {
		target := in("dev/" + d)
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			return fmt.Errorf("create %s: %w", target, err)
		}
		f.Close()
		if err := unix.Mount("/dev/"+d, target, "", unix.MS_BIND, ""); err != nil {
			return mountErr("/dev/"+d, target, err)
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		os.MkdirAll(in("dev/"+d), 0o755)
	}
	// gid=5 (tty) only where group 5 is mapped; with a single-id map the
	// kernel refuses it.
	pts := in("dev/pts")
	if err := unix.Mount("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		if err := unix.Mount("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
			return mountErr("devpts", pts, err)
		}
	}
	if err := unix.Mount("shm", in("dev/shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return mountErr("tmpfs", in("dev/shm"), err)
	}
	if err := unix.Mount("mqueue", in("dev/mqueue"), "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return mountErr("mqueue", in("dev/mqueue"), err)
	}
	for link, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "core": "/proc/kcore"} {
		if err := os.Symlink(target, in("dev/"+link)); err != nil {
			return fmt.Errorf("create %s: %w", in("dev/"+link), err)
		}
	}
	return mountSys(in("sys"), netns)
}

// mountSys mounts sysfs read-only. The kernel allows a sysfs mount only to
// the owner of the network namespace, so with --net=host strata binds the
// host's /sys instead, read-only all the way down.
func mountSys(target string, netns bool) error {
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY
	if netns {
		if err := unix.Mount("sysfs", target, "sysfs", flags, ""); err == nil {
			return nil
		}
	}
	if err := unix.Mount("/sys", target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return mountErr("/sys", target, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("make %s read-only: %w", target, err)
	}
	return nil
}

// mountCgroup shows the container its own cgroup at /sys/fs/cgroup,
// read-only: init's cgroup namespace is rooted there, so a cgroup2 mount
// made from inside it has that cgroup as its root.
func mountCgroup(rootfs string) error {
	target := filepath.Join(rootfs, "sys/fs/cgroup")
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY
	err := unix.Mount("cgroup2", target, "cgroup2", flags, "")
	if errors.Is(err, unix.EBUSY) {
		// With --net=host /sys is the host's, bound with its cgroup2
		// mount, which the kernel will not stack the same file system on
		// and the user namespace may not unmount (it is locked): put an
		// empty tmpfs between the two.
		if err = unix.Mount("tmpfs", target, "tmpfs", flags, "size=0"); err == nil {
			err = unix.Mount("cgroup2", target, "cgroup2", flags, "")
		}
	}
	if err != nil {
		return mountErr("cgroup2", target, err)
	}
	return nil
}

// pivotRoot is runc's trick: pivot_root(".", ".") stacks the old root on
// top of the new one at "/", and a lazy unmount of "." drops it, with no
// temporary directory inside the container.
func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /: %w", err)
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", rootfs, err)
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return fmt.Errorf("chdir %s: %w", rootfs, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", rootfs, err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return fmt.Errorf("chdir old root: %w", err)
	}
	// Slave first, so the unmount does not propagate anywhere.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root a slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// openVolumes clones the host side of each -v into a detached mount
// (open_tree) before pivot_root hides the host; after it, move_mount puts
// the clone in place, and the container side is resolved inside the
// container, so an image's symlinks cannot aim a mount at the host.
func openVolumes(mounts []BindMount) ([]int, error) {
	var fds []int
	for _, m := range mounts {
		fd, err := unix.OpenTree(unix.AT_FDCWD, m.Source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return nil, fmt.Errorf("-v %s: clone mount: %w", m.Source, err)
		}
		if m.ReadOnly {
			attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
			if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
				return nil, fmt.Errorf("-v %s:ro: %w", m.Source, err)
			}
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

func bindVolumes(mounts []BindMount, fds []int) error {
	for i, m := range mounts {
		var st unix.Stat_t
		if err := unix.Fstat(fds[i], &st); err != nil {
			return fmt.Errorf("-v %s: %w", m.Source, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := os.MkdirAll(m.Target, 0o755); err != nil {
				return fmt.Errorf("-v %s:%s: create mount point: %w", m.Source, m.Target, err)
			}
		} else {
			os.MkdirAll(filepath.Dir(m.Target), 0o755)
			f, err := os.OpenFile(m.Target, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return fmt.Errorf("-v %s:%s: create mount point: %w", m.Source, m.Target, err)
			}
			f.Close()
		}
		if err := unix.MoveMount(fds[i], "", unix.AT_FDCWD, m.Target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("-v %s:%s: %w", m.Source, m.Target, err)
		}
		unix.Close(fds[i])
	}
	return nil
}

// remountRO makes the mount at path read-only, keeping the flags the
// kernel would refuse to clear in a user namespace (nosuid, nodev, ...).
func remountRO(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for _, f := range []struct{ st, ms uintptr }{
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f.st != 0 {
			flags |= f.ms
		}
	}
	if err := unix.Mount("", path, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", path, err)
	}
	return nil
}

// maskAndProtect applies the masked and read-only paths after pivot_root.
func maskAndProtect() error {
	for _, p := range maskedPaths {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range readonlyPaths {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", p, err)
		}
		if err := remountRO(p); err != nil {
			return err
		}
	}
	return nil
}
