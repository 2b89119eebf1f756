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
#                             zone, for `cargo xtask bench dns` (started with mote.serve=nsd on the
#                             kernel command line)
#   /usr/sbin/nginx           Debian's nginx (package nginx, the server of nginx-light: downloaded
#                             and unpacked here, never installed on the host), with
#                             /etc/nginx/nginx.conf from ci/linux-guest/nginx.conf; it serves
#                             /srv/www, which `cargo xtask bench web` appends as a second archive
#   /lib/modules/<version>    xen-netfront, xen-blkfront and their dependencies, with modules.dep
#   busybox applets, and the libraries `ldd` lists for the agent, NSD and nginx.
set -euo pipefail

tool=build-linux-guest
usage_extra=()
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

# nginx from Debian's package, unpacked (not installed: its postinst would start a server on the
# host). The download goes through a scratch folder, so no truncated .deb stays behind.
debs=$cache/debs
if ! compgen -G "$debs/nginx_*.deb" >/dev/null; then
    echo "$tool: downloading nginx"
    rm -rf "$debs/partial-nginx"
    mkdir -p "$debs/partial-nginx"
    (cd "$debs/partial-nginx" && apt-get download -q -o APT::Sandbox::User=root nginx >/dev/null) ||
        die "cannot download the package nginx (stale package lists? try apt-get update)"
    (cd "$debs/partial-nginx" && sha256sum nginx_*.deb)
    mv "$debs/partial-nginx"/nginx_*.deb "$debs/"
    rmdir "$debs/partial-nginx"
fi
dpkg -x "$(compgen -G "$debs/nginx_*.deb" | head -n1)" "$stage/nginx-deb"
mkdir -p "$stage/usr/sbin" "$stage/etc/nginx" "$stage/srv/www"
mv "$stage/nginx-deb/usr/sbin/nginx" "$stage/usr/sbin/nginx"
rm -rf "$stage/nginx-deb"
install -m 0644 "$here/linux-guest/nginx.conf" "$stage/etc/nginx/nginx.conf"
# nginx's workers run as nobody.
printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"

# The agent's, NSD's and nginx's libraries, at the paths ldd finds them.
libs=$(ldd "$agent" "$nsd" "$stage/usr/sbin/nginx" |
    awk '/not found/ { print "MISSING " $1; next }
         $2 == "=>" && $3 ~ /^\// { print $3; next }
         $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u)
if grep -q '^MISSING' <<<"$libs"; then
    die "libraries not found on this host: $(grep '^MISSING' <<<"$libs" | cut -d' ' -f2 | tr '\n' ' ')(run ci/install-host-deps.sh)"
fi
while read -r lib; do
    mkdir -p "$stage$(dirname "$lib")"
    [[ -e $stage$lib ]] || cp -L "$lib" "$stage$lib"
done <<<"$libs"
chroot "$stage" /usr/sbin/nginx -t -q || die "nginx does not run in the guest's tree"

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
