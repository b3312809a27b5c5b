#!/usr/bin/env bash
# Installs what strata's tests and benchmarks need on a Debian 12 machine.
#   setup.sh packages   apt packages (idempotent, quiet when already there)
#   setup.sh user       the unprivileged test user with subordinate id ranges
#   setup.sh vm         what tests/vm/build.sh needs to build and boot the
#                       cgroup v2 test guests (QEMU, cpio, debootstrap)
set -euo pipefail

PACKAGES=(fuse3 uidmap fuse-overlayfs busybox-static slirp4netns passt debootstrap
          skopeo attr acl iproute2 procps util-linux iperf3
          gcc)  # gcc: the build workload of strata bench
TEST_USER=${STRATA_TEST_USER:-stratatest}

need_root() { [ "$(id -u)" = 0 ] || { echo "setup.sh: $1 needs root" >&2; exit 1; }; }

packages() {
	local missing=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	need_root "installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

user() {
	need_root "creating user $TEST_USER"
	if ! id "$TEST_USER" >/dev/null 2>&1; then
		useradd --create-home --shell /bin/bash "$TEST_USER"
	fi
	# A subordinate range of 65536 ids, well clear of real users.
	for f in /etc/subuid /etc/subgid; do
		touch "$f"
		grep -q "^$TEST_USER:" "$f" || echo "$TEST_USER:300000:65536" >> "$f"
	done
	# The user's runtime dir, as logind would give it.
	local uid; uid=$(id -u "$TEST_USER")
	install -d -m 0700 -o "$TEST_USER" -g "$TEST_USER" "/run/user/$uid"
	chmod 0666 /dev/fuse
	# User-mode networking (pasta, slirp4netns, the built-in stack) makes a
	# tap device inside the container's namespace: Debian ships tun 0666.
	[ -c /dev/net/tun ] && chmod 0666 /dev/net/tun
	# A second user with no subordinate ids: strata must map only its own
	# id and warn (tests/run_test.go).
	local nosub=${STRATA_TEST_USER_NOSUB:-stratanosub}
	if ! id "$nosub" >/dev/null 2>&1; then
		useradd --create-home --shell /bin/bash --no-user-group --gid users "$nosub" 2>/dev/null ||
			useradd --create-home --shell /bin/bash "$nosub"
	fi
	sed -i "/^$nosub:/d" /etc/subuid /etc/subgid
	local nuid; nuid=$(id -u "$nosub")
	install -d -m 0700 -o "$nosub" -g "$(id -g "$nosub")" "/run/user/$nuid"
}

vm() {
	local missing=()
	for p in qemu-system-x86 cpio busybox-static uidmap debootstrap; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	need_root "installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

case "${1:-}" in
	packages) packages ;;
	user) user ;;
	vm) vm ;;
	*) echo "usage: setup.sh packages|user|vm" >&2; exit 2 ;;
esac
