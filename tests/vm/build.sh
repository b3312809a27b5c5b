#!/usr/bin/env bash
# Builds the cgroup v2 test guest for QEMU (tests/cgroup_test.go).
#
#   build.sh base        Debian 12's own kernel (vmlinuz, fuse.ko) and a
#                        busybox initramfs with newuidmap/newgidmap and their
#                        libraries, cached in $STRATA_VM_CACHE
#                        (default ${XDG_CACHE_HOME:-~/.cache}/strata-vm);
#                        nothing is rebuilt when the cache is complete.
#   build.sh systemd     a second guest, for the systemd way: a Debian 12
#                        minbase root (debootstrap) with systemd, dbus, a
#                        lingering user whose user@.service delegates every
#                        controller, booted from the same kernel; cached
#                        too (systemd.cpio.gz).
#   build.sh app BIN OUT [systemd]
#                        the per-run initrd: the cached base (or systemd
#                        root) followed by a second cpio with BIN as
#                        /usr/bin/strata and the guest's test script (the
#                        kernel unpacks both in turn).
#
# Nothing here is installed on the host beyond qemu-system-x86 and cpio
# (tests/setup.sh vm); the kernel package is unpacked, not installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${STRATA_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-vm}
# The kernel flavour the guest uses; apt resolves the current ABI.
KPKG_META=linux-image-amd64

base() {
	"$here/../setup.sh" vm
	if [ -s "$cache/vmlinuz" ] && [ -s "$cache/base.cpio.gz" ] && [ -s "$cache/fuse.ko" ] && [ "$(cat "$cache/stamp" 2>/dev/null)" = "$(stamp)" ]; then
		return 0
	fi
	mkdir -p "$cache"
	local work; work=$(mktemp -d)
	trap 'rm -rf "$work"' RETURN
	local kpkg
	kpkg=$(apt-cache depends "$KPKG_META" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
	if [ -z "$kpkg" ]; then
		apt-get update -q >/dev/null
		kpkg=$(apt-cache depends "$KPKG_META" | awk '/Depends: linux-image-/{print $2; exit}')
	fi
	[ -n "$kpkg" ] || { echo "build.sh: cannot resolve $KPKG_META (apt-get update?)" >&2; exit 1; }
	(cd "$work" && apt-get download "$kpkg" >/dev/null 2>&1 || apt-get download "$kpkg")
	dpkg-deb -x "$work"/"$kpkg"_*.deb "$work/k"
	local kver=${kpkg#linux-image-}
	cp "$work/k/boot/vmlinuz-$kver" "$cache/vmlinuz.tmp"

	chmod 755 "$work"
	local r="$work/root"
	mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,lib/modules,home/user,usr/bin}
	chmod 1777 "$r/tmp"
	cp /bin/busybox "$r/bin/busybox"
	for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"; done
	cp "$work/k/lib/modules/$kver/kernel/fs/fuse/fuse.ko" "$r/lib/modules/"
	cp "$work/k/lib/modules/$kver/kernel/fs/fuse/fuse.ko" "$cache/fuse.ko"
	echo "$kver" > "$cache/kver"
	# The uidmap tools are dynamically linked: copy them with their libraries
	# and keep them setuid root, so the guest user gets its full subuid range
	# the way a real host gives it.
	for tool in newuidmap newgidmap; do
		cp -a "/usr/bin/$tool" "$r/usr/bin/$tool"
		chmod 4755 "$r/usr/bin/$tool"
		for lib in $(ldd "/usr/bin/$tool" | grep -o '/[^ ]*'); do
			mkdir -p "$r$(dirname "$lib")"
			cp -L "$lib" "$r$lib"
		done
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n' > "$r/etc/passwd"
	printf 'root:x:0:\nuser:x:1000:\n' > "$r/etc/group"
	printf 'user:100000:65536\n' > "$r/etc/subuid"
	printf 'user:100000:65536\n' > "$r/etc/subgid"
	container_rootfs "$r"
	cp "$here/init" "$r/init"
	chmod 755 "$r/init"
	(cd "$r" && find . | cpio -o -H newc -R +0:+0 --quiet | gzip -1 > "$cache/base.cpio.gz.tmp")
	mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
	mv "$cache/base.cpio.gz.tmp" "$cache/base.cpio.gz"
	stamp > "$cache/stamp"
	echo "build.sh: guest for $kver in $cache"
}

# container_rootfs puts the container image at R/rootfs: a busybox root
# filesystem (the guest's init gives it to the test user).
container_rootfs() {
	local r=$1
	mkdir -p "$r/rootfs/bin" "$r/rootfs/etc" "$r/rootfs/tmp"
	chmod 1777 "$r/rootfs/tmp"
	cp /bin/busybox "$r/rootfs/bin/busybox"
	for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$r/rootfs/bin/$a"; done
	printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n' > "$r/rootfs/etc/passwd"
	printf 'root:x:0:\nuser:x:1000:\n' > "$r/rootfs/etc/group"
}

# stamp changes when the scripts that shape the base change.
stamp() { cat "$here/build.sh" "$here/init" | sha256sum | cut -d' ' -f1; }
sdstamp() { cat "$here/build.sh" "$here/init-systemd" "$here/systemd-test-run" | sha256sum | cut -d' ' -f1; }

systemd_guest() {
	base
	if [ -s "$cache/systemd.cpio.gz" ] && [ "$(cat "$cache/sdstamp" 2>/dev/null)" = "$(sdstamp)" ]; then
		return 0
	fi
	local work; work=$(mktemp -d)
	trap 'rm -rf "$work"' RETURN
	chmod 755 "$work"
	local r="$work/root"
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,uidmap,busybox-static \
		bookworm "$r" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
		{ tail -20 "$work/debootstrap.log" >&2; exit 1; }
	rm -rf "$r"/usr/share/doc "$r"/usr/share/man "$r"/usr/share/locale "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/*
	chroot "$r" useradd --create-home --uid 1000 --shell /bin/sh user
	printf 'user:100000:65536\n' > "$r/etc/subuid"
	printf 'user:100000:65536\n' > "$r/etc/subgid"
	# The user's systemd instance starts at boot and gets every controller.
	mkdir -p "$r/var/lib/systemd/linger" "$r/etc/systemd/system/user@.service.d"
	touch "$r/var/lib/systemd/linger/user"
	printf '[Service]\nDelegate=cpu cpuset io memory pids\n' > "$r/etc/systemd/system/user@.service.d/delegate.conf"
	cat > "$r/etc/systemd/system/strata-test.service" <<-UNIT
	[Unit]
	Requires=user@1000.service
	After=user@1000.service
	[Service]
	Type=oneshot
	ExecStart=/usr/local/sbin/strata-test-run
	StandardOutput=tty
	StandardError=tty
	TTYPath=/dev/ttyS0
	UNIT
	install -m 755 "$here/systemd-test-run" "$r/usr/local/sbin/strata-test-run"
	ln -sf /etc/systemd/system/strata-test.service "$r/etc/systemd/system/multi-user.target.wants/strata-test.service"
	for u in serial-getty@ttyS0.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
		systemd-timesyncd.service; do
		ln -sf /dev/null "$r/etc/systemd/system/$u"
	done
	echo strata-guest > "$r/etc/hostname"
	: > "$r/etc/fstab"
	local kver; kver=$(cat "$cache/kver")
	cp "$cache/fuse.ko" "$r/fuse.ko"
	install -m 755 "$here/init-systemd" "$r/init"
	container_rootfs "$r"
	chroot "$r" chown -R user:user /rootfs
	(cd "$r" && find . | cpio -o -H newc --quiet | gzip -1 > "$cache/systemd.cpio.gz.tmp")
	mv "$cache/systemd.cpio.gz.tmp" "$cache/systemd.cpio.gz"
	sdstamp > "$cache/sdstamp"
	echo "build.sh: systemd guest for $kver in $cache"
}

app() {
	local bin=$1 out=$2 flavour=${3:-base}
	local work; work=$(mktemp -d)
	trap 'rm -rf "$work"' RETURN
	chmod 755 "$work"
	mkdir -p "$work/usr/bin"
	cp "$bin" "$work/usr/bin/strata"
	cp "$here/guest-test.sh" "$work/guest-test.sh"
	chmod 755 "$work/usr/bin/strata" "$work/guest-test.sh"
	{ cat "$cache/$flavour.cpio.gz"; (cd "$work" && find . -mindepth 1 | cpio -o -H newc -R +0:+0 --quiet | gzip -1); } > "$out"
}

case "${1:-}" in
	base) base ;;
	systemd) systemd_guest ;;
	app) [ $# -ge 3 ] || { echo "usage: build.sh app BIN OUT [systemd]" >&2; exit 2; }; app "$2" "$3" "${4:-base}" ;;
	dir) echo "$cache" ;;
	*) echo "usage: build.sh base|systemd|app BIN OUT [systemd]|dir" >&2; exit 2 ;;
esac
