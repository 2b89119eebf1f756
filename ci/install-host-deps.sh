#!/usr/bin/env bash
# Installs (as root, Debian 12) what the harness needs on the host; quiet when all is present.
# Xen itself is never installed here: ci/fetch-xen.sh only downloads and unpacks its packages.
set -euo pipefail

packages=(
    qemu-system-x86 # the emulated machine (TCG)
    busybox-static  # dom0's shell and tools
    bash util-linux # bash and flock for Xen's hotplug scripts in dom0
    curl            # dom0's HTTP client (copied with libcurl and its libraries)
    cpio kmod       # the initramfs archive; depmod and modprobe --show-depends
    xz-utils        # extracting vmlinux from the kernel's bzImage
    grep mawk findutils coreutils
    libc-bin        # ldd, ldconfig
    bind9-dnsutils  # dig, copied into dom0 for the DNS cases
    libvirt-clients libxml2-utils # virt-xml-validate (and its xmllint), checking the libvirt XML of `cargo xtask build`
    e2fsprogs       # mkfs.ext4 -d: cargo xtask disk, and the mote::fs tests
    gdb             # cargo xtask debug, and its integration case
    iproute2        # ip netns, ip tuntap: the network namespace of --hosted runs and cases
    nsd             # the reference server of the DNS differential test (dns/tests/nsd.rs)
    dnsperf         # the DNS benchmark's load generator, copied into dom0
    wrk             # dom0's HTTP load generator for `cargo xtask bench web` (copied with its libraries)
    libpcre2-8-0 libssl3 libcrypt1 # the libraries of nginx, copied into the Linux benchmark guest
    libgcc-s1 libext2fs2 libuuid1 libzstd1 zlib1g liblzma5 libncurses6 libtinfo6 # xl's libraries
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg -s "$pkg" 2>/dev/null | grep '^Status: install ok installed' >/dev/null; then
        missing+=("$pkg")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

echo "install-host-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Debian starts the daemons it installs (nsd on port 53); the tests run their own NSD on a
# loopback port, so none is started here.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
