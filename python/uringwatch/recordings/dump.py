"""The dump file: raw ring-buffer records as they came off the ring, framed
so damage stays local. Layout in docs/DUMP_FORMAT.md.

    header:  b"UWDUMP\\0\\0" | u16 format | u16 0 | u32 n | n bytes JSON | check
    frame:   u32 FRAME_MAGIC | u8 kind | u8 0 | u16 0 | u32 n | n bytes | check

The header's check covers everything before it; a frame's covers
kind..payload. The check is a u64 XXH3-64 from format 3 on (about 50 GB/s
here, against zlib CRC-32's 4), a u32 CRC-32 before. A RING frame holds
many records as the ring buffer laid them out (each behind its 8-byte ring
header), so a recorder copies a batch of the ring in one frame and a reader
checks one sum per batch, not per record. From format 3 a RING frame's
payload starts with the batch's index, u32 n and n u32 entry offsets (the
recorder's walk found them already), so a reader takes the entries from
it in C instead of following the length words one by one.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import zlib
from typing import IO, Any, Callable, Iterator, NamedTuple

import msgspec
import xxhash
from msgspec import UNSET, UnsetType

from ..record import layout, reports, ringscan
# `uringwatch replay`'s exit code per kind of problem, still read here as dump.EXIT_*
from ..exitcodes import (EXIT_DAMAGED, EXIT_NEWER_FORMAT, EXIT_NOT_A_DUMP,  # noqa: F401
                         EXIT_TRUNCATED, EXIT_UNKNOWN_ABI, EXIT_UNKNOWN_FRAME)

MAGIC = b"UWDUMP\0\0"
FORMAT_VERSION = 3        # 2: RING frames; 3: XXH3-64 checks (older readers refuse both)
FRAME_MAGIC = 0x52465755          # "UWFR" little-endian
_HEAD = struct.Struct("<8sHHI")
_FRAME = struct.Struct("<IBBHI")
_MARK = struct.Struct("<I")
MAX_FRAME = 1 << 20               # far above the largest record (~25 KiB)


class Check(NamedTuple):
    """A format version's checksum: the trailer it is stored as, and the
    function of the bytes it covers."""
    trailer: struct.Struct
    of: Callable[[Any], int]


CRC32 = Check(struct.Struct("<I"), zlib.crc32)                      # formats 1 and 2
XXH3 = Check(struct.Struct("<Q"), xxhash.xxh3_64_intdigest)         # format 3


def check_of(version: int) -> Check:
    return XXH3 if version >= 3 else CRC32


def sealed(data: bytes, version: int = FORMAT_VERSION) -> bytes:
    """The trailer of `data` (a header, or a frame's kind..payload) in a
    file of that format version."""
    check = check_of(version)
    return check.trailer.pack(check.of(data))


# frame kinds
RECORD = 1      # one raw ring-buffer record
STATS = 2       # JSON Counters: the tracer's counters so far
CONTEXT = 3     # JSON Context: a cgroup's path and container id
END = 4         # JSON Counters: the final ones; a clean close
RING = 5        # raw ring-buffer bytes: records, each behind its 8-byte ring header


class DumpError(ValueError):
    """A problem in a dump file, at a byte offset; `code` is the exit code."""

    def __init__(self, path: str, offset: int, code: int, what: str):
        self.path, self.offset, self.code = path, offset, code
        super().__init__(f"{path}: byte {offset}: {what}")


# -- the JSON in a dump: the header's metadata and the frames that hold JSON

class Meta(msgspec.Struct, frozen=True):
    """The header: what a reader needs to make sense of the records, and
    provenance. Every dump written so far has every field; file_index has a
    default because metadata() knows nothing of rotation (the recorder sets
    it per file)."""
    record_abi: int
    object_sha256: str
    kernel: str
    hostname: str
    boot_to_wall_ns: int
    options: dict[str, Any]
    filters: dict[str, Any]
    features: dict[str, Any]
    run_id: str
    created_ns: int
    file_index: int = 0


class Context(msgspec.Struct, frozen=True, gc=False):
    """A CONTEXT frame: where a cgroup's records came from."""
    cgroup_id: int
    path: str | None
    container_id: str | None


def _counter_fields(names) -> list[tuple]:
    # UNSET, not 0: older tracers counted fewer things, and a reader shows
    # only the counters a file holds
    return [(n, int | UnsetType, UNSET) for n in sorted(names)]


# the counters by name, as tracer.stats() has them (reports.Stats), with
# "processes" and "aggregates" (a test says so)
PROCESS_COUNTS = reports.COUNTS
COUNTS = (*layout.COUNTERS, *reports.USER_SPACE)
ProcessDrops = msgspec.defstruct(
    "ProcessDrops", [("pid", int), ("comm", str), *_counter_fields(PROCESS_COUNTS)],
    module=__name__, frozen=True, gc=False)
AggregateDrops = msgspec.defstruct(
    "AggregateDrops", [("uid", int), ("cgroup_id", int),
                       *_counter_fields(("ended", *PROCESS_COUNTS))],
    module=__name__, frozen=True, gc=False)
Counters = msgspec.defstruct(
    "Counters", [*_counter_fields(COUNTS),
                 ("processes", list[ProcessDrops] | UnsetType, UNSET),
                 ("aggregates", list[AggregateDrops] | UnsetType, UNSET)],
    module=__name__, frozen=True)


def counts(s, names) -> dict[str, int]:
    """The counters among `names` that `s` (Counters, ProcessDrops) holds,
    in name order (the order replay has always shown them in)."""
    return {n: v for n in sorted(names) if (v := getattr(s, n)) is not UNSET}


# sorted keys, as files have always had them
_ENCODER = msgspec.json.Encoder(order="sorted")
_META = msgspec.json.Decoder(Meta)
_COUNTERS = msgspec.json.Decoder(Counters)
JSON_FRAMES = {CONTEXT: ("CONTEXT", msgspec.json.Decoder(Context)),
               STATS: ("STATS", _COUNTERS), END: ("END", _COUNTERS)}


def _decoded(decoder, data, path: str, offset: int, what: str):
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as e:     # JSON, but not of this shape
        problem = f"{what} is malformed: {e}"
    except msgspec.DecodeError:
        problem = f"{what} is not JSON"
    except RecursionError:      # what msgspec raises past its depth limit
        problem = f"{what} nests too deeply"
    raise DumpError(path, offset, EXIT_DAMAGED, problem)


class Frame(NamedTuple):
    kind: int
    payload: memoryview    # a slice of the file's mapping: no copy (a RING frame's ring bytes)
    offset: int
    index: memoryview | None = None     # a format 3 RING frame's entry offsets (u32s)
    end: int = 0                        # the offset past its check


_COUNT = struct.Struct("<I")


def _frame(kind: int, payload: bytes, version: int = FORMAT_VERSION) -> bytes:
    head = _FRAME.pack(FRAME_MAGIC, kind, 0, 0, len(payload))
    return head + payload + sealed(head[4:] + payload, version)


# -- writing -----------------------------------------------------------------

class DumpWriter:
    """Writes one dump file; flushes at least once a second."""

    def __init__(self, out: IO[bytes], meta: Meta):
        self.out = out
        body = _ENCODER.encode(meta)
        head = _HEAD.pack(MAGIC, FORMAT_VERSION, 0, len(body)) + body
        out.write(head + sealed(head))
        self.size = len(head) + XXH3.trailer.size
        self._flushed = time.monotonic()

    def write(self, kind: int, payload: bytes) -> None:
        data = _frame(kind, payload)
        self.out.write(data)
        self.size += len(data)
        if time.monotonic() - self._flushed >= 1.0:
            self.flush()

    def write_ring(self, ring: memoryview, index: bytes | None = None) -> None:
        """Ring-buffer bytes as they are, in one RING frame behind their
        index (ringscan.Entries.index() of the walk that took them; walked
        here if not given): no copy of our own (the buffered file copies
        once)."""
        if index is None:
            index = ringscan.index_of(ring)
        count = _COUNT.pack(len(index) // 4)
        head = _FRAME.pack(FRAME_MAGIC, RING, 0, 0, len(count) + len(index) + len(ring))
        check = xxhash.xxh3_64(head[4:])
        check.update(count)
        check.update(index)
        check.update(ring)
        trailer = XXH3.trailer.pack(check.intdigest())
        for part in (head, count, index, ring, trailer):
            self.out.write(part)
        self.size += len(head) + len(count) + len(index) + len(ring) + len(trailer)
        if time.monotonic() - self._flushed >= 1.0:
            self.flush()

    def write_json(self, kind: int, obj: Context | Counters) -> None:
        self.write(kind, _ENCODER.encode(obj))

    def flush(self) -> None:
        self.out.flush()
        self._flushed = time.monotonic()


def metadata(tracer, object_sha256: str, record_abi: int) -> Meta:
    """The header of a recording by this tracer."""
    return Meta(record_abi=record_abi, object_sha256=object_sha256,
                kernel=os.uname().release, hostname=socket.gethostname(),
                boot_to_wall_ns=tracer.boot_to_wall,
                options=msgspec.to_builtins(tracer.options),
                # deterministic: filter sets as sorted lists
                filters=msgspec.to_builtins(tracer.filters, order="deterministic"),
                features=tracer.features, run_id=tracer.run_id, created_ns=time.time_ns())


def counters(stats) -> Counters:
    """tracer.stats() as a STATS or END frame (from a dict or, with
    from_attributes, any object with those attributes)."""
    return msgspec.convert(stats, Counters, from_attributes=True)


# -- reading -----------------------------------------------------------------

def read_header(data: bytes, path: str) -> tuple[Meta, int]:
    """(metadata, offset of the first frame)."""
    if len(data) < _HEAD.size or data[:8] != MAGIC:
        raise DumpError(path, 0, EXIT_NOT_A_DUMP, "not a uringwatch dump (bad magic)"
                        if data else "empty file")
    _, version, _, n = _HEAD.unpack_from(data)
    if version > FORMAT_VERSION:
        raise DumpError(path, 8, EXIT_NEWER_FORMAT,
                        f"format version {version} is newer than this reader's "
                        f"{FORMAT_VERSION}: upgrade uringwatch")
    end = _HEAD.size + n
    check = check_of(version)
    if len(data) < end + check.trailer.size:
        raise DumpError(path, len(data), EXIT_TRUNCATED, "truncated in the header")
    if check.trailer.unpack_from(data, end)[0] != check.of(data[:end]):
        raise DumpError(path, 0, EXIT_DAMAGED, "header checksum mismatch")
    return (_decoded(_META, data[_HEAD.size:end], path, _HEAD.size, "header"),
            end + check.trailer.size)


def read_json(frame: Frame, path: str) -> Context | Counters:
    """A CONTEXT, STATS or END frame's Struct (DumpError if it is not one)."""
    name, decoder = JSON_FRAMES[frame.kind]
    return _decoded(decoder, frame.payload, path, frame.offset, f"{name} frame")


def frames(data: bytes, start: int, path: str,
           problems: list[DumpError]) -> Iterator[Frame]:
    """Every intact frame from `start` of a file's bytes (`data`, from its
    header on: the header's format version says how frames are checked).
    A damaged one is noted in `problems` and skipped by scanning for the
    next frame marker."""
    find = data.find if hasattr(data, "find") else bytes(data).find
    version = _HEAD.unpack_from(data)[1]
    trailer, check = check_of(version)
    unpack_check, tail = trailer.unpack_from, trailer.size
    data = memoryview(data)
    pos, n = start, len(data)
    magic = _MARK.pack(FRAME_MAGIC)
    while pos < n:
        if n - pos < _FRAME.size + tail:
            problems.append(DumpError(path, pos, EXIT_TRUNCATED, "truncated frame"))
            return
        mark, kind, _, _, length = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + length
        bad = None
        if mark != FRAME_MAGIC:
            bad = "no frame marker"
        elif length > MAX_FRAME:
            bad = f"frame length {length} is implausible"
        elif end + tail > n:
            problems.append(DumpError(path, pos, EXIT_TRUNCATED,
                                      "truncated frame (file cut mid-record)"))
            return
        elif unpack_check(data, end)[0] != check(data[pos + 4:end]):
            bad = "frame checksum mismatch"
        if bad:
            problems.append(DumpError(path, pos, EXIT_DAMAGED, bad))
            nxt = find(magic, pos + 1)
            if nxt < 0:
                return
            pos = nxt
            continue
        if kind == RING and version >= 3:
            frame = _indexed(data, pos, end, end + tail)
            if frame is None:
                problems.append(DumpError(path, pos, EXIT_DAMAGED,
                                          "ring frame's index runs past its end"))
            else:
                yield frame
        else:
            yield Frame(kind, data[pos + _FRAME.size:end], pos, None, end + tail)
        pos = end + tail


def _indexed(data: memoryview, pos: int, end: int, after: int) -> Frame | None:
    """A format 3 RING frame: its index, then its ring bytes (None if the
    index does not fit)."""
    at = pos + _FRAME.size
    if end - at < _COUNT.size:
        return None
    n = _COUNT.unpack_from(data, at)[0]
    ring = at + _COUNT.size + 4 * n
    if ring > end:
        return None
    return Frame(RING, data[ring:end], pos, data[at + _COUNT.size:ring], after)


def ring_records(payload: memoryview, offset: int, path: str,
                 problems: list[DumpError]) -> Iterator[tuple[int, int]]:
    """(offset, size) of each record in a RING frame's payload, skipping
    discarded ones; an entry that does not fit is noted in `problems`
    (`offset` is the frame's, for the message) and ends the frame."""
    pos, n = 0, len(payload)
    while pos < n:
        got = ringscan.walk(payload, pos, n)
        yield from got.spans()
        if got.ended:
            problems.append(DumpError(path, offset, EXIT_DAMAGED, got.ended))
            return
        pos = got.end


def records(frame: Frame, path: str = "",
            problems: list[DumpError] | None = None) -> Iterator[tuple[memoryview, int, int]]:
    """(buffer, offset, size) of each record in a RECORD or RING frame."""
    if frame.kind == RECORD:
        yield frame.payload, 0, len(frame.payload)
    elif frame.kind == RING:
        for off, size in ring_records(frame.payload, frame.offset, path,
                                      [] if problems is None else problems):
            yield frame.payload, off, size
