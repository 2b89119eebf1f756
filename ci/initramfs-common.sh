# Sourced by build-dom0.sh and build-linux-guest.sh with their arguments
# (<cache-dir> <agent-binary> <out.cpio>, and for dom0 <vif-mote-binary>) and $tool and
# $usage_extra set by the script: checks them and sets cache, agent, out, here (ci/), root
# (the unpacked packages) and kver (the kernel's version); defines die.

if [[ $# -ne $((3 + ${#usage_extra[@]})) ]]; then
    echo "usage: $tool <cache-dir> <agent-binary> <out.cpio>${usage_extra[*]/#/ }" >&2
    exit 2
fi
cache=$(realpath "$1")
agent=$(realpath "$2")
out=$3
here=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
root=$cache/root

die() {
    echo "$tool: $*" >&2
    exit 1
}

[[ -e $cache/fetched.stamp ]] || die "$cache is not ready: run ci/fetch-xen.sh $1 first"
[[ -x $agent ]] || die "no agent binary at $2"
kver=$(<"$cache/kernel-version")
