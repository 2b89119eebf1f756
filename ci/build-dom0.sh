#!/usr/bin/env bash
# Builds the harness's dom0 initramfs (newc cpio, uncompressed: see docs/harness.md).
#
#   ci/build-dom0.sh <cache-dir> <agent-binary> <out.cpio> <vif-mote-binary>
#
# <cache-dir> must hold what ci/fetch-xen.sh produced; <vif-mote-binary> is what
# `cargo xtask build vif-mote` writes (target/mote/vif-mote). The archive contains:
#   /init                     ci/dom0/init
#   /mote/agent               <agent-binary> (mote-agent, dynamically linked against glibc)
#   /usr/lib/xen-4.17/bin/*   the Xen toolstack (xl, xenstored, xenconsoled, xen-init-dom0, ...)
#   /usr/bin/xenstore-*       xenstore-utils
#   /etc/xen                  xl.conf and the hotplug scripts, with vif-mote (host/vif-mote) added
#   /lib/modules/<version>    the Xen backend, bridge, loop and e1000 modules, with modules.dep
#   /usr/bin/dig              bind9-dnsutils' dig, for the DNS cases (with /etc/resolv.conf, which
#                             dig reads at start even when given @server)
#   /usr/bin/dnsperf          the DNS benchmark's load generator (`cargo xtask bench dns`)
#   busybox applets, bash and flock (the hotplug scripts need them), curl (the web cases'
#   client), wrk (`cargo xtask bench web`'s load generator), and every library `ldd` lists for the binaries (libcurl and all it links), plus
#   libgcc_s.so.1 (xl aborts without it; ldd does not list it).
# Nothing is put under /mote/images: the host appends a second archive with the guest images.
set -euo pipefail

tool=build-dom0
usage_extra=("<vif-mote-binary>")
# shellcheck source=ci/initramfs-common.sh
source "$(dirname "$(realpath "$0")")/initramfs-common.sh"

# Modules /init loads, in this order (modprobe adds their dependencies, e.g. llc and stp).
modules=(xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs bridge xen-netback xen-blkback loop e1000)

stage=$(mktemp -d "$cache/dom0-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# Merged-/usr layout like Debian 12's, so that files land where their packages put them.
mkdir -p "$stage"/usr/{bin,sbin,lib,lib64} "$stage"/{dev,proc,sys,run,tmp,root,etc,mote}
ln -s usr/bin "$stage/bin"
ln -s usr/sbin "$stage/sbin"
ln -s usr/lib "$stage/lib"
ln -s usr/lib64 "$stage/lib64"
mkdir -p "$stage"/var/{lib/xen,lib/xenstored,log/xen/console,lock}
ln -s ../run "$stage/var/run"
chmod 1777 "$stage/tmp"
# The kernel opens /dev/console for /init's output before /init can mount devtmpfs.
mknod -m 600 "$stage/dev/console" c 5 1

# Busybox provides the shell and the basic tools; host binaries copied later replace applets.
cp /bin/busybox "$stage/usr/bin/busybox"
for applet in $(/bin/busybox --list-full); do
    [[ -e $stage/$applet || -L $stage/$applet ]] || ln -s /usr/bin/busybox "$stage/$applet"
done
for tool in bash flock curl dig dnsperf wrk; do
    cp --remove-destination "$(command -v "$tool")" "$stage/usr/bin/$tool"
done

# The Xen toolstack, its own libraries and its configuration and hotplug scripts.
cp -a "$root/usr/lib/xen-4.17" "$stage/usr/lib/"
rm -rf "$stage/usr/lib/xen-4.17/lib/python"
cp -a "$root/usr/lib/x86_64-linux-gnu" "$stage/usr/lib/"
cp -a "$root"/usr/bin/xenstore{,-chmod,-exists,-list,-ls,-read,-rm,-watch,-write} "$stage/usr/bin/"
cp -a "$root/etc/xen" "$stage/etc/"
[[ -x $4 ]] || die "no vif-mote binary at $4 (cargo xtask build vif-mote)"
install -m 0755 "$4" "$stage/etc/xen/scripts/vif-mote"
# The Debian names in /usr/sbin are wrappers that pick a Xen version: link straight to 4.17.
for tool in xl xenstored xenconsoled xenstore-control; do
    ln -sf ../lib/xen-4.17/bin/"$tool" "$stage/usr/sbin/$tool"
done

cp "$agent" "$stage/mote/agent"
install -m 0755 "$here/dom0/init" "$stage/init"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
printf 'root:x:0:\n' >"$stage/etc/group"
printf 'nameserver 127.0.0.1\n' >"$stage/etc/resolv.conf"

# Every library the ELF executables and libraries need, found the way ldd finds them (Xen's
# from the unpacked packages first), copied to the same path. libgcc_s is loaded by dlopen.
elf_files() {
    local f
    while IFS= read -r -d '' f; do
        if [[ $(head -c4 "$f" | tr -d '\0') == $'\x7fELF' ]]; then
            printf '%s\0' "$f"
        fi
    done < <(find "$stage" -type f -print0)
}
# (ldd fails on the static busybox: "not found" lines are what tells of a missing library.)
libs=$(
    elf_files | LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu xargs -0 ldd 2>/dev/null |
        awk '/not found/ { print "MISSING " $1; next }
             $2 == "=>" && $3 ~ /^\// { print $3; next }
             $1 ~ /^\// && $1 !~ /:$/ { print $1 }' |
        sort -u || true
)
if grep -q '^MISSING' <<<"$libs"; then
    die "libraries not found on this host: $(grep '^MISSING' <<<"$libs" | cut -d' ' -f2 | tr '\n' ' ')(run ci/install-host-deps.sh)"
fi
# awk reads all of ldconfig's output (no early exit): under pipefail, ldconfig killed by SIGPIPE
# would fail the build.
libs+=$'\n'$(ldconfig -p | awk '$1 == "libgcc_s.so.1" && /x86-64/ && !found { print $NF; found = 1 }')
while read -r lib; do
    [[ -n $lib ]] || continue
    case $lib in
        "$stage"/*) continue ;; # found through an $ORIGIN run path: already there
        "$root"/*) dest=${lib#"$root"} ;;
        *) dest=$lib ;;
    esac
    [[ -e $stage$dest ]] || cp -L "$lib" "$stage$dest"
done <<<"$libs"
[[ -e $stage/usr/lib/x86_64-linux-gnu/libgcc_s.so.1 ]] || die "libgcc_s.so.1 not found (package libgcc-s1)"
# curl links some thirty libraries: run it inside the tree to prove that none is missing.
chroot "$stage" /usr/bin/curl --version >/dev/null || die "curl does not run in dom0's tree: a library is missing"

# Kernel modules with their dependencies, and a modules.dep for busybox's modprobe.
depmod -b "$root" "$kver"
for module in "${modules[@]}"; do
    modprobe -d "$root" -S "$kver" --show-depends "$module" || die "no module $module in Linux $kver"
done | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r ko; do
    mkdir -p "$stage$(dirname "${ko#"$root"}")"
    cp "$ko" "$stage${ko#"$root"}"
done
cp "$root/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$stage/lib/modules/$kver/"
depmod -b "$stage" "$kver"
printf '%s\n' "${modules[@]}" >"$stage/etc/mote-modules"

(cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) >"$out.tmp"
mv "$out.tmp" "$out"
echo "build-dom0: wrote $out ($(du -h "$out" | cut -f1))"
