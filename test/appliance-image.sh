#!/bin/sh
# appliance-image.sh: image test for relayd (issue 9). Long (minutes), so it
# is not part of the default suite; CI may run it as a separate job.
#
# Builds the appliance with `make image` (Debian 12 by debootstrap, the
# relayd package, direct kernel boot files), then runs the Go test
# ./test/applianceimage, which boots it under qemu-system-x86_64 -accel tcg
# with the configuration drive of docs/appliance.md (label RELAYD) and
# user-mode networking with restrict=on and only two forwards: host
# 127.0.0.1:PORT -> guest :25, guest 10.0.2.100:587 -> a test smarthost on
# the host (STARTTLS + AUTH, its CA on the drive). One message goes in; the
# test checks it arrives over TLS with AUTH and DKIM-signed with the key the
# guest made on first boot (DNS record read from the serial console).
# Prints one result line with the build time, image size and boot time.
#
# Needs root and (apt) debootstrap e2fsprogs qemu-utils qemu-system-x86,
# plus Go and git. Env: RELAYD_IMAGE_DIR=DIR reuses an image built before
# (skips the build); KEEP_IMAGE=1 keeps the built image and the guest's
# serial console (console.log) in the work directory.
APT_PACKAGES="debootstrap e2fsprogs qemu-utils qemu-system-x86 git ca-certificates"
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
	if [ "${CI:-}" = true ]; then echo "appliance-image: FAIL (must run as root in CI)"; exit 1; fi
	echo "appliance-image: SKIP (needs root for debootstrap and chroot)"
	exit 77
fi
for t in debootstrap mke2fs qemu-img qemu-system-x86_64 go git; do
	command -v "$t" >/dev/null || {
		echo "appliance-image: FAIL (missing $t: apt-get install $APT_PACKAGES)"
		exit 1
	}
done

work=$(mktemp -d /var/tmp/relayd-image-test.XXXXXX)
cleanup() {
	if [ "${KEEP_IMAGE:-}" = 1 ]; then echo "appliance-image: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

build=0
dir=${RELAYD_IMAGE_DIR:-}
if [ -z "$dir" ]; then
	dir=$work/out
	t0=$(date +%s)
	make -C "$top" --no-print-directory image OUT="$dir" >"$work/build.log" 2>&1 ||
		{ tail -40 "$work/build.log" >&2; echo "appliance-image: FAIL (make image)"; exit 1; }
	build=$(($(date +%s) - t0))
fi
size=$(du -m --apparent-size "$dir/relayd-appliance.qcow2" | cut -f1)

cd "$top"
if ! RELAYD_IMAGE_DIR=$dir RELAYD_CONSOLE_LOG=$work/console.log go test -count=1 -v -timeout 30m -run 'TestApplianceImage$' \
	./test/applianceimage/ >"$work/test.log" 2>&1; then
	cat "$work/test.log" >&2
	echo "appliance-image: FAIL (boot test; image ${size} MiB, build ${build}s)"
	exit 1
fi
grep -q 'APPLIANCE RESULT' "$work/test.log" ||
	{ cat "$work/test.log" >&2; echo "appliance-image: FAIL (test did not run)"; exit 1; }
result=$(grep -o 'APPLIANCE RESULT: .*' "$work/test.log" | sed 's/APPLIANCE RESULT: //')
echo "appliance-image: PASS build ${build}s, $result"
