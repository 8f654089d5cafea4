"""The one walk over ring-shaped bytes: the live BPF ring buffer's data
pages and a dump's RING frame share the layout (kernel/bpf/ringbuf.c).

Each entry starts with an 8-byte header: u32 length with BUSY and DISCARD
bits, u32 page offset; entries are 8-byte aligned. walk() takes either a
run of entries of one length word (a flood of one call), found in C, or
the entries one by one; a caller walking a whole region calls it again
from the returned end. A recorder stores each batch's entry offsets beside
its bytes (Entries.index()); indexed() takes the entries of such a batch
from those, checking them against the length words in C, with no loop per
entry. Words are read in the host's byte order, the ring's (little-endian:
x86_64 and aarch64).
"""

from __future__ import annotations

import array
import bisect
import functools
import itertools
import operator
import struct
from operator import itemgetter
from typing import Iterator, Sequence

BUSY = 1 << 31
DISCARD = 1 << 30
SIZE_MASK = ~(BUSY | DISCARD)
HDR = struct.Struct("<II")        # u32 length | flags, u32 page offset
_WORD = struct.Struct("<I")
_RUN_MIN = 64           # entries of one length, fewer not worth a run of their own
_FAR = 1 << 62          # no byte budget
_LENGTHS_MAX = 1 << 12  # distinct length words whose steps are kept

# The page offset of an entry made in user space (a repeat run read at stop,
# an operations count), recorded as the ring's are: the kernel's count pages
# from its ring's start, past the position pages, so it never writes 0.
MADE_PG_OFF = 0


def made_entry(raw: bytes) -> bytes:
    """A record made here, behind a ring header of its own, padded to 8."""
    return HDR.pack(len(raw), MADE_PG_OFF) + raw + bytes(-len(raw) % 8)


def is_made(buf, off: int, size: int) -> bool:
    """Whether the record at buf[off:off + size] sits behind made_entry()'s
    header (False for a record with no ring header before it)."""
    return off >= HDR.size and HDR.unpack_from(buf, off - HDR.size) == (size, MADE_PG_OFF)


# why a walk ended before its region's end (the empty string: it did not,
# or stopped at its limit or byte budget)
ENDS_BUSY = "an entry marked busy (still being written)"
ENDS_MID_HEADER = "ring frame ends mid-header"
ENDS_PAST_END = "a record runs past its ring frame's end"

_length = itemgetter(0)


def record_step(length: int) -> tuple[int, int]:
    """(record size, bytes from this ring header to the next) of a length word."""
    size = length & SIZE_MASK
    return size, (size + HDR.size + 7) & ~7


@functools.lru_cache(maxsize=64)
def _run_index(start: int, step: int, n: int) -> bytes:
    """Entries.index() of a run: n offsets `step` apart from `start`."""
    return array.array("I", range(start, start + n * step, step)).tobytes()


@functools.lru_cache(maxsize=64)
def stepped(fields: struct.Struct, step: int) -> struct.Struct:
    """`fields` padded to `step` bytes: iter_unpack over a run of entries."""
    return struct.Struct(fields.format + f"{step - fields.size}x")


class _Steps(dict):
    """length word -> bytes from its ring header to the next, computed once."""

    def __missing__(self, length: int) -> int:
        if len(self) >= _LENGTHS_MAX:     # a damaged file's many lengths
            self.clear()
        step = self[length] = self.step(length)
        return step

    @staticmethod
    def step(length: int) -> int:
        return record_step(length)[1]


_STEPS = _Steps()


class _Chain(_Steps):
    """As _STEPS, but past any u32 for a busy entry (whose successors are
    not there yet)."""

    @staticmethod
    def step(length: int) -> int:
        return 1 << 40 if length & BUSY else record_step(length)[1]


_CHAIN = _Chain()


class Entries:
    """What one walk() took, in order: `rows`, `fields` read at each ring
    header (length word first; None on a run read without fields); `end`,
    the offset past the last entry; `ended`, "" or the ENDS_* that stopped
    the walk early; `run`, a run's one length word (None: walked one by
    one)."""
    __slots__ = ("end", "ended", "run", "_start", "_at", "_rows", "_read")

    def __init__(self, start: int, rows, end: int, ended: str = "",
                 run: int | None = None, at: Sequence[int] | None = None, read=None):
        self.end, self.ended, self.run = end, ended, run
        self._start, self._at, self._rows, self._read = start, at, rows, read

    @property
    def rows(self) -> list[tuple] | None:
        if self._rows is None and self._read is not None:
            self._rows = list(self.each_row())
        return self._rows

    def each_row(self) -> Iterator[tuple]:
        """The rows one by one: a run's read in C as they are asked for
        (counting them keeps none alive)."""
        if self._rows is not None or self._read is None:
            return iter(self.rows or ())
        buf, fields = self._read
        step = record_step(self.run)[1]
        return stepped(fields, step).iter_unpack(memoryview(buf)[self._start:self.end])

    @property
    def at(self) -> Sequence[int]:
        """Each entry's record offset (past its ring header): summed from
        the length words when first asked (a pass that keeps nothing of a
        stretch never asks)."""
        if self._at is None:
            steps = map(_STEPS.__getitem__, map(_length, self.rows))
            self._at = list(itertools.accumulate(steps, initial=self._start + HDR.size))
            self._at.pop()
        return self._at

    def index(self, origin: int) -> bytes:
        """Each entry's ring header offset from `origin` (in buf), as u32s:
        what indexed() takes the entries back from."""
        first = origin + HDR.size
        at = self.at
        if isinstance(at, range):       # a flood's batches: the same few, made once
            return _run_index(at.start - first, at.step, len(at))
        return array.array("I", map(operator.sub, at, itertools.repeat(first))).tobytes()

    def spans(self) -> list[tuple[int, int]]:
        """(offset, size) of each entry's record, discarded ones left out."""
        if self.run is not None:
            return list(zip(self.at, itertools.repeat(self.run, len(self.at))))
        words = list(map(_length, self.rows))
        if max(words, default=0) < DISCARD:     # none discarded (none taken is busy)
            return list(zip(self.at, words))
        return [(a, w) for a, w in zip(self.at, words) if not w & DISCARD]


def walk(buf, pos: int, end: int, fields: struct.Struct | None = None,
         limit: int = _FAR, stop: int = _FAR) -> Entries:
    """The entries of buf[pos:end]: up to `limit` of them, and none that
    ends past `stop` but the first. Stops before an entry still being
    written (BUSY: its successors wait too) or one that does not fit
    (`ended` says which). `fields` (a Struct reading the ring header's
    length word first) is unpacked at each entry, read past a record
    shorter than it while buf holds the bytes (the length word says where
    the record ends); rows are None without fields on a run."""
    run = _run(buf, pos, end, limit, stop)
    if run is not None and (fields is None or fields.size <= run[1]):
        return _run_entries(buf, pos, run, fields)
    return _each(buf, pos, end, fields or HDR, limit, stop)


def _run_entries(buf, pos: int, run: tuple[int, int, int], fields) -> Entries:
    length, step, n = run
    at = range(pos + HDR.size, pos + HDR.size + n * step, step)
    return Entries(pos, None, pos + n * step, "", length, at,
                   None if fields is None else (buf, fields))


def index_of(buf) -> bytes:
    """Entries.index() of all of buf's entries (up to any damage)."""
    parts, pos, end = [], 0, len(buf)
    while pos < end:
        got = walk(buf, pos, end)
        parts.append(got.index(0))
        if got.ended or got.end == pos:
            break
        pos = got.end
    return b"".join(parts)


def indexed(buf, index, fields: struct.Struct | None = None) -> Entries | None:
    """The entries of a whole region (buf, from 0) whose ring header
    offsets `index` (u32s, Entries.index()) gives: their rows read at once
    and the offsets checked in C to follow from the length words, the last
    entry ending (padded) at buf's end, none busy; a frame of one length
    throughout (a flood) is read as walk() reads a run, and its index must
    be the run's. None if they do not (walk() then says what is wrong)."""
    end = len(buf)
    run = _run(buf, 0, end, _FAR, _FAR)
    if run is not None and run[1] * run[2] == end and (fields is None or fields.size <= run[1]):
        got = _run_entries(buf, 0, run, fields)     # one length throughout: read as a run
        return got if got.index(0) == index else None
    at = array.array("I")
    at.frombytes(index)
    if not at or at[0] != 0 or max(at) > end - HDR.size:
        return None
    try:
        rows = _rows(buf, at, fields or HDR)
        # where each entry ends, from its length word: the next one's offset
        ends = array.array("I", itertools.accumulate(map(_CHAIN.__getitem__,
                                                         map(_length, rows))))
    except struct.error:        # offsets out of order: fields read past the end
        return None
    except OverflowError:       # a busy entry's step: the chain is broken
        return None
    if ends[-1] != end or ends.tobytes()[:-4] != index[4:]:
        return None
    return Entries(0, rows, end)


def _run(buf, pos: int, end: int, limit: int, stop: int) -> tuple[int, int, int] | None:
    """(length word, step, count) of the entries from pos that have the
    first one's length word, when at least _RUN_MIN do (fewer cost more
    than walking them): their words are read at that step and compared
    with the first's at once, in C. None otherwise."""
    if end - pos < 2 * HDR.size:
        return None
    first = _WORD.unpack_from(buf, pos)[0]
    step = ((first & SIZE_MASK) + HDR.size + 7) & ~7
    n = min(limit, (min(end, stop) - pos) // step)
    # the last word a run must have: at once, where lengths mix
    if (first & (BUSY | DISCARD) or n < _RUN_MIN
            or _WORD.unpack_from(buf, pos + (_RUN_MIN - 1) * step)[0] != first):
        return None
    with memoryview(buf)[pos:pos + n * step] as view, view.cast("I") as words:
        got = words[::step // 4].tobytes()
    want = _WORD.pack(first) * n
    if got != want:     # the run ends before n: find where, halving
        lo, hi = 1, n - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if got[:4 * mid] == want[:4 * mid]:
                lo = mid
            else:
                hi = mid - 1
        if lo < _RUN_MIN:
            return None
        n = lo
    return first, step, n


def _each(buf, pos: int, end: int, fields: struct.Struct, limit: int, stop: int) -> Entries:
    """walk(), one entry at a time: one unpack per entry (locals: this runs
    per record). A length word with BUSY or DISCARD set reads as a step
    past `bound`, so only such entries and the last take the slow path."""
    unpack, need = fields.unpack_from, fields.size
    rows, start, ended = [], pos, ""
    add_row = rows.append
    bound, full = min(end, stop), len(buf) - need     # full: fields readable up to here
    while pos < end and limit:
        if pos <= full:
            h = unpack(buf, pos)
        elif pos + HDR.size <= end:     # a record shorter than fields, at buf's end
            h = HDR.unpack_from(buf, pos)
        else:
            ended = ENDS_MID_HEADER
            break
        nxt = (pos + h[0] + HDR.size + 7) & ~7
        if nxt > bound:
            length = h[0]
            if length & BUSY:
                ended = ENDS_BUSY
                break
            size = length & SIZE_MASK
            nxt = (pos + size + HDR.size + 7) & ~7
            if nxt > bound:     # past the budget, or the end (or just its padding)
                if nxt > stop and pos > start:
                    break
                if pos + HDR.size + size > end:
                    ended = ENDS_PAST_END
                    break
        add_row(h)
        pos, limit = nxt, limit - 1
    return Entries(start, rows, pos, ended)


def _rows(buf, at: Sequence[int], fields: struct.Struct) -> list[tuple]:
    """`fields` unpacked at each ring header offset, in C; the ring header
    alone where `fields` would read past buf's end (a record shorter than
    them, last in buf)."""
    full = bisect.bisect_right(at, len(buf) - fields.size)
    if full == len(at):
        return list(map(fields.unpack_from, itertools.repeat(buf, full), at))
    rows = list(map(fields.unpack_from, itertools.repeat(buf, full), at[:full]))
    rows += map(HDR.unpack_from, itertools.repeat(buf), at[full:])
    return rows
