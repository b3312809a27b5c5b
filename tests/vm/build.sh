#!/usr/bin/env bash
# Builds the cgroup v2 test guest for QEMU (tests/cgroup_test.go).
#
#   build.sh base        Debian 12's own kernel (vmlinuz, fuse.ko) and a
#                        busybox initramfs with newuidmap/newgidmap and their
#                        libraries, cached in $STRATA_VM_CACHE
#                        (default ${XDG_CACHE_HOME:-~/.cache}/strata-vm);
#                        nothing is rebuilt when the cache is complete.
#   build.sh app BIN OUT the per-run initrd: the cached base followed by a
#                        second cpio with BIN as /bin/strata and the guest's
#                        test script (the kernel unpacks both in turn).
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
	if [ -s "$cache/vmlinuz" ] && [ -s "$cache/base.cpio.gz" ] && [ "$(cat "$cache/stamp" 2>/dev/null)" = "$(stamp)" ]; then
		return 0
	fi
	mkdir -p "$cache"
	local work; work=$(mktemp -d)
	trap 'rm -rf "$work"' RETURN
	local kpkg
	kpkg=$(apt-cache depends "$KPKG_META" | awk '/Depends: linux-image-/{print $2; exit}')
	[ -n "$kpkg" ] || { echo "build.sh: cannot resolve $KPKG_META (apt-get update?)" >&2; exit 1; }
	(cd "$work" && apt-get download "$kpkg" >/dev/null 2>&1 || apt-get download "$kpkg")
	dpkg-deb -x "$work"/"$kpkg"_*.deb "$work/k"
	local kver=${kpkg#linux-image-}
	cp "$work/k/boot/vmlinuz-$kver" "$cache/vmlinuz.tmp"

	chmod 755 "$work"
	local r="$work/root"
	mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,lib/modules,home/user,rootfs/bin,rootfs/etc,rootfs/tmp,usr/bin}
	chmod 1777 "$r/tmp" "$r/rootfs/tmp"
	cp /bin/busybox "$r/bin/busybox"
	for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"; done
	cp "$work/k/lib/modules/$kver/kernel/fs/fuse/fuse.ko" "$r/lib/modules/"
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
	# The container image: a busybox root filesystem owned by the guest user.
	cp /bin/busybox "$r/rootfs/bin/busybox"
	for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$r/rootfs/bin/$a"; done
	printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n' > "$r/etc/passwd"
	printf 'root:x:0:\nuser:x:1000:\n' > "$r/etc/group"
	printf 'user:100000:65536\n' > "$r/etc/subuid"
	printf 'user:100000:65536\n' > "$r/etc/subgid"
	cp "$r/etc/passwd" "$r/etc/group" "$r/rootfs/etc/"
	cp "$here/init" "$r/init"
	chmod 755 "$r/init"
	(cd "$r" && find . | cpio -o -H newc -R +0:+0 --quiet | gzip -1 > "$cache/base.cpio.gz.tmp")
	mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
	mv "$cache/base.cpio.gz.tmp" "$cache/base.cpio.gz"
	stamp > "$cache/stamp"
	echo "build.sh: guest for $kver in $cache"
}

# stamp changes when the scripts that shape the base change.
stamp() { cat "$here/build.sh" "$here/init" | sha256sum | cut -d' ' -f1; }

app() {
	local bin=$1 out=$2
	local work; work=$(mktemp -d)
	trap 'rm -rf "$work"' RETURN
	chmod 755 "$work"
	mkdir -p "$work/bin"
	cp "$bin" "$work/bin/strata"
	cp "$here/guest-test.sh" "$work/guest-test.sh"
	chmod 755 "$work/bin/strata" "$work/guest-test.sh"
	{ cat "$cache/base.cpio.gz"; (cd "$work" && find . | cpio -o -H newc -R +0:+0 --quiet | gzip -1); } > "$out"
}

case "${1:-}" in
	base) base ;;
	app) [ $# -eq 3 ] || { echo "usage: build.sh app BIN OUT" >&2; exit 2; }; app "$2" "$3" ;;
	dir) echo "$cache" ;;
	*) echo "usage: build.sh base|app BIN OUT|dir" >&2; exit 2 ;;
esac
