#!/bin/sh
# strata's main job, end to end and without a registry: build the default
# image from Debian's busybox-static package and run containers from it as
# an ordinary user. Run by `make demo` (as root it uses the test user that
# tests/setup.sh creates; as anyone else it runs as you).
set -eu
cd "$(dirname "$0")/.."
[ -x bin/strata ] || make build

work=$(mktemp -d /tmp/strata-demo.XXXXXX)
chmod 755 "$work"
cp bin/strata "$work/strata"
trap 'rm -rf "$work"' EXIT

if [ "$(id -u)" = 0 ]; then
	user=${STRATA_TEST_USER:-stratatest}
	uid=$(id -u "$user")
	chown "$user" "$work"
	as_user() {
		setpriv --reuid="$uid" --regid="$(id -g "$user")" --init-groups -- \
			env -i PATH=/usr/bin:/bin HOME="$work" USER="$user" XDG_RUNTIME_DIR="/run/user/$uid" "$@"
	}
else
	as_user() { "$@"; }
fi
strata() { as_user "$work/strata" --root "$work/store" "$@"; }

echo "+ strata image build-default"
strata image build-default
echo "+ strata images"
strata images
echo "+ strata run --rm strata/busybox echo hello from a rootless container"
strata run --rm strata/busybox echo hello from a rootless container
echo "+ strata run --rm strata/busybox sh -c 'id; ls -ld /tmp /home/user'"
strata run --rm strata/busybox sh -c 'id; ls -ld /tmp /home/user'
