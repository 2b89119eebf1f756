#!/usr/bin/env bash
# Builds the initramfs of the Linux PVH guest `cargo xtask bench` compares motes with (newc cpio,
# uncompressed). The guest boots Debian's kernel (<cache-dir>/vmlinux, the dom0 kernel) with it.
#
#   ci/build-linux-guest.sh <cache-dir> <agent-binary> <out.cpio>
#
# <cache-dir> must hold what ci/fetch-xen.sh produced. The archive contains:
#   /init                     ci/linux-guest/init
#   /mote/agent               <agent-binary>, which serves echo and discard (`echo-server`)
#   /usr/bin/nsd, /etc/nsd    Debian's NSD with ci/linux-guest/nsd.conf and the dns app's sample
#                             zone, for `cargo xtask bench dns` (started with mote.nsd on the
#                             kernel command line)
#   /lib/modules/<version>    xen-netfront, xen-blkfront and their dependencies, with modules.dep
#   busybox applets, and the libraries `ldd` lists for the agent.
set -euo pipefail

tool=build-linux-guest
# shellcheck source=ci/initramfs-common.sh
source "$(dirname "$(realpath "$0")")/initramfs-common.sh"

stage=$(mktemp -d "$cache/linux-guest-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/usr/{bin,lib,lib64} "$stage"/{dev,proc,sys,tmp,etc,mote}
ln -s usr/bin "$stage/bin"
ln -s usr/bin "$stage/sbin"
ln -s usr/lib "$stage/lib"
ln -s usr/lib64 "$stage/lib64"
mknod -m 600 "$stage/dev/console" c 5 1

cp /bin/busybox "$stage/usr/bin/busybox"
for applet in $(/bin/busybox --list); do
    [[ -e $stage/usr/bin/$applet ]] || ln -s busybox "$stage/usr/bin/$applet"
done

cp "$agent" "$stage/mote/agent"
install -m 0755 "$here/linux-guest/init" "$stage/init"

nsd=$(command -v nsd || echo /usr/sbin/nsd)
[[ -x $nsd ]] || die "no nsd on this host (run ci/install-host-deps.sh)"
cp "$nsd" "$stage/usr/bin/nsd"
mkdir -p "$stage/etc/nsd"
cp "$here/linux-guest/nsd.conf" "$stage/etc/nsd/nsd.conf"
cp "$here/../apps/dns/zones/example.com.zone" "$stage/etc/nsd/example.com.zone"

# The agent's and NSD's libraries, at the paths ldd finds them.
{ ldd "$agent"; ldd "$nsd"; } | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' | sort -u |
    while read -r lib; do
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done

depmod -b "$root" "$kver"
{
    modprobe -d "$root" -S "$kver" --show-depends xen-netfront
    modprobe -d "$root" -S "$kver" --show-depends xen-blkfront
} | awk '$1 == "insmod" { print $2 }' | sort -u |
    while read -r ko; do
        mkdir -p "$stage$(dirname "${ko#"$root"}")"
        cp "$ko" "$stage${ko#"$root"}"
    done
for module in xen-netfront xen-blkfront; do
    [[ -n $(find "$stage/lib/modules" -name "$module.ko*") ]] || die "no module $module in Linux $kver"
done
cp "$root/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$stage/lib/modules/$kver/"
depmod -b "$stage" "$kver"

(cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) >"$out.tmp"
mv "$out.tmp" "$out"
echo "build-linux-guest: wrote $out ($(du -h "$out" | cut -f1))"
