#!/usr/bin/env bash
# Fetches the harness's Xen and dom0 kernel from Debian 12 without installing them on the host.
#
#   ci/fetch-xen.sh <cache-dir>
#
# Produces, under <cache-dir>:
#   debs/     the .deb files (apt-get download)
#   root/     all of them unpacked with dpkg -x (xl, xenstored, libraries, kernel modules, ...)
#   xen       the hypervisor, gunzipped (QEMU's multiboot loader cannot read the .gz)
#   vmlinux   the dom0 kernel, uncompressed ELF extracted from Debian's bzImage: Xen then has
#             nothing to decompress, which under TCG saves several seconds of boot time
#   kernel-version   the `uname -r` of that kernel (names root/lib/modules/<version>)
#   fetched.stamp    written last; while it exists, a second call does nothing
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 <cache-dir>" >&2
    exit 2
fi
cache=$1
stamp=$cache/fetched.stamp
if [[ -e $stamp ]]; then
    exit 0
fi

# The Xen 4.17 hypervisor, toolstack and the libraries xl and xenstored link against (all but the
# common Debian base libraries, which build-dom0.sh takes from the host).
packages=(
    xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils
    libxenmisc4.17 libxencall1 libxendevicemodel1 libxenevtchn1 libxenforeignmemory1
    libxengnttab1 libxenhypfs1 libxenstore4 libxentoolcore1 libxentoollog1 libyajl2
)

# The package lists may be missing on a fresh machine.
if ! apt-cache show xen-hypervisor-4.17-amd64 >/dev/null 2>&1; then
    echo "fetch-xen: apt-get update"
    apt-get update -qq
fi

# The exact kernel package behind the linux-image-amd64 metapackage, e.g. linux-image-6.1.0-56-amd64.
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1\.[0-9.-]+-amd64$/ && !found { print $2; found = 1 }')
if [[ -z $kernel_pkg ]]; then
    echo "fetch-xen: cannot resolve the package linux-image-6.1.*-amd64 (from linux-image-amd64)" >&2
    exit 1
fi
packages+=("$kernel_pkg")

# Each download goes to a scratch folder first: an interrupted one leaves no truncated .deb.
mkdir -p "$cache/debs"
partial=$cache/debs/partial
for pkg in "${packages[@]}"; do
    if compgen -G "$cache/debs/${pkg}_*.deb" >/dev/null; then
        continue
    fi
    echo "fetch-xen: downloading $pkg"
    rm -rf "$partial"
    mkdir -p "$partial"
    # Runs as root: without this apt warns that its _apt sandbox user cannot write here.
    if ! (cd "$partial" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null); then
        echo "fetch-xen: cannot download the package $pkg (stale package lists? try apt-get update)" >&2
        exit 1
    fi
    (cd "$partial" && sha256sum "${pkg}"_*.deb)
    mv "$partial/${pkg}"_*.deb "$cache/debs/"
done
rm -rf "$partial"

# Unpack into a fresh tree, so that a run interrupted earlier leaves nothing stale behind.
echo "fetch-xen: unpacking into $cache/root"
rm -rf "$cache/root"
mkdir -p "$cache/root"
for pkg in "${packages[@]}"; do
    dpkg -x "$cache/debs/${pkg}"_*.deb "$cache/root"
done

xen_gz=$cache/root/boot/xen-4.17-amd64.gz
if [[ ! -f $xen_gz ]]; then
    echo "fetch-xen: xen-hypervisor-4.17-amd64 has no /boot/xen-4.17-amd64.gz" >&2
    exit 1
fi
gunzip -c "$xen_gz" >"$cache/xen"

kernel_version=${kernel_pkg#linux-image-}
bzimage=$cache/root/boot/vmlinuz-$kernel_version
if [[ ! -f $bzimage ]]; then
    echo "fetch-xen: $kernel_pkg has no /boot/vmlinuz-$kernel_version" >&2
    exit 1
fi

# A bzImage carries the kernel as one compressed ELF; Debian compresses it with xz. Decompress
# from the xz magic on (--single-stream ignores what trails the stream).
offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bzimage" | awk -F: 'NR == 1 { print $1 }')
if [[ -z $offset ]]; then
    echo "fetch-xen: no xz-compressed kernel found in $bzimage" >&2
    exit 1
fi
# (Process substitution, not a pipe: tail's SIGPIPE when xz stops reading is no failure.)
xz -dc --single-stream < <(tail -c "+$((offset + 1))" "$bzimage") >"$cache/vmlinux"
if [[ $(head -c4 "$cache/vmlinux") != $'\x7fELF' ]]; then
    echo "fetch-xen: the kernel extracted from $bzimage is not an ELF file" >&2
    exit 1
fi
echo "$kernel_version" >"$cache/kernel-version"

printf '%s\n' "${packages[@]}" >"$stamp"
echo "fetch-xen: done: $cache/xen, $cache/vmlinux (Linux $kernel_version)"
