#!/bin/sh
# The cgroup v2 checks, run inside a test guest as the unprivileged uid
# 1000: in the busybox guest (tests/vm/init) from a cgroup root delegated
# to it (MODE cgroupfs), in the systemd guest through its systemd user
# instance (MODE systemd). One line per check on the console, which
# tests/cgroup_test.go reads:
#   CGTEST ok NAME [detail]  |  CGTEST FAIL NAME: why
mode=${1:-cgroupfs}
# --net=none: the guest has no /dev/net/tun, and no check needs a network.
S="strata --root /home/user/store"
cd /home/user

ok() { echo "CGTEST ok $*"; }
fail() { echo "CGTEST FAIL $1: $2"; }
now() { cut -d' ' -f1 /proc/uptime; }
# Container cgroups (and systemd scopes) left anywhere.
leftover() { find /sys/fs/cgroup -type d -name 'strata-[0-9a-f]*' 2>/dev/null; }
# systemd collects an empty scope a moment after strata exits.
check_gone() {
	i=0
	while [ $i -lt 25 ] && [ -n "$(leftover)" ]; do sleep 0.2; i=$((i+1)); done
	l=$(leftover)
	if [ -z "$l" ]; then ok "$1"; else fail "$1" "left behind: $l"; fi
}

t0=$(now)
strata doctor >/tmp/doctor 2>&1
if grep -q "available, through $mode" /tmp/doctor; then ok "doctor-$mode"; else fail "doctor-$mode" "$(tr '\n' ' ' </tmp/doctor)"; fi

# The container's view: its own cgroup, read-only, rooted at "/".
out=$($S run --net=none --rm --pids-limit 100 --memory 100m --rootfs /rootfs sh -c \
	'cat /proc/self/cgroup; cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max; mkdir /sys/fs/cgroup/x 2>/dev/null || echo read-only' 2>&1)
rc=$?
exp=$(printf '0::/\n100\n104857600\nread-only')
if [ $rc = 0 ] && [ "$out" = "$exp" ]; then ok view; else fail view "exit $rc: $(echo "$out" | tr '\n' ' ')"; fi
check_gone gone-after-run

# With --net=host /sys is the host's, bound read-only: the container's own
# cgroup still covers /sys/fs/cgroup.
out=$($S run --rm --net=host --pids-limit 50 --rootfs /rootfs sh -c 'cat /proc/self/cgroup /sys/fs/cgroup/pids.max' 2>&1)
if [ "$out" = "$(printf '0::/\n50')" ]; then ok view-net-host; else fail view-net-host "$(echo "$out" | tr '\n' ' ')"; fi

# --memory 64m and 200 MiB allocated (dd's buffer): the OOM killer, 137, and strata says so.
$S run --net=none --rm --memory 64m --rootfs /rootfs dd if=/dev/zero of=/dev/null bs=200M count=1 >/tmp/oom.out 2>/tmp/oom.err
rc=$?
if [ $rc = 137 ] && grep -q "OOM killer: it reached its memory limit (--memory 64m;" /tmp/oom.err; then
	ok oom "$(cat /tmp/oom.err | tr '\n' ' ')"
else
	fail oom "exit $rc: $(cat /tmp/oom.out /tmp/oom.err | tr '\n' ' ')"
fi
check_gone gone-after-oom

# --pids-limit 20 and a fork loop: forks fail, the container lives on.
# Only builtins after the loop: pids.events counts the refusals.
out=$($S run --net=none --rm --pids-limit 20 --rootfs /rootfs sh -c \
	'sh -c "i=0; while [ \$i -lt 40 ]; do sleep 5 & i=\$((i+1)); done" 2>&1; echo survived; while read k v; do echo "events $k $v"; done </sys/fs/cgroup/pids.events' 2>&1)
rc=$?
if [ $rc = 0 ] && echo "$out" | grep -q survived && echo "$out" | grep -q "can't fork" && echo "$out" | grep -Eq 'events max [1-9]'; then
	ok pids "$(echo "$out" | grep events)"
else
	fail pids "exit $rc: $(echo "$out" | tr '\n' ' ')"
fi
check_gone gone-after-pids

# --cpus 0.5 and a busy loop: CPU time over wall time, from the cgroup's own
# cpu.stat, measured inside over 5 s. A TCG guest's vCPUs are host threads
# on a shared machine, so an unlimited busy loop beside it measures what a
# vCPU got meanwhile, and a share out of range is measured again, up to
# three times; the result lists every attempt.
cpus_once() {
	sh -c 'while :; do :; done' &
	ref=$!
	r0=$(awk '{print $14+$15}' /proc/$ref/stat); w0=$(now)
	out=$($S run --net=none --rm --cpus 0.5 --rootfs /rootfs sh -c '
		sh -c "while :; do :; done" & sleep 1
		u0=$(awk "/usage_usec/{print \$2}" /sys/fs/cgroup/cpu.stat); t0=$(cut -d" " -f1 /proc/uptime)
		sleep 5
		u1=$(awk "/usage_usec/{print \$2}" /sys/fs/cgroup/cpu.stat); t1=$(cut -d" " -f1 /proc/uptime)
		kill $!
		cat /sys/fs/cgroup/cpu.max
		awk "/nr_throttled/{print \"throttled\", \$2}" /sys/fs/cgroup/cpu.stat
		awk "BEGIN{printf \"share %.3f\n\", ($u1-$u0)/1000000/($t1-$t0)}"' 2>&1)
	rc=$?
	r1=$(awk '{print $14+$15}' /proc/$ref/stat); w1=$(now)
	kill $ref
	refshare=$(awk -v a="$r0" -v b="$r1" -v s="$w0" -v e="$w1" 'BEGIN{printf "%.3f", (b-a)/100/(e-s)}')
	share=$(echo "$out" | awk '/^share/{print $2}')
	[ $rc = 0 ] && echo "$out" | grep -q '^50000 100000$' && [ -n "$share" ] && awk "BEGIN{exit !($share >= 0.4 && $share <= 0.6)}"
}
attempts=""
for attempt in 1 2 3; do
	cpus_once && passed=1 || passed=
	attempts="$attempts share ${share:-none} (unlimited loop beside it: $refshare);"
	[ -n "$passed" ] && break
done
if [ -n "$passed" ]; then
	ok cpus "$attempts"
else
	fail cpus "exit $rc: $(echo "$out" | tr '\n' ' ') attempts:$attempts"
fi
check_gone gone-after-cpus

# --cpuset-cpus 0: the container runs on CPU 0 only.
out=$($S run --net=none --rm --cpuset-cpus 0 --rootfs /rootfs sh -c 'cat /sys/fs/cgroup/cpuset.cpus.effective; grep Cpus_allowed_list /proc/self/status' 2>&1)
rc=$?
if [ $rc = 0 ] && [ "$out" = "$(printf '0\nCpus_allowed_list:\t0')" ]; then ok cpuset; else fail cpuset "exit $rc: $(echo "$out" | tr '\n' ' ')"; fi

# --cpu-shares (as cpu.weight), --memory-reservation (memory.low) and
# --memory-swap (memory plus swap: memory.swap.max is the difference) land
# in their files.
out=$($S run --net=none --rm --cpu-shares 512 --memory 64m --memory-swap 96m --memory-reservation 32m --rootfs /rootfs \
	cat /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/memory.low /sys/fs/cgroup/memory.swap.max 2>&1)
if [ "$out" = "$(printf '20\n33554432\n33554432')" ]; then ok weight-swap-reservation; else fail weight-swap-reservation "$(echo "$out" | tr '\n' ' ')"; fi

# strata stats of a running container, then SIGKILL of strata: the next
# strata sweeps the cgroup it left.
$S run --net=none --name victim --memory 64m --pids-limit 50 --rootfs /rootfs sleep 300 >/dev/null 2>&1 &
pid=$!
i=0
while [ $i -lt 100 ] && [ -z "$(leftover)" ]; do sleep 0.2; i=$((i+1)); done
sleep 1
stats=$($S stats --no-stream victim 2>&1)
if echo "$stats" | grep -q 'victim' && echo "$stats" | grep -q '/ 64MiB'; then ok stats "$(echo "$stats" | tr '\n' '|')"; else fail stats "$(echo "$stats" | tr '\n' '|')"; fi
kill -9 $pid
wait $pid 2>/dev/null
if [ -n "$(leftover)" ]; then echo "CGTEST info after SIGKILL, before the sweep: $(leftover)"; fi
$S ps -a >/dev/null 2>&1
$S rm victim >/dev/null 2>&1
check_gone gone-after-sigkill

# No limits asked: still runs, in a cgroup of its own.
out=$($S run --net=none --rm --rootfs /rootfs cat /proc/self/cgroup 2>&1)
if [ "$out" = "0::/" ]; then ok no-limits; else fail no-limits "$out"; fi
check_gone gone-after-no-limits

echo "CGTEST time $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s"
