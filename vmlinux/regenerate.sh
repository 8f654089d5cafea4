#!/usr/bin/env bash
# Regenerates vmlinux/<arch>/vmlinux.h from a kernel's BTF: a BTF file
# (default: the running kernel's /sys/kernel/btf/vmlinux) or a kernel image
# (an arm64 vmlinuz: the raw Image, BTF blob inside; extract-btf.py finds it).
set -euo pipefail
arch=${1:?usage: regenerate.sh ARCH [BTF_FILE|VMLINUZ]}
btf=${2:-/sys/kernel/btf/vmlinux}
here=$(dirname "$0")
out="$here/$arch/vmlinux.h"
mkdir -p "$(dirname "$out")"
if [ "$(head -c 2 "$btf" | od -An -tx1 | tr -d ' ')" != 9feb ]; then
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  "$here/extract-btf.py" "$btf" "$tmp"
  btf=$tmp
fi
bpftool btf dump file "$btf" format c > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out from ${2:-/sys/kernel/btf/vmlinux} ($(uname -r) if that is the running kernel)"
