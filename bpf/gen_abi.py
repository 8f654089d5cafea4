#!/usr/bin/env python3
"""Writes Python's view of the ABI from the BTF of the built object.

    gen_abi.py OBJECT OUTPUT      (OUTPUT "-": standard output)

uringwatch.h is the one definition of every record layout and constant;
the build runs this on uringwatch.bpf.o and installs the module it writes
as uringwatch/record/_abi.py, which record/layout.py and record/uapi.py
read. It parses the ELF object's .BTF section itself (include/uapi/linux/
btf.h), so a build needs neither bpftool nor libbpf, and imports nothing
of uringwatch.

Written out: every struct, union and enum named uw_*, and the types the
anchors uw_uapi_types and uw_enums (btf_anchors.h) keep for user space.
A struct is its members in order, each (name, byte offset, format) with
the format as Python's struct module takes it, nested structs and arrays
flattened; members of anonymous unions and structs are listed in their
place, so union alternatives share an offset. Each enumerator named UW_*
is also a constant without the prefix (UW_KIND_CALL: KIND_CALL).
"""

from __future__ import annotations

import struct
import sys

ANCHORS = ("uw_uapi_types", "uw_enums")   # structs whose members' types are wanted too

# BTF kinds (include/uapi/linux/btf.h)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, \
    FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(1, 20)
QUALIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)
INT_SIGNED, INT_CHAR = 1, 2
BTF_MAGIC = 0xEB9F


class Error(Exception):
    """The object can't be read as this generator needs it."""


def btf_section(elf: bytes) -> bytes:
    """The .BTF section of a little-endian ELF64 file."""
    if elf[:4] != b"\x7fELF" or len(elf) < 64:
        raise Error("not an ELF file")
    if elf[4] != 2 or elf[5] != 1:
        raise Error("not a little-endian ELF64 object")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    if shentsize != 64 or shoff + shnum * 64 > len(elf) or shstrndx >= shnum:
        raise Error("section headers out of the file")
    headers = [struct.unpack_from("<IIQQQQ", elf, shoff + i * 64) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    for name, _, _, _, offset, size in headers:
        end = elf.find(b"\0", names_at + name)
        if elf[names_at + name:end] == b".BTF":
            if offset + size > len(elf):
                raise Error(".BTF section out of the file")
            return elf[offset:offset + size]
    raise Error("no .BTF section (built without -g?)")


class Btf:
    """The types of a BTF blob, by id (id 0 is void)."""

    def __init__(self, blob: bytes):
        if len(blob) < 24:
            raise Error("BTF header truncated")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            struct.unpack_from("<HBBIIIII", blob)
        if magic != BTF_MAGIC:
            raise Error(f"bad BTF magic {magic:#x} (big-endian BTF?)")
        if hdr_len + max(type_off + type_len, str_off + str_len) > len(blob):
            raise Error("BTF sections out of the blob")
        self.strings = blob[hdr_len + str_off:hdr_len + str_off + str_len]
        self.types: list[dict] = [{"kind": 0, "name": "void", "size": 0}]
        data = blob[hdr_len + type_off:hdr_len + type_off + type_len]
        at = 0
        while at < len(data):
            at = self._read_type(data, at)

    def name(self, off: int) -> str:
        if off >= len(self.strings):
            raise Error(f"string offset {off} out of the string section")
        return self.strings[off:self.strings.index(b"\0", off)].decode()

    def _read_type(self, data: bytes, at: int) -> int:
        name_off, info, size_or_type = struct.unpack_from("<III", data, at)
        at += 12
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        t = {"kind": kind, "name": self.name(name_off), "size": size_or_type,
             "type": size_or_type, "signed": bool(kflag)}     # enums: kflag is signedness
        if kind == INT:
            enc, = struct.unpack_from("<I", data, at)
            t.update(signed=bool(enc >> 24 & INT_SIGNED), char=bool(enc >> 24 & INT_CHAR),
                     bits=enc & 0xFF, bit_offset=enc >> 16 & 0xFF)
            at += 4
        elif kind == ARRAY:
            t["type"], _index, t["nelems"] = struct.unpack_from("<III", data, at)
            at += 12
        elif kind in (STRUCT, UNION):
            t["members"] = []
            for i in range(vlen):
                m_name, m_type, m_off = struct.unpack_from("<III", data, at + 12 * i)
                bits = m_off >> 24 if kflag else 0
                t["members"].append({"name": self.name(m_name), "type": m_type,
                                     "bits_offset": m_off & 0xFFFFFF if kflag else m_off,
                                     "bitfield": bits})
            at += 12 * vlen
        elif kind == ENUM:
            fmt = "<Ii" if kflag else "<II"
            t["values"] = [(self.name(n), v) for n, v in
                           (struct.unpack_from(fmt, data, at + 8 * i) for i in range(vlen))]
            at += 8 * vlen
        elif kind == ENUM64:
            vals = []
            for i in range(vlen):
                n, lo, hi = struct.unpack_from("<III", data, at + 12 * i)
                v = hi << 32 | lo
                vals.append((self.name(n), v - (1 << 64) if kflag and hi >> 31 else v))
            t["values"] = vals
            at += 12 * vlen
        elif kind == FUNC_PROTO:
            at += 8 * vlen
        elif kind == VAR:
            at += 4
        elif kind == DATASEC:
            at += 12 * vlen
        elif kind == DECL_TAG:
            at += 4
        elif kind not in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT,
                          TYPE_TAG):
            raise Error(f"unknown BTF kind {kind} (type {len(self.types)})")
        self.types.append(t)
        return at

    def resolve(self, type_id: int) -> dict:
        """The type behind typedefs and qualifiers."""
        t = self.types[type_id]
        for _ in range(len(self.types)):
            if t["kind"] not in QUALIFIERS:
                return t
            t = self.types[t["type"]]
        raise Error(f"type {type_id}: a loop of typedefs and qualifiers")

    def size(self, type_id: int) -> int:
        t = self.resolve(type_id)
        if t["kind"] == ARRAY:
            return t["nelems"] * self.size(t["type"])
        if t["kind"] == PTR:
            return 8
        return t["size"]

    def format(self, type_id: int, where: str) -> str:
        """A member's struct-module format: scalars by size and sign, char
        and byte arrays as bytes ("16s"), other arrays counted ("3I") or,
        of structs, repeated; a nested struct its members' formats."""
        t = self.resolve(type_id)
        kind = t["kind"]
        if kind in (INT, ENUM, ENUM64):
            letters = {1: "b", 2: "h", 4: "i", 8: "q"} if t["signed"] else \
                {1: "B", 2: "H", 4: "I", 8: "Q"}
            return letters[t["size"]] if t["size"] in letters else _unsupported(where)
        if kind == PTR:
            return "Q"
        if kind == ARRAY:
            elem = self.resolve(t["type"])
            n = t["nelems"]
            if elem["kind"] == INT and elem["size"] == 1:
                return f"{n}s"
            inner = self.format(t["type"], where)
            if elem["kind"] in (STRUCT, UNION) or not inner.isalpha() or len(inner) > 1:
                return inner * n
            return inner if n == 1 else f"{n}{inner}"
        if kind == STRUCT:
            members = self.members(t)
            if any(m[2] is None for m in members):
                return _unsupported(where)
            return "".join(fmt for _, _, fmt in _tiling(members, t["size"], where))
        return _unsupported(where)

    def members(self, t: dict, base: int = 0, where: str = "") -> list[tuple]:
        """(name, byte offset, format or None) of each member, those of
        anonymous unions and structs in their place."""
        out = []
        for m in t["members"]:
            here = f"{where or t['name']}.{m['name'] or '(anon)'}"
            off = base + m["bits_offset"] // 8
            if m["bitfield"] or m["bits_offset"] % 8:
                out.append((m["name"], off, None))     # a bitfield: no format
            elif not m["name"]:
                out.extend(self.members(self.resolve(m["type"]), off, here))
            else:
                try:
                    out.append((m["name"], off, self.format(m["type"], here)))
                except Error:
                    out.append((m["name"], off, None))
        return out


def _unsupported(where: str) -> str:
    raise Error(f"{where}: no struct-module format for its type")


def _tiling(members: list[tuple], size: int, where: str) -> list[tuple]:
    """members, checked to cover the struct back to back with no union."""
    at = 0
    for name, off, fmt in members:
        if off != at:
            raise Error(f"{where}: {name} at {off}, not {at} (a union or a gap)")
        at += struct.calcsize("<" + fmt)
    if at != size:
        raise Error(f"{where}: members end at {at}, the struct at {size}")
    return members


def wanted(btf: Btf) -> list[int]:
    """Ids of the types to write out: named uw_*, and the anchors' members'."""
    ids = [i for i, t in enumerate(btf.types)
           if t["kind"] in (STRUCT, UNION, ENUM, ENUM64) and t["name"].startswith("uw_")]
    index = {id(t): i for i, t in enumerate(btf.types)}
    for i in list(ids):
        if btf.types[i]["name"] in ANCHORS:
            ids += [index[id(btf.resolve(m["type"]))] for m in btf.types[i]["members"]]
    return sorted(set(ids), key=lambda i: btf.types[i]["name"])


def generate(elf: bytes, source: str) -> str:
    btf = Btf(btf_section(elf))
    structs, enums, consts = [], [], {}
    for i in wanted(btf):
        t = btf.types[i]
        if t["kind"] in (ENUM, ENUM64):
            enums.append(f"    {t['name']!r}: {{\n" + "".join(
                f"        {n!r}: {v},\n" for n, v in t["values"]) + "    },\n")
            for n, v in t["values"]:
                if n.startswith("UW_"):
                    if consts.setdefault(n[3:], v) != v:
                        raise Error(f"{n}: two values under one name")
        elif t["kind"] == STRUCT:
            rows = "".join(f"        ({n!r}, {off}, {fmt!r}),\n"
                           for n, off, fmt in btf.members(t))
            structs.append(f"    {t['name']!r}: ({t['size']}, (\n{rows}    )),\n")
    return "".join([
        f'"""The ABI as the BTF of {source} has it: written by bpf/gen_abi.py at\n',
        'build time from bpf/uringwatch.h, the one definition. Do not edit."""\n\n',
        "# struct name: (size, ((member, byte offset, struct format or None), ...))\n",
        "STRUCTS = {\n", *structs, "}\n\n",
        "# enum name: {enumerator: value}\n",
        "ENUMS = {\n", *enums, "}\n\n",
        "# every UW_ enumerator, without its prefix\n",
        *(f"{n} = {v}\n" for n, v in sorted(consts.items())),
    ])


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: gen_abi.py OBJECT OUTPUT", file=sys.stderr)
        return 2
    obj, out = argv[1], argv[2]
    try:
        with open(obj, "rb") as f:
            text = generate(f.read(), obj.rsplit("/", 1)[-1])
    except (OSError, Error) as e:
        print(f"gen_abi.py: {obj}: {e}", file=sys.stderr)
        return 1
    except (struct.error, IndexError, ValueError, KeyError, RecursionError) as e:
        print(f"gen_abi.py: {obj}: malformed BTF ({e})", file=sys.stderr)
        return 1
    if out == "-":
        sys.stdout.write(text)
    else:
        with open(out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
