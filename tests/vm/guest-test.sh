#!/bin/sh
echo "CGTEST ok placeholder $(id -u) $(cat /proc/self/cgroup) $(cat /sys/fs/cgroup/user/cgroup.controllers)"
ls -la /dev/fuse /usr/bin/newuidmap
