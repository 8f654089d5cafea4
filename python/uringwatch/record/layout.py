"""Python's view of the record layouts and constants of bpf/uringwatch.h.

The C header is the one definition: the build generates record/_abi.py
from the BTF of the built object (bpf/gen_abi.py), and every struct layout
and enum constant here is read from it. What stays written here is Python's
own: the frozen ABI-1 layout, the Literal of resolve paths and their names,
and what the names of counters and drops are in Python.
"""

from __future__ import annotations

import struct
from typing import Literal, get_args

try:
    from ._abi import ENUMS, STRUCTS
except ModuleNotFoundError as e:
    if e.name != f"{__package__}._abi":
        raise
    raise ImportError(
        "uringwatch.record._abi is missing: it is generated from the BPF object's BTF "
        "when the package is built (bpf/gen_abi.py). Install the package "
        "(pip install --no-deps .) instead of importing python/ from the source tree."
    ) from None
# every UW_ enumerator of uringwatch.h, without its prefix: KIND_CALL, F_PPID,
# HEAD_MAX, ABI_VERSION, COMM_LEN, ...
from ._abi import *  # noqa: E402,F401,F403

# not an enum in the header: an enumerator must fit an int
AGG_OVERFLOW_UID = 0xFFFFFFFF   # (this uid, cgroup 0): where aggregates go past it

# enum uw_resolve: how identities are read, named once here, best first
# (hooks.pick_resolve tries them in this order)
ResolvePath = Literal["btf", "probe_read", "proc", "off"]
RESOLVE_NAMES: dict[int, ResolvePath] = dict(zip((RES_BTF, RES_PROBE_READ, RES_PROC, RES_OFF),
                                                 get_args(ResolvePath)))
RESOLVE_CODES: dict[ResolvePath, int] = {v: k for k, v in RESOLVE_NAMES.items()}


def _names(enum: str, prefix: str, suffix: str = "") -> tuple[str, ...]:
    """An index enum's names in value order, lower case, its _MAX left out."""
    values = sorted((v, k) for k, v in ENUMS[enum].items() if k != prefix + "MAX")
    if [v for v, _ in values] != list(range(len(values))):
        raise ImportError(f"enum {enum} is not numbered 0, 1, ...: {values}")
    return tuple(k.removeprefix(prefix).lower() + suffix for _, k in values)


# enum uw_counter, in order
COUNTERS = _names("uw_counter", "UW_CNT_")
# enum uw_drop, in order: uw_proc.drops[]
DROPS = _names("uw_drop", "UW_DROP_")
# enum uw_rec, in order: uw_proc.rec_drops[], as a process's counts name them
REC_DROPS = _names("uw_rec", "UW_REC_", "s_dropped")


def cstr(raw: bytes) -> str:
    """A char array the kernel filled (comm, hostname): the bytes before its
    first NUL, as text; bytes that are not UTF-8 become U+FFFD."""
    return raw.split(b"\0", 1)[0].decode(errors="replace")


class Layout:
    """A C struct as (member, struct-format) pairs, little-endian, packed
    exactly as the C compiler lays it out (the header pads explicitly)."""

    def __init__(self, name: str, members: list[tuple[str, str]]):
        self.name = name
        self.members = members
        self.offsets: dict[str, int] = {}
        off = 0
        for member, fmt in members:
            self.offsets[member] = off
            off += struct.calcsize("<" + fmt)
        self.size = off
        self.format = "<" + "".join(fmt for _, fmt in members)
        self.struct = struct.Struct(self.format)
        # how many unpacked values each member spans ("3I" spans 3)
        self._spans = [len(struct.unpack("<" + fmt, bytes(struct.calcsize("<" + fmt))))
                       for _, fmt in members]
        self._flat = all(n == 1 for n in self._spans)
        self._names = tuple(m for m, _ in members)

    @classmethod
    def of(cls, name: str, *pick: str, reserved: tuple[tuple[str, str], ...] = (),
           **formats: str) -> Layout:
        """The struct `name` as the object's BTF lays it out: all its
        members, or those picked (one of each anonymous union's), each in
        BTF's format unless `formats` gives another of its size, then the
        `reserved` tail as named here. The members must cover the struct
        back to back, as Layout reads them."""
        if name not in STRUCTS:
            raise ImportError(f"struct {name} is not in the object's BTF as generated: "
                              "a member of an anchor in bpf/btf_anchors.h keeps it there")
        size, btf_members = STRUCTS[name]
        found: dict[str, tuple[int, str | None]] = {}
        for member, off, fmt in btf_members:
            found.setdefault(member, (off, fmt))
        members, end = [], 0
        # all: but a flexible array member at the end, which has no bytes
        for member in pick or [m for m, _, fmt in btf_members if fmt != ""]:
            if member not in found:
                raise ImportError(f"{name}.{member} is not in the object's BTF")
            off, fmt = found[member]
            if fmt is None or off != end:
                raise ImportError(f"{name}.{member} at {off} (format {fmt}): not one member "
                                  f"after another from {end}; pick one of each union")
            if member in formats:
                if struct.calcsize("<" + formats[member]) != struct.calcsize("<" + fmt):
                    raise ImportError(f"{name}.{member}: {formats[member]} is not the size of {fmt}")
                fmt = formats[member]
            members.append((member, fmt))
            end += struct.calcsize("<" + fmt)
        lay = cls(name, members + list(reserved))
        if lay.size != size:
            raise ImportError(f"{name}: Python's view is {lay.size} bytes, BTF's {size}")
        return lay

    def unpack(self, buf, off: int = 0) -> dict:
        """Member name -> value, a tuple for members that span several."""
        values = self.struct.unpack_from(buf, off)
        out, i = {}, 0
        for (member, _), n in zip(self.members, self._spans):
            out[member] = values[i] if n == 1 else values[i:i + n]
            i += n
        return out

    def pack(self, **values) -> bytes:
        """The struct's bytes from member values (tuples for members that
        span several); members not given are zero."""
        flat: list = []
        for (member, fmt), n in zip(self.members, self._spans):
            v = values.get(member)
            if v is None:
                flat.extend(struct.unpack("<" + fmt, bytes(struct.calcsize("<" + fmt))))
            else:
                flat.extend(v if n > 1 else (v,))
        return self.struct.pack(*flat)

    def rows(self, buf):
        """The raw values of every whole element in buf, packed back to back."""
        return self.struct.iter_unpack(buf[:len(buf) - len(buf) % self.size])

    def unpack_all(self, buf) -> list[dict]:
        """unpack() of every whole element in buf, packed back to back."""
        if self._flat:      # the common case, without the per-member loop
            names = self._names
            return [dict(zip(names, v)) for v in self.rows(buf)]
        return [self.unpack(buf, off)
                for off in range(0, len(buf) - self.size + 1, self.size)]


REC_HDR = Layout.of("uw_rec_hdr")
REGION = Layout.of("uw_region")

# ABI 1 (frozen): uw_call before identities. Records of that ABI (older
# dumps) are decoded with this layout; nothing else about them differs.
CALL_ABI1 = Layout("uw_call", [
    ("hdr", "HHI"),
    ("ts_enter", "Q"), ("ts_exit", "Q"), ("arg", "Q"), ("ret", "q"),
    ("cgroup_id", "Q"), ("pid", "I"), ("tid", "I"), ("ppid", "I"),
    ("uid", "I"), ("gid", "I"), ("fd", "i"), ("opcode", "I"),
    ("nr_args", "I"), ("pidns", "I"), ("mntns", "I"), ("flags", "I"),
    ("nchanged", "I"), ("comm", "16s"),
    ("region", "QIIHHI" * 4),
    ("changed", "16I"),
])

NS_CTX = Layout.of("uw_ns_ctx")
RING = Layout.of("uw_ring")
USE_KEY = Layout.of("uw_use_key")
USE = Layout.of("uw_use")
CRED = Layout.of("uw_cred")
IDENT = Layout.of("uw_ident")
# ABI 2's record; in the object, a call's state while in flight
CALL = Layout.of("uw_call")
# ABI 3: the fixed part of a call record; the regions, changed[] and the
# parts it names follow (bpf/uringwatch.h), then the data as in ABI 2
CALL3 = Layout.of("uw_call3")
TASK = Layout.of("uw_task")
RING_REF = Layout.of("uw_ring_ref")
FILE = Layout.of("uw_file")
ACTION = Layout.of("uw_action")
OP_KEY = Layout.of("uw_op_key")
USE_PENDING = Layout.of("uw_use_pending")
OP = Layout.of("uw_op")

# uw_op of a key with no target (UW_OP_SHORT), as every op was recorded
# before targets, and of one with no input (UW_OP_TARGET, every op before
# SPLICE/TEE's input): read with the rest zeroed
OP_SHORT = OP.offsets["file_id"]
OP_TARGET = OP.offsets["file_in_id"]

# uw_action as recorded before `count` and `file` were appended: read
# with them zeroed (one action, no file)
ACTION_SHORT = ACTION.offsets["count"]

ACT_RUN = Layout.of("uw_act_run")
MEM = Layout.of("uw_mem")
REPEAT = Layout.of("uw_repeat")
AGG_KEY = Layout.of("uw_agg_key")
BUCKET = Layout.of("uw_bucket")
PROC = Layout.of("uw_proc")
AGG = Layout.of("uw_agg")
# uw_ring_fd (rings_before.h): read from the iterator's fd at start
RING_FD = Layout.of("uw_ring_fd")
COUNTERS_LAYOUT = Layout.of("uw_counters")
CONFIG = Layout.of("uw_config")

ALL = (REC_HDR, REGION, CALL, CALL3, TASK, RING_REF, NS_CTX, REPEAT, PROC, AGG_KEY, BUCKET,
       AGG, RING, USE_KEY, USE, OP_KEY, USE_PENDING, OP,
       ACTION, ACT_RUN,
       COUNTERS_LAYOUT, CONFIG, CRED, IDENT, FILE, MEM, RING_FD)
