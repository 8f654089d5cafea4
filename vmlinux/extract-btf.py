#!/usr/bin/env python3
"""Write the kernel BTF (.BTF section) found inside a raw kernel Image.

    extract-btf.py IMAGE OUT

An arm64 vmlinuz is the raw Image (or gzip of it): no ELF sections, but the
.BTF blob sits in it unchanged. It is found by its header: magic 0xeB9F,
version 1, hdr_len 24, the type section first and the string section right
after it, strings starting with the empty name. The largest such blob is
the kernel's (a module's BTF is not in the Image).
"""

import gzip
import struct
import sys

HEADER = struct.Struct("<HBBIIIII")   # magic version flags hdr_len type_off type_len str_off str_len


def candidates(data: bytes):
    at = data.find(b"\x9f\xeb\x01\x00")
    while at >= 0:
        magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = \
            HEADER.unpack_from(data, at)
        end = at + hdr_len + str_off + str_len
        if (hdr_len == HEADER.size and type_off == 0 and str_off == type_len
                and type_len and str_len and end <= len(data)
                and data[at + hdr_len + str_off] == 0 and data[end - 1] == 0):
            yield data[at:end]
        at = data.find(b"\x9f\xeb\x01\x00", at + 1)


def main() -> None:
    image, out = sys.argv[1:]
    with open(image, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    blobs = sorted(candidates(data), key=len)
    if not blobs:
        sys.exit(f"extract-btf: no BTF blob in {image}")
    with open(out, "wb") as f:
        f.write(blobs[-1])
    print(f"extract-btf: {len(blobs[-1])} bytes of BTF from {image}", file=sys.stderr)


if __name__ == "__main__":
    main()
