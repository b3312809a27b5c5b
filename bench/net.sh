#!/usr/bin/env bash
# Network throughput of each user-mode driver, with iperf3 (Debian package):
#   c->h  the container connects to an iperf3 server on the host's loopback
#         (host.containers.internal, allow_host_loopback): the driver's stack
#   h->c  the host connects to an iperf3 server in the container through a
#         published port (-p): the port forwarder
#   HTTP  sequential requests, a new connection each, to busybox httpd in the
#         container through -p (python3 on the host drives them)
# and the same with podman where it is installed (podman 4.3 in Debian 12
# has slirp4netns but not pasta; on a host with cgroup v1 controllers crun
# refuses to run, so podman runs with runc and cgroupfs when runc is there).
#   bench/net.sh [STRATA]      (make bench-net)
# Run as root it drops to STRATA_TEST_USER (stratatest), as the tests do.
# Prints a Markdown table; SECS sets the length of each run (default 5).
set -euo pipefail

STRATA=$(readlink -f "${1:-bin/strata}")
SECS=${SECS:-5}
BUSER=${STRATA_TEST_USER:-stratatest}

if [ "$(id -u)" = 0 ] && id "$BUSER" >/dev/null 2>&1; then
	tmp=$(mktemp -d)
	chmod 755 "$tmp"
	cp "$STRATA" "$0" "$tmp/"
	chmod 755 "$tmp"/*
	uid=$(id -u "$BUSER")
	rc=0
	setpriv --reuid="$uid" --regid="$(id -g "$BUSER")" --init-groups -- \
		env -i PATH="$PATH" HOME="$(getent passwd "$BUSER" | cut -d: -f6)" XDG_RUNTIME_DIR="/run/user/$uid" SECS="$SECS" \
		"$tmp/$(basename "$0")" "$tmp/strata" || rc=$?
	rm -rf "$tmp"
	exit $rc
fi

command -v iperf3 >/dev/null || { echo "bench/net.sh: iperf3 missing (apt-get install iperf3)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# A rootfs with busybox and iperf3 with its libraries.
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,etc,tmp}
cp /bin/busybox "$rootfs/bin/"
for a in sh sleep httpd; do ln -s busybox "$rootfs/bin/$a"; done
cp /usr/bin/iperf3 "$rootfs/bin/"
for lib in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
	mkdir -p "$rootfs$(dirname "$lib")"
	cp -L "$lib" "$rootfs$lib"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$rootfs/etc/passwd"
echo "hosts: files dns" > "$rootfs/etc/nsswitch.conf"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# receiver's Mbit/s from iperf3's text summary
mbits() { awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i-1) }' | tail -1; }

# HTTP GETs of /passwd for SECS seconds, one connection each, one at a time.
conn_rate() {
	python3 - "$1" "$SECS" <<'PY'
import http.client, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
n, end = 0, time.time() + secs
while time.time() < end:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/passwd")
    c.getresponse().read()
    c.close()
    n += 1
print(round(n / secs))
PY
}

hport=$(free_port)
iperf3 -s -B 127.0.0.1 -p "$hport" >/dev/null 2>&1 &
pids+=($!)
wait_port "$hport"

# iperf3 keeps its buffer in an unlinked temp file, which the union
# filesystem's /tmp does not support yet (ftruncate after unlink: ENOENT).
run() { "$STRATA" --root "$work/store" run --rm -e TMPDIR=/dev/shm "$@"; }

pimg=localhost/strata-netbench
pod() {
	if command -v runc >/dev/null; then
		podman --runtime runc --cgroup-manager=cgroupfs "$@"
	else
		podman "$@"
	fi
}
# podman_row measures podman with slirp4netns (its default in 4.3, with
# rootlesskit's port driver, as strata's) the way strata was measured.
podman_row() {
	tar -C "$rootfs" -c . | pod import --change 'ENV PATH=/bin' - "$pimg" >/dev/null 2>&1 || { echo "| podman | slirp4netns | import failed | | |"; return; }
	local c2h h2c="" rate p q
	c2h=$(pod run --rm --network slirp4netns:allow_host_loopback=true -e TMPDIR=/dev/shm "$pimg" \
		iperf3 -f m -c 10.0.2.2 -p "$hport" -t "$SECS" 2>/dev/null | mbits || true)
	p=$(free_port) q=$(free_port)
	pod run -d --name strata-netbench --network slirp4netns -p "$p:5201" -p "$q:80" -e TMPDIR=/dev/shm "$pimg" \
		sh -c "busybox httpd -p 80 -h /etc; exec iperf3 -s -p 5201" >/dev/null 2>&1 || true
	for _ in $(seq 30); do
		h2c=$(iperf3 -f m -c 127.0.0.1 -p "$p" -t "$SECS" 2>/dev/null | mbits || true)
		[ -n "$h2c" ] && break
		sleep 0.3
	done
	rate=$(conn_rate "$q" || true)
	pod rm -f -t 1 strata-netbench >/dev/null 2>&1 || true
	pod rmi -f "$pimg" >/dev/null 2>&1 || true
	echo "| podman $(podman --version | awk '{print $3}') | slirp4netns | ${c2h:-fail} | ${h2c:-fail} | ${rate:-fail} |"
}

echo "| runtime | driver | container->host Mbit/s | host->container (-p) Mbit/s | HTTP requests/s (-p, new connection each) |"
echo "| --- | --- | ---: | ---: | ---: |"
for d in pasta slirp4netns builtin; do
	case $d in
	pasta) command -v pasta >/dev/null || continue ;;
	slirp4netns) command -v slirp4netns >/dev/null || continue ;;
	esac
	c2h=$(run --net "$d:allow_host_loopback=true" --rootfs "$rootfs" -- \
		sh -c "iperf3 -f m -c host.containers.internal -p $hport -t $SECS" 2>/dev/null | mbits || true)
	p=$(free_port) q=$(free_port)
	# Not through run(): $! must be strata itself, which SIGTERM then ends.
	"$STRATA" --root "$work/store" run --rm -e TMPDIR=/dev/shm --init --net "$d" -p "$p:5201" -p "$q:80" --rootfs "$rootfs" -- \
		sh -c "busybox httpd -p 80 -h /etc; exec iperf3 -s -p 5201" >/dev/null 2>&1 &
	spid=$!
	h2c="" rate=""
	# The host side listens before the server in the container does: retry
	# until iperf3 gets through.
	for _ in $(seq 30); do
		h2c=$(iperf3 -f m -c 127.0.0.1 -p "$p" -t "$SECS" 2>/dev/null | mbits || true)
		[ -n "$h2c" ] && break
		sleep 0.3
	done
	rate=$(conn_rate "$q" || true)
	kill "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	echo "| strata | $d | ${c2h:-fail} | ${h2c:-fail} | ${rate:-fail} |"
	if [ "$d" = slirp4netns ] && command -v podman >/dev/null; then
		podman_row
	fi
done
