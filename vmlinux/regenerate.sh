#!/usr/bin/env bash
# Regenerates vmlinux/<arch>/vmlinux.h from a kernel BTF file
# (default: the running kernel's).
set -euo pipefail
arch=${1:?usage: regenerate.sh ARCH [BTF_FILE]}
btf=${2:-/sys/kernel/btf/vmlinux}
out="$(dirname "$0")/$arch/vmlinux.h"
mkdir -p "$(dirname "$out")"
bpftool btf dump file "$btf" format c > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out from $btf ($(uname -r) if that is the running kernel)"
