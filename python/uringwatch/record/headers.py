"""Call records' fixed header fields, read where layout.py puts them, so
replay can filter and count records without decoding them and a recorder
can find the cgroup it must describe: one struct.unpack_from per record.

Only records of the current kind and ABI (3: layout.CALL3, the fixed part)
are read this way; any other is left to the full decoder (replay then
filters the decoded event)."""

from __future__ import annotations

import collections
import struct
from operator import itemgetter

from . import layout
from .layout import cstr
from .decode import errno_name
from .filters import header_test
from .opcodes import USE_REGISTERED_RING, name as opcode_name
from .ringscan import DISCARD, SIZE_MASK

_CALL = layout.CALL3
_FORMATS = {**dict(_CALL.members), **dict(layout.REC_HDR.members)}
_HDR_AT = _CALL.offsets["hdr"]


def _where(field: str) -> tuple[int, str]:
    """(offset in the record, struct format) of a call record field."""
    if field in layout.REC_HDR.offsets:
        return _HDR_AT + layout.REC_HDR.offsets[field], _FORMATS[field]
    return _CALL.offsets[field], _FORMATS[field]


def reader(fields: tuple[str, ...], before: str = "") -> struct.Struct:
    """A Struct reading `fields` (in offset order) of a record that starts
    after `before` (a struct format, e.g. the ring header), skipping gaps."""
    fmt, at = "<" + before, struct.calcsize("<" + before)
    base = at
    for off, f in sorted(_where(n) for n in fields):
        off += base
        if off < at:
            raise ValueError(f"overlapping header fields at {off}")
        fmt += f"{off - at}x{f}"
        at = off + struct.calcsize("<" + f)
    return struct.Struct(fmt)


def _ordered(fields) -> tuple[str, ...]:
    return tuple(sorted(fields, key=lambda n: _where(n)[0]))


VALIDITY = ("kind", "abi", "size")
# what a call record is made of: its fixed part and parts, then its data
REGION_LENS = ("data_len", "head_len")
STAT_FIELDS = ("opcode", "pid", "comm", "flags", "ret")
CALL_SIZE = _CALL.size
_VERDICTS_MAX = 1 << 16
_TS_END = 1 << 64              # beyond any boot time in ns
SKIP, KEEP, CARE = 0, 1, 2      # Scan.verdicts(): SKIP false, so compress() keeps KEEP


class Scan:
    """What one replay pass reads of each record: the fields its filters
    and --stats need, and the validity fields, in one Struct (the fewer the
    faster). Header tuples are "ring-shaped": the ring header's length word
    first, then the fields; a record outside a ring gets its size first.

    stats: also read the lengths of the fixed part with its parts and of the
    data, so that a record whose lengths disagree with its size is not
    counted (--stats counts without decoding; a filter pass decodes what it
    keeps, and decode() checks every part then)."""

    def __init__(self, filters=None, since_ns: int | None = None,
                 until_ns: int | None = None, to_wall: int = 0, stats: bool = False):
        want = set(VALIDITY)
        if filters is not None:
            want |= filters.record_fields()
        if since_ns is not None or until_ns is not None:
            want.add("ts_enter")
        if stats:
            want |= {*STAT_FIELDS, *REGION_LENS}
        self.fields = _ordered(want)
        self.at = {name: i + 1 for i, name in enumerate(self.fields)}
        self.ring = reader(self.fields, "I4x")      # at a ring header
        self.record = reader(self.fields)           # at a record's start
        # data_len, then head_len next to it
        self.lens = self.at[REGION_LENS[0]] if stats else None
        if stats and self.at[REGION_LENS[1]] != self.lens + 1:
            raise ImportError("headers.py expects uw_call3's head_len right after data_len")
        self.keep = _keeper(self.at, filters, since_ns, until_ns, to_wall)
        self._verdicts: dict[tuple, int] = {}     # ring-shaped header -> verdict

    def valid(self, h: tuple, size: int) -> bool:
        """Whether a header read at a record of `size` bytes is a call
        record of this ABI whose sizes agree (and, with stats, whose fixed
        part, parts and data fill it exactly)."""
        at = self.at
        lens = self.lens
        return (len(h) > 2 and h[at["kind"]] == layout.KIND_CALL
                and h[at["abi"]] == layout.ABI_VERSION and h[at["size"]] == size >= CALL_SIZE
                and (lens is None or (h[lens] + h[lens + 1] == size
                                      and h[lens + 1] >= CALL_SIZE)))

    def verdicts(self, headers: list) -> list[int]:
        """Each ring-shaped header tuple's verdict, in order: KEEP, SKIP
        (filtered, or a discarded entry) or CARE (for the decoder to judge:
        another kind or ABI, sizes that disagree). Each distinct tuple is
        judged once per pass (a replay sees the same few again and again),
        the rest looked up in C."""
        memo = self._verdicts
        judged = list(map(memo.get, headers))
        if None in judged:
            if len(memo) >= _VERDICTS_MAX:
                memo.clear()
            for i, h in enumerate(headers):
                if judged[i] is None:
                    judged[i] = memo[h] = self._verdict(h)
        return judged

    def _verdict(self, h: tuple) -> int:
        length = h[0]
        if length & DISCARD:
            return SKIP
        if not self.valid(h, length & SIZE_MASK):
            return CARE
        return KEEP if self.keep is None or self.keep(h) else SKIP

    def header_of(self, ev) -> tuple:
        """A header tuple with an event's values where replay.stats_of() looks, for
        records that had to be decoded (other kinds or ABIs)."""
        h = [0] * (len(self.fields) + 1)
        values = {"opcode": ev.opcode | (USE_REGISTERED_RING if ev.registered_ring else 0),
                  "pid": ev.pid, "comm": ev.comm.encode(), "ret": ev.ret,
                  "flags": layout.F_CHANGED if ev.toctou and ev.toctou.changed else 0}
        for name, value in values.items():
            if name in self.at:
                h[self.at[name]] = value
        return tuple(h)

    def counted(self, headers: collections.Counter):
        """What replay's Tally counts of the calls of a Counter of header
        tuples (counted in C): (opcode name, process, TOCTOU changed, error
        or None, how many). Each distinct value is named once, in
        first-seen order, so ties come out in the same order."""
        raw: collections.Counter = collections.Counter()
        pick = itemgetter(*(self.at[f] for f in STAT_FIELDS))
        for h, n in headers.items():
            raw[pick(h)] += n
        for (op, pid, comm, flags, ret), n in raw.items():
            yield (opcode_name(op), f"{pid} {cstr(comm)}", bool(flags & layout.F_CHANGED),
                   errno_name(ret), n)


# what a recorder needs: ring length word, kind and cgroup
PEEK_FIELDS = _ordered(("kind", "abi", "cgroup_id"))
PEEK = reader(PEEK_FIELDS, "I4x")
PEEK_AT = {name: i + 1 for i, name in enumerate(PEEK_FIELDS)}


def _keeper(at: dict, filters, since_ns: int | None, until_ns: int | None, to_wall: int):
    """A predicate on header tuples with the meaning of Filters.matches and
    --since/--until, or None when everything is kept."""
    tests = [] if filters is None else filters.header_tests(at)
    if since_ns is not None or until_ns is not None:
        first = -_TS_END if since_ns is None else since_ns - to_wall
        last = _TS_END if until_ns is None else until_ns - to_wall
        tests.append((at["ts_enter"], range(first, last + 1)))
    return header_test(tests)
