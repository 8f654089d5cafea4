"""Python's view of the record layouts in bpf/uringwatch.h.

The C header is the truth; tests/test_abi.py checks every layout here
(size, member names, offsets) against the BTF of the built object.
"""

from __future__ import annotations

import struct

ABI_VERSION = 1

COMM_LEN = 16
NREGION = 4
MAX_CHANGED = 16

# enum uw_limits: bounds, and the defaults Tracer and the CLI start from
HEAD_MAX = 128
CAP_MAX = 1024
DEFAULT_CAP = 64
DEFAULT_SNAP_BYTES = 64
DEFAULT_RING_BYTES = 8 << 20
DEFAULT_MAX_INFLIGHT = 256
DEFAULT_WAKEUP_BYTES = 256 << 10

KIND_CALL = 1

# uw_call.flags
F_PPID = 1 << 0
F_NS = 1 << 1
F_CHANGED = 1 << 2
F_EXIT_FAULT = 1 << 3
F_CHANGED_MORE = 1 << 4
F_UNCOMPARED = 1 << 5
F_RAW = 1 << 6

# uw_region.flags
R_FAULT = 1 << 0
R_TRUNC = 1 << 1
R_OUT = 1 << 2
R_CHANGED = 1 << 3
R_EXIT_FAULT = 1 << 4

# enum uw_counter, in order
COUNTERS = ("emitted", "ring_full", "no_exit", "no_enter", "inflight_full",
            "read_fault", "filtered")


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

    def unpack(self, buf, off: int = 0) -> dict:
        """Member name -> value, a tuple for members that span several."""
        values = self.struct.unpack_from(buf, off)
        out, i = {}, 0
        for (member, _), n in zip(self.members, self._spans):
            out[member] = values[i] if n == 1 else values[i:i + n]
            i += n
        return out

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


REC_HDR = Layout("uw_rec_hdr", [("kind", "H"), ("abi", "H"), ("size", "I")])

REGION = Layout("uw_region", [
    ("addr", "Q"), ("count", "I"), ("len", "I"), ("elem", "H"),
    ("flags", "H"), ("pad", "I"),
])

CALL = Layout("uw_call", [
    ("hdr", "HHI"),
    ("ts_enter", "Q"), ("ts_exit", "Q"), ("arg", "Q"), ("ret", "q"),
    ("cgroup_id", "Q"), ("pid", "I"), ("tid", "I"), ("ppid", "I"),
    ("uid", "I"), ("gid", "I"), ("fd", "i"), ("opcode", "I"),
    ("nr_args", "I"), ("pidns", "I"), ("mntns", "I"), ("flags", "I"),
    ("nchanged", "I"), ("comm", f"{COMM_LEN}s"),
    ("region", "QIIHHI" * NREGION),
    ("changed", f"{MAX_CHANGED}I"),
])

COUNTERS_LAYOUT = Layout("uw_counters", [("n", f"{len(COUNTERS)}Q")])

CONFIG = Layout("uw_config", [
    ("abi", "I"), ("cap", "I"), ("snap_bytes", "I"), ("use_task_btf", "I"),
    ("wakeup_bytes", "Q"), ("generic", "I"),
    ("targ_pids", "I"), ("targ_cgroups", "I"), ("targ_uid", "I"), ("targ_failed", "I"),
    ("pad", "I"), ("targ_opcodes", "Q"), ("targ_comm", f"{COMM_LEN}s"),
])

ALL = (REC_HDR, REGION, CALL, COUNTERS_LAYOUT, CONFIG)
