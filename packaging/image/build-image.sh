#!/bin/sh
# build-image.sh DEB OUTDIR: builds the relayd appliance, a Debian 12 VM
# disk image, from the package DEB. Writes to OUTDIR:
#   relayd-appliance.qcow2   the root filesystem (ext4, label relayd-root,
#                            no partition table), compressed qcow2
#   relayd-appliance.vmlinuz / relayd-appliance.initrd
#                            the image's own kernel and initramfs, for QEMU
#                            or libvirt direct kernel boot with
#                            root=LABEL=relayd-root ro console=ttyS0 (systemd
#                            checks the root filesystem, then remounts it rw)
# The image has systemd, systemd-networkd (DHCP by default, static template
# in /etc/systemd/network/10-static.network.example), systemd-resolved, the
# relayd package (enabled), openssh-server disabled and without host keys,
# root's password locked, and relayd-firstboot.service, which applies a
# configuration drive and makes missing DKIM keys, and relayd-networks.service
# (see docs/appliance.md). Its default relayd.toml listens on every address
# and relays for the networks the guest is connected to.
#
# Needs root and (apt) debootstrap e2fsprogs qemu-utils. No loop devices or
# mounts: the filesystem is made with mke2fs -d. Env: DEBIAN_MIRROR,
# IMAGE_SIZE_MB (default: contents + 768 MiB).
APT_PACKAGES="debootstrap e2fsprogs qemu-utils"
set -eu

deb=${1:?usage: build-image.sh DEB OUTDIR}
out=${2:?usage: build-image.sh DEB OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "build-image.sh: needs root (debootstrap, chroot)" >&2; exit 1; }
for t in debootstrap mke2fs qemu-img; do
	command -v "$t" >/dev/null || { echo "build-image.sh: missing $t (apt-get install $APT_PACKAGES)" >&2; exit 1; }
done
mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
	/etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v '^[[:space:]]*#' |
	grep -o 'https\?://[^ ]*/debian' | grep -v security | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d /var/tmp/relayd-image.XXXXXX)
root=$work/root
cleanup() {
	umount "$root/proc" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

pkgs=systemd,systemd-sysv,systemd-resolved,udev,dbus,kmod,linux-image-amd64,initramfs-tools
pkgs=$pkgs,adduser,ca-certificates,util-linux,e2fsprogs,iproute2,openssh-server,less
echo "build-image.sh: debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase --include="$pkgs" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
	{ tail -30 "$work/debootstrap.log" >&2; exit 1; }

in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@" </dev/null; }
mount -t proc proc "$root/proc"

# The package. No systemd runs in the chroot, so postinst only enables it.
cp "$deb" "$root/tmp/relayd.deb"
in_root dpkg -i /tmp/relayd.deb >&2
rm -f "$root/tmp/relayd.deb"

# Identity, filesystems, console.
echo relayd >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\trelayd\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo 'LABEL=relayd-root / ext4 rw,errors=remount-ro 0 1' >"$root/etc/fstab"
in_root passwd -l root >/dev/null
: >"$root/etc/machine-id" # a fresh machine ID on first boot

# Network: systemd-networkd and resolved.
install -m 0644 "$here/files/80-dhcp.network" "$here/files/10-static.network.example" "$root/etc/systemd/network/"
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
in_root systemctl enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1

# SSH off, no shared host keys.
in_root systemctl disable ssh.service >/dev/null 2>&1 || true
rm -f "$root"/etc/ssh/ssh_host_*
install -D -m 0644 "$here/files/ssh-keygen.conf" "$root/etc/systemd/system/ssh.service.d/relayd-keygen.conf"

# First boot: configuration drive and DKIM keys; at every boot, once the
# network is up, relay_networks = the guest's connected networks.
install -D -m 0755 "$here/files/relayd-firstboot" "$root/usr/lib/relayd/relayd-firstboot"
install -m 0644 "$here/files/relayd-firstboot.service" "$here/files/relayd-networks.service" \
	"$root/etc/systemd/system/"
in_root systemctl enable relayd-firstboot.service relayd-networks.service relayd.service \
	systemd-networkd-wait-online.service >/dev/null 2>&1

# The image's default config: an appliance is there to be reached, so
# relayd listens on every address (0.0.0.0:25 is one socket for IPv4 and
# IPv6) and lets the networks the guest is connected to relay (filled in
# at each boot by relayd-networks.service). A relayd.toml on the
# configuration drive replaces it.
cfg=$root/etc/relayd/relayd.toml
sed -i -e 's|^smtp = \["127.0.0.1:25", "\[::1\]:25"\]$|smtp = ["0.0.0.0:25"] # every address, IPv4 and IPv6: the appliance|' \
	-e 's|^relay_networks = \["127.0.0.0/8", "::1/128"\]$|relay_networks = ["127.0.0.0/8", "::1/128"] # + connected networks|' "$cfg"
grep -q '^smtp = \["0.0.0.0:25"\]' "$cfg" && grep -q '# + connected networks$' "$cfg" ||
	{ echo "build-image.sh: could not set the appliance's listen defaults in $cfg" >&2; exit 1; }

# Kernel and initramfs for direct kernel boot. Rebuild the initramfs now
# that everything is installed (debootstrap may configure the kernel before
# e2fsprogs, leaving fsck out of it).
kver=$(ls "$root/lib/modules" | sort -V | tail -n1)
in_root update-initramfs -u -k "$kver" >/dev/null 2>&1
mkdir -p "$out"
cp "$root/boot/vmlinuz-$kver" "$out/relayd-appliance.vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/relayd-appliance.initrd"

# Slim down and make the filesystem.
in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/tmp/*
umount "$root/proc"
used=$(du -sm "$root" | cut -f1)
size=${IMAGE_SIZE_MB:-$((used + 768))}
mke2fs -q -t ext4 -L relayd-root -d "$root" "$work/root.img" "${size}M"
qemu-img convert -c -O qcow2 "$work/root.img" "$out/relayd-appliance.qcow2"
echo "build-image.sh: $out/relayd-appliance.qcow2 (${size} MiB filesystem, kernel $kver)" >&2
echo "$out/relayd-appliance.qcow2"
