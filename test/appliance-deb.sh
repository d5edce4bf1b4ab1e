#!/bin/sh
# appliance-deb.sh: package test for relayd (issue 9).
#
# Builds relayd_VERSION_amd64.deb with `make deb`, installs it with dpkg -i
# into two clean Debian 12 roots made by debootstrap (minbase + adduser, and
# minbase + adduser + systemd: systemd installed, not running, no /proc, as
# in an image build; both cached as tarballs between runs), and checks in
# each: the sendmail interface points at
# relayd, `relayd check` accepts the packaged config, the user and the spool
# exist with the right modes, an unprivileged user's `sendmail` lands in the
# maildrop while the daemon is down, an admin's config edit survives a
# reinstall and `dpkg -r`, purge keeps the queue unless RELAYD_PURGE_SPOOL=yes.
# Prints one result line; exit 0 on success, 1 on failure, 77 when skipped
# (not root, outside CI).
#
# Nothing is installed on the host: everything happens inside the throwaway
# root, which is removed on exit. The host's own MTA is never touched (the
# package Conflicts: mail-transport-agent, so installing it on a CI machine
# that has postfix would remove postfix; that is why a chroot is required).
#
# Needs (apt): debootstrap dpkg tar gzip util-linux ca-certificates, plus Go
# and git for the build. Runs as root (chroot, debootstrap).
# Env: RELAYD_TEST_CACHE (default /var/cache/relayd-test), DEBIAN_MIRROR
# (default: the first Debian URI in /etc/apt/sources.list*), KEEP_ROOT=1 to
# keep the root for inspection.
APT_PACKAGES="debootstrap dpkg tar gzip util-linux ca-certificates git"
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
start=$(date +%s)
checks=0

say() { printf 'appliance-deb: %s\n' "$*" >&2; }
fail() {
	say "FAIL: $*"
	echo "appliance-deb: FAIL ($*) after $checks checks"
	exit 1
}
ok() { checks=$((checks + 1)); }

if [ "$(id -u)" != 0 ]; then
	if [ "${CI:-}" = true ]; then fail "must run as root in CI"; fi
	echo "appliance-deb: SKIP (needs root for debootstrap and chroot)"
	exit 77
fi
for t in debootstrap dpkg-deb go git tar; do
	command -v "$t" >/dev/null || fail "missing $t (apt-get install $APT_PACKAGES)"
done

cache=${RELAYD_TEST_CACHE:-/var/cache/relayd-test}
mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
	/etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v '^[[:space:]]*#' |
	grep -o 'https\?://[^ ]*/debian' | grep -v security | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d /var/tmp/relayd-deb-test.XXXXXX)
cleanup() {
	if [ "${KEEP_ROOT:-}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

# 1. Build the package.
version=$("$top/packaging/version.sh")
make -C "$top" --no-print-directory deb VERSION="$version" OUT="$work/out" >"$work/build.log" 2>&1 ||
	{ cat "$work/build.log" >&2; fail "make deb"; }
deb=$work/out/relayd_${version}_amd64.deb
[ -f "$deb" ] || fail "make deb did not produce $deb"
ok

# 2. A clean Debian 12 root (cached base tarball, fresh copy each run):
# $1 is the name, $2 the packages debootstrap adds to minbase.
test_root() {
name=$1
base=$cache/bookworm-$name.tar.gz
if [ ! -f "$base" ]; then
	say "debootstrap bookworm ($name) from $mirror (once; cached in $base)"
	mkdir -p "$cache"
	debootstrap --variant=minbase --include="$2" bookworm "$work/base" "$mirror" \
		>"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap ($name)"; }
	tar -C "$work/base" -czf "$base.tmp" . && mv "$base.tmp" "$base"
	rm -rf "$work/base"
fi
root=$work/root-$name
mkdir "$root"
tar -C "$root" -xzf "$base"
# Nothing is mounted in the root: no /proc, as in debootstrap's second
# stage or an image build (Debian's MTA packages install there).
[ ! -e "$root/proc/self" ] || fail "/proc is mounted in the $name root"
# No service may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
cp "$deb" "$root/tmp/relayd.deb"

in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@" </dev/null; }
mode_of() { in_root stat -c '%a %U:%G' "$1"; }
expect_mode() {
	got=$(mode_of "$1") || fail "$1 missing"
	[ "$got" = "$2" ] || fail "$1 is $got, want $2"
	ok
}

# 3. Install and check.
in_root dpkg -i /tmp/relayd.deb >"$work/install.log" 2>&1 ||
	{ cat "$work/install.log" >&2; fail "dpkg -i ($name root)"; }
ok
if [ -x "$root/usr/bin/deb-systemd-helper" ]; then
	# With systemd installed (not running), postinst enables the unit.
	[ -L "$root/etc/systemd/system/multi-user.target.wants/relayd.service" ] ||
		fail "relayd.service not enabled in the $name root"
	ok
fi
for l in /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases; do
	[ "$(in_root readlink -f "$l")" = /usr/sbin/relayd ] || fail "$l does not resolve to /usr/sbin/relayd"
	ok
done
got=$(in_root /usr/sbin/relayd version) || fail "relayd version"
[ "$got" = "relayd $version" ] || fail "relayd version says '$got', want 'relayd $version'"
ok
if in_root /usr/sbin/relayd check --help 2>&1 | grep -q -- -no-smarthost; then
	in_root /usr/sbin/relayd check --config /etc/relayd/relayd.toml --no-dns --no-smarthost \
		>"$work/check.log" 2>&1 || { cat "$work/check.log" >&2; fail "relayd check"; }
else
	say "relayd check lacks --no-dns/--no-smarthost; running config example instead"
	in_root /usr/sbin/relayd config example >/dev/null || fail "relayd config example"
fi
ok
in_root /usr/bin/newaliases || fail "newaliases"
ok

pw=$(in_root getent passwd relayd) || fail "no user relayd"
uid=$(echo "$pw" | cut -d: -f3)
[ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ] || fail "relayd uid $uid is not a system uid"
[ "$(echo "$pw" | cut -d: -f7)" = /usr/sbin/nologin ] || fail "relayd has a login shell: $pw"
in_root getent group relayd >/dev/null || fail "no group relayd"
ok
expect_mode /var/lib/relayd "711 relayd:relayd"
expect_mode /var/lib/relayd/maildrop "1733 relayd:relayd"
expect_mode /var/lib/relayd/public "755 relayd:relayd"
expect_mode /etc/relayd/relayd.toml "644 root:root"
expect_mode /etc/relayd/smarthost.secret "600 root:root"
expect_mode /etc/relayd/dkim "700 relayd:relayd"
expect_mode /usr/sbin/relayd "755 root:root"
[ -f "$root/lib/systemd/system/relayd.service" ] || fail "unit not installed"
[ -f "$root/usr/lib/sysusers.d/relayd.conf" ] || fail "sysusers snippet not installed"
[ -f "$root/usr/lib/tmpfiles.d/relayd.conf" ] || fail "tmpfiles snippet not installed"
ok
grep -qx /etc/relayd/relayd.toml "$root/var/lib/dpkg/info/relayd.conffiles" || fail "relayd.toml is not a conffile"
ok

# An unprivileged user can submit while the daemon is down: the message
# waits in the maildrop.
printf 'Subject: appliance-deb\n\nhello\n' |
	chroot "$root" setpriv --reuid=65534 --regid=65534 --clear-groups \
		/usr/sbin/sendmail -i root@localhost || fail "sendmail as nobody exited $?"
n=$(find "$root/var/lib/relayd/maildrop" -type f | wc -l)
[ "$n" = 1 ] || fail "maildrop holds $n files after one submission, want 1"
ok

# 4. The admin's config survives reinstall and removal.
echo '# edited by the admin' >>"$root/etc/relayd/relayd.toml"
in_root dpkg -i /tmp/relayd.deb >"$work/reinstall.log" 2>&1 ||
	{ cat "$work/reinstall.log" >&2; fail "dpkg -i (reinstall)"; }
grep -q '^# edited by the admin$' "$root/etc/relayd/relayd.toml" || fail "reinstall overwrote the admin's config"
ok
in_root dpkg -r relayd >"$work/remove.log" 2>&1 || { cat "$work/remove.log" >&2; fail "dpkg -r"; }
[ ! -e "$root/usr/sbin/relayd" ] && [ ! -L "$root/usr/sbin/sendmail" ] || fail "binary or sendmail link left after remove"
grep -q '^# edited by the admin$' "$root/etc/relayd/relayd.toml" || fail "config not kept after dpkg -r"
[ -d "$root/var/lib/relayd/maildrop" ] || fail "queue not kept after dpkg -r"
ok

# Purge: config gone, queue (with the waiting message) kept and said so.
in_root dpkg -P relayd >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; fail "dpkg -P"; }
[ ! -e "$root/etc/relayd/relayd.toml" ] || fail "purge kept relayd.toml"
[ ! -e "$root/etc/relayd/smarthost.secret" ] || fail "purge kept the empty smarthost.secret"
n=$(find "$root/var/lib/relayd/maildrop" -type f | wc -l)
[ "$n" = 1 ] || fail "purge did not keep the queued message"
grep -q 'kept the queue' "$work/purge.log" || fail "purge did not say it kept the queue"
ok
# Purge with RELAYD_PURGE_SPOOL=yes deletes the queue.
in_root dpkg -i /tmp/relayd.deb >/dev/null 2>&1 || fail "dpkg -i (again)"
chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin RELAYD_PURGE_SPOOL=yes \
	dpkg -P relayd </dev/null >"$work/purge2.log" 2>&1 || { cat "$work/purge2.log" >&2; fail "dpkg -P (RELAYD_PURGE_SPOOL=yes)"; }
[ ! -e "$root/var/lib/relayd" ] || fail "RELAYD_PURGE_SPOOL=yes kept the queue"
ok
say "$name root: ok ($checks checks so far)"
[ "${KEEP_ROOT:-}" = 1 ] || rm -rf "$root"
}

# minbase, as a container or a minimal server; and one with systemd
# installed but not running and no /proc, where systemd-tmpfiles and
# systemd-sysusers cannot work.
test_root minbase adduser
test_root systemd adduser,systemd

size=$(stat -c %s "$deb")
echo "appliance-deb: PASS $(basename "$deb") ($((size / 1024)) KiB), $checks checks in $(($(date +%s) - start))s"
