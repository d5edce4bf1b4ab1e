#!/bin/sh
# build-deb.sh VERSION OUTDIR: builds OUTDIR/relayd_VERSION_ARCH.deb with
# dpkg-deb (no debhelper, no fakeroot: --root-owner-group makes every file
# root-owned). ARCH defaults to amd64 (GOARCH follows it). Prints the path.
#
# Needs: go, dpkg-deb (dpkg), git (for the default version).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
version=${1:-$("$here/version.sh")}
out=${2:-$here/out}
arch=${ARCH:-amd64}

case "$version" in
[0-9]*) ;;
*) echo "build-deb.sh: version $version must start with a digit" >&2; exit 1 ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM
root=$stage/root
mkdir -p "$root/DEBIAN" "$out"

# The binary: static, reproducible paths, version stamped in.
install -d "$root/usr/sbin"
(cd "$top" && CGO_ENABLED=0 GOOS=linux GOARCH="$arch" go build -trimpath \
	-ldflags "-s -w -X main.version=$version" -o "$root/usr/sbin/relayd" ./cmd/relayd)

# The sendmail interface (Debian policy 11.6), dispatched on argv[0].
install -d "$root/usr/bin" "$root/usr/lib"
ln -s relayd "$root/usr/sbin/sendmail"
ln -s ../sbin/relayd "$root/usr/bin/mailq"
ln -s ../sbin/relayd "$root/usr/bin/newaliases"
ln -s ../sbin/sendmail "$root/usr/lib/sendmail"

# Config (a conffile), systemd integration, docs.
install -D -m 0644 "$here/relayd.toml" "$root/etc/relayd/relayd.toml"
install -D -m 0644 "$top/systemd/relayd.service" "$root/lib/systemd/system/relayd.service"
install -D -m 0644 "$top/systemd/relayd.sysusers" "$root/usr/lib/sysusers.d/relayd.conf"
install -D -m 0644 "$top/systemd/relayd.tmpfiles" "$root/usr/lib/tmpfiles.d/relayd.conf"
install -D -m 0644 "$here/debian/copyright" "$root/usr/share/doc/relayd/copyright"
if [ -f "$top/docs/appliance.md" ]; then
	install -m 0644 "$top/docs/appliance.md" "$root/usr/share/doc/relayd/appliance.md"
fi
install -m 0644 "$top/conf/relayd.example.toml" "$root/usr/share/doc/relayd/relayd.example.toml"

# Control files.
for f in postinst prerm postrm; do
	install -m 0755 "$here/debian/$f" "$root/DEBIAN/$f"
done
install -m 0644 "$here/debian/conffiles" "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	"$here/debian/control.in" >"$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -print0 |
	sort -z | xargs -0 md5sum | sed 's| \./| |') >"$root/DEBIAN/md5sums"

deb=$out/relayd_${version}_${arch}.deb
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(cd "$top" && git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
