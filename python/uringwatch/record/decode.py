"""Ring-buffer record bytes -> Event, for live tracing and replay alike."""

from __future__ import annotations

import errno
import struct
from typing import Callable, Optional

import msgspec

from . import arguments, identity, layout, rings, targets
from .layout import cstr
from .ringscan import is_made
from .events import AnyEvent, Event, Repeat, Toctou
from .opcodes import USE_REGISTERED_RING, name as opcode_name
from .payloads import Payload, Region


class RecordError(ValueError):
    """A record that can't be decoded: short, oversized or of unknown kind."""


_HDR = layout.REC_HDR.struct
_NO_REGION = Region(0, 0, 0, 0, b"")    # shared by every unused region
_REPEAT = layout.REPEAT.struct

# A record's body is everything after its timestamps: records with the
# same body (a process repeating a call) are decoded once, and only the
# timestamps are read per record.
_STAMPS_AT, _BODY_AT = layout.CALL.offsets["ts_enter"], layout.CALL.offsets["arg"]
if (_STAMPS_AT, _BODY_AT) != (layout.REC_HDR.size, layout.REC_HDR.size + 16):
    raise ImportError("decode.py expects uw_call's header, ts_enter, ts_exit, then the rest")
_SEEN_BYTES = 2 << 20                   # bodies kept per ABI (each 408 bytes to ~25 KiB)
_SIZES_MAX = 256                        # record sizes with their last body

# What one unpack of a body reads ("x": skipped, no objects made): the
# header and timestamps are read apart, pads never; changed[] and the saved
# credentials only by the few records that have them. A region comes out
# as its raw bytes: most are unused, which one comparison tells.
_SKIPPED = {"hdr", "ts_enter", "ts_exit", "changed", "pad", "cred"}


def _reading(members: list[tuple[str, str]]) -> str:
    """The struct format of members, those in _SKIPPED skipped."""
    return "".join(f"{struct.calcsize('<' + f)}x" if m in _SKIPPED else f for m, f in members)


_READS = {"region": f"{layout.REGION.size}s" * layout.NREGION,
          "ident": _reading(layout.IDENT.members), "ns": _reading(layout.NS_CTX.members)}
_HEAD_N = [m for m, _ in layout.CALL.members].index("region") - 3   # arg .. comm
_REGION_AT = range(_HEAD_N, _HEAD_N + layout.NREGION)
_IDENT_AT = _REGION_AT.stop             # ABI 2 on: nfiles, nmem, flags, path; ring, cred; ns
_REGION = layout.REGION.struct
_UNUSED = bytes(layout.REGION.size)
_CHANGED = struct.Struct(f"<{layout.MAX_CHANGED}I")
_CRED_IN_IDENT = layout.IDENT.offsets["cred"]


class _CallShape:
    """How one ABI's uw_call is read. packed (ABI 3): records are
    uw_call3 and its parts, each read as the ABI-2 record it stands for
    (_as_abi2), once per distinct body."""

    def __init__(self, lay: layout.Layout, packed: bool = False):
        self.packed = packed
        self.size = layout.CALL3.size if packed else lay.size
        self.struct = struct.Struct("<" + "".join(_READS.get(m) or _reading([(m, f)])
                                                  for m, f in lay.members))
        if self.struct.size != lay.size:
            raise ImportError(f"decode.py reads {lay.name} as {self.struct.size} bytes, "
                              f"layout.py has {lay.size}")
        self.changed_at = lay.offsets["changed"]
        self.idents = "ident" in lay.offsets
        self.cred_at = lay.offsets["ident"] + _CRED_IN_IDENT if self.idents else 0
        self.seen: dict[bytes, _Body] = {}     # record body -> decoded
        self.seen_bytes = 0


_UNPACKED = object()


class _Body:
    """A call record decoded but for its timestamps and what is looked up
    per event (cgroup context, /proc). Records whose bytes past the
    timestamps are the same (a process repeating a call) share it; what it
    holds is immutable, and each event gets its own payload and lists."""
    __slots__ = ("args", "call", "toctou", "cgroup_id", "pid", "files", "memory",
                 "to_proc", "packed", "lines", "followed")

    def __init__(self, args: list, call: arguments.Call, toctou: tuple, files: tuple | None,
                 memory: tuple | None, to_proc: bool):
        self.args = args              # Event's fields, those set per event left None
        self.call = call
        self.toctou = toctou          # changed, changes (a tuple), more, exit_unreadable, checked
        self.cgroup_id, self.pid = args[_AT_CGROUP_ID], args[_AT_PID]
        self.files, self.memory = files, memory
        self.to_proc = to_proc        # entries a live tracer looks up in /proc
        self.packed = _UNPACKED       # the payload's msgpack, made when the body comes back
        # its JSON line's template (context answer, parts, the event it was
        # made from), None until made, False where each event is looked up
        self.lines = False if to_proc else None
        self.followed = args[_AT_NAME] in rings.Ledger.FOLLOWED   # registrations

    def event(self, ts_enter: int, ts_exit: int, boot_to_wall: int, context, proc: bool,
              payload=_UNPACKED) -> Event:
        """The Event of a record with this body and these timestamps."""
        a = self.args.copy()
        duration = a[_AT_DURATION] = ts_exit - ts_enter
        a[_AT_TS] = ts_enter + boot_to_wall
        if payload is not _UNPACKED:
            a[_AT_PAYLOAD] = payload
        elif self.packed.__class__ is bytes:        # payload(), its usual case inline
            a[_AT_PAYLOAD] = _PAYLOADS.decode(self.packed)
        else:
            a[_AT_PAYLOAD] = self.payload()
        changed, changes, more, exit_unreadable, checked = self.toctou
        a[_AT_TOCTOU] = Toctou(duration, changed, list(changes), more, exit_unreadable,
                               checked)
        if context is not None:
            a[_AT_CONTEXT], a[_AT_CONTEXT + 1] = context(self.cgroup_id)
        files, memory = self.files, self.memory
        if proc and self.to_proc:   # live: look up what the kernel left to user space
            pid = self.pid
            files = [identity.proc_file(pid, f) if f.source == "proc" else f for f in files]
            memory = [identity.proc_memory(pid, m) if m.source == "proc" else m
                      for m in memory or ()] or None
        if files is not None:
            a[_AT_FILES] = list(files)
        if memory is not None:
            a[_AT_MEMORY] = list(memory)
        return Event(*a)

    def line_template(self, answer: tuple) -> tuple | None:
        """(answer, the parts of this body's JSON line around ts and
        duration_ns, twice, the event encoded) for events with that context
        answer; None (and no more tries) if the stand-in numbers show up
        elsewhere."""
        ev = self.event(_TS_MARK, _TS_MARK + _DURATION_MARK, 0, lambda _: answer, False)
        line = _JSON.encode(ev) + b"\n"
        ts, duration = b"%d" % _TS_MARK, b"%d" % _DURATION_MARK
        if line.count(ts) != 1 or line.count(duration) != 2:
            self.lines = False
            return None
        head, rest = line.split(ts)
        self.lines = answer, (head, *rest.split(duration)), ev
        return self.lines

    def payload(self) -> Payload | None:
        """A fresh copy of the payload, decoded from its msgpack: a third
        of the cost of decoding it from the regions (REGISTER_FILES of 8:
        5,700 instructions against 15,000), and nothing is shared."""
        if self.packed is _UNPACKED:
            self.packed = _packed(self.call)
        if self.packed is None:
            return arguments.payload(self.call)
        return _PAYLOADS.decode(self.packed)


# Record ABI -> its uw_call. ABI 1 (before identities) differs only in
# having no uw_ident after changed[] and no identities before region 3;
# ABI 3 sends of ABI 2's uw_call only what the call has (uw_call3).
_SHAPES = {1: _CallShape(layout.CALL_ABI1), 2: _CallShape(layout.CALL),
           3: _CallShape(layout.CALL, packed=True)}
if layout.ABI_VERSION != max(_SHAPES):
    raise ImportError("decode.py does not read the record ABI layout.py names")
_FILE_SIZE, _MEM_SIZE = layout.FILE.size, layout.MEM.size
_MEM_HEAD = layout.MEM.offsets["file"]

# decode() builds Events positionally: ten times cheaper than keywords in
# msgspec (measured when Event had 28 fields; it has more now). The order is
# checked here, once.
_EVENT_FIELDS = ("ts", "pid", "tid", "ppid", "uid", "gid", "comm", "cgroup_id", "fd",
                 "opcode", "opcode_name", "registered_ring", "arg", "nr_args", "ret",
                 "duration_ns", "payload", "error", "blind", "pidns", "mntns", "toctou",
                 "cgroup_path", "container_id", "files", "cred", "memory", "resolve",
                 "ring_id", "cred_id", "nspid", "nstid", "hostname", "pbuf_mapped")
if Event.__struct_fields__ != _EVENT_FIELDS:
    raise ImportError("decode.py builds Events in an order events.py no longer has")
(_AT_TS, _AT_PID, _AT_CGROUP_ID, _AT_NAME, _AT_DURATION, _AT_PAYLOAD, _AT_TOCTOU,
 _AT_CONTEXT, _AT_FILES, _AT_MEMORY) = (_EVENT_FIELDS.index(f) for f in (
    "ts", "pid", "cgroup_id", "opcode_name", "duration_ns", "payload", "toctou",
    "cgroup_path", "files", "memory"))
if Toctou.__struct_fields__[0] != "window_ns":
    raise ImportError("decode.py expects Toctou's window_ns (the duration) first")

# JSON Lines without Events: a body's event is encoded once, with stand-in
# numbers for ts and duration_ns (which toctou.window_ns repeats), and each
# later event of that body is those parts with its numbers put in, the
# bytes the encoder would write (the CLI's and replay's --json).
_JSON = msgspec.json.Encoder()
_TS_MARK, _DURATION_MARK = 7355608132950312117, 5839201774603918427
_NO_CONTEXT = (None, None)

_ERRNO_NAMES = {-code: name for code, name in errno.errorcode.items()}


def errno_name(ret: int) -> str | None:
    if ret >= 0:
        return None
    return _ERRNO_NAMES.get(ret) or f"E{-ret}"


# An fd's identity comes back call after call, in bodies that differ
# otherwise: its frozen FileIdentity is kept by its raw entry, and a
# record's entries together by their bytes. Cleared when full, which is
# cheaper than tracking use.
_SEEN_MAX = 4096
_FILES_SEEN: dict[tuple[bytes, bool], tuple[int, identity.FileIdentity]] = {}
_BLOCKS: dict[tuple[int, int, bytes], tuple] = {}  # (nfiles, checks, entries) -> decoded
_BLOCKS_MAX = 256                             # up to ~21 KiB each
_RESOLVES: dict[int, identity.Resolve] = {}


def _file(raw: bytes, checked: bool) -> tuple[int, identity.FileIdentity]:
    """(uw_file.flags, the FileIdentity) of a raw entry."""
    key = (raw, checked)
    got = _FILES_SEEN.get(key)
    if got is None:
        if len(_FILES_SEEN) >= _SEEN_MAX:
            _FILES_SEEN.clear()
        f = layout.FILE.unpack(raw)
        got = _FILES_SEEN[key] = (f["flags"], identity.file_identity(f, checked))
    return got


def _resolve(path_code: int, flags: int) -> identity.Resolve:
    key = path_code << 2 | flags & 3
    resolve = _RESOLVES.get(key)
    if resolve is None:
        resolve = _RESOLVES[key] = identity.Resolve(
            layout.RESOLVE_NAMES.get(path_code, f"path{path_code}"),
            bool(flags & layout.I_FILES_TRUNC), bool(flags & layout.I_MEMS_TRUNC))
    return resolve


def _entries(rec: bytes, pos: int, nfiles: int, used: int, checks: int) -> tuple:
    """(files, memory, whether any is left to /proc) of the uw_file and
    uw_mem entries at rec[pos:pos+used]; `checks`: the uw_ident flags
    saying which were checked at exit. The same entries as a record
    before are not decoded again."""
    key = (nfiles, checks, rec[pos:pos + used])
    got = _BLOCKS.get(key)
    if got is not None:
        return got
    raw = key[2]
    mid = nfiles * _FILE_SIZE
    files = identity.pair_raced([_file(raw[p:p + _FILE_SIZE], bool(checks & layout.I_CHECKED))
                                 for p in range(0, mid, _FILE_SIZE)])
    memory = tuple(identity.memory_identity(layout.MEM.unpack(raw, at),
                                            layout.FILE.unpack(raw, at + _MEM_HEAD),
                                            bool(checks & layout.I_MEM_CHECKED))
                   for at in range(mid, used, _MEM_SIZE))
    to_proc = any(e.source == "proc" for e in files + memory)
    if len(_BLOCKS) >= _BLOCKS_MAX:
        _BLOCKS.clear()
    got = _BLOCKS[key] = (files, memory, to_proc)
    return got


def _identities(rec: bytes, ident: tuple, shape: _CallShape, pos: int) -> tuple:
    """(files, cred, memory, resolve, whether any entry is left to /proc,
    bytes used) from an ABI-2 record's uw_ident (its first values,
    unpacked) and the entries at rec[pos:]."""
    nfiles, nmem, flags, path_code = ident
    used = nfiles * _FILE_SIZE + nmem * _MEM_SIZE
    if pos + used > len(rec):
        raise RecordError("identities run past the record's end")
    resolve = _resolve(path_code, flags)
    cred = None
    if flags & layout.I_CRED:
        cred = identity.cred(layout.CRED.unpack(rec, shape.cred_at))
    if resolve.path == "off":
        return None, cred, None, resolve, False, used
    files, memory, to_proc = _entries(rec, pos, nfiles, used,
                                      flags & (layout.I_CHECKED | layout.I_MEM_CHECKED))
    return files, cred, memory or None, resolve, to_proc, used


_OTHER_KINDS = {
    layout.KIND_RING: (layout.RING, lambda buf, off, wall, ctx:
                       rings.decode_ring(buf, off, wall, errno_name, ctx)),
    layout.KIND_OP: (layout.OP, rings.decode_op),
    layout.KIND_ACTION: (layout.ACTION, lambda buf, off, wall, ctx:
                         targets.decode_action(buf, off, wall, errno_name, ctx)),
    layout.KIND_RING_BEFORE: (None, None),      # JSON after its header: _ring_before
}


class Runs:
    """Turns the running totals repeat records carry into each record's
    count, per process. One per tracer run (live, or a recording's run_id):
    a record lost to a full ring or read out of order loses nothing, its
    calls are counted by the next record of the process. A process's last
    record (KIND_REPEAT_END, sent as it ended) ends its total: a process
    that reuses the pid starts from 0."""

    def __init__(self):
        self.seen: dict[int, int] = {}      # pid -> calls coalesced, counted so far
        self.events = 0                     # records that counted calls (Repeat events)

    def count(self, pid: int, total: int) -> int:
        last = self.seen.get(pid, 0)
        if total <= last:
            return 0
        self.seen[pid] = total
        self.events += 1
        return total - last

    def end(self, pid: int, total: int) -> int:
        """count() of a process's last record; its total restarts."""
        n = self.count(pid, total)
        self.seen.pop(pid, None)
        return n


def decode(buf, off: int, size: int, boot_to_wall: int,
           context: Callable[[int], tuple[str | None, str | None]] | None = None,
           proc: bool = False, runs: Runs | None = None) -> AnyEvent | None:
    """The event in buf[off:off+size]; boot_to_wall turns the kernel's
    CLOCK_BOOTTIME stamps into wall-clock ns; context maps a cgroup id to
    (cgroup path, container id); proc (live only) looks up in /proc the
    identities the kernel left unresolved; runs counts repeat records
    (without it a repeat's count is the process's running total). None for
    a repeat record whose calls an earlier one already counted."""
    got = _record(buf, off, size, boot_to_wall, context, runs)
    if got.__class__ is tuple:
        b, ts_enter, ts_exit, payload = got
        return b.event(ts_enter, ts_exit, boot_to_wall, context, proc, payload)
    return got


def decode_many(buf, spans, boot_to_wall: int,
                context: Callable[[int], tuple[str | None, str | None]] | None = None,
                proc: bool = False, runs: Runs | None = None, lines: bool = False,
                follow: Callable[[AnyEvent], AnyEvent] | None = None) -> tuple[list, list]:
    """decode() of each (offset, size) in spans, in order: (the events,
    the RecordErrors of the records that could not be decoded).

    lines: an event of a body seen before whose JSON line can be made from
    the body's template comes as that line (bytes, newline included);
    output.Writer takes both. follow (a rings.Ledger's feed): called in
    order with each event it follows (registrations and operations; for a
    line, its template's event), and what it returns is kept.

    The test for the record before of the same size is written out here
    (_record() makes it for decode()): most records pass it, with no call
    made."""
    out, errors, last_of = [], [], _LAST.get
    for off, size in spans:
        last = last_of(size)
        if last is not None:
            read, hdr, body, b = last
            h, ts_enter, ts_exit, bd = read.unpack_from(buf, off)
            if bd != body or h != hdr:
                last = None
        if last is None:
            try:
                got = _unlike_last(buf, off, size, boot_to_wall, context, runs)
            except RecordError as e:
                errors.append(e)
                continue
            if got.__class__ is not tuple:      # another kind: its event, or None
                if got is not None:
                    out.append(got if follow is None else follow(got))
                continue
            b, ts_enter, ts_exit, payload = got
            if payload is not _UNPACKED:        # a body's first record
                ev = b.event(ts_enter, ts_exit, boot_to_wall, context, proc, payload)
                out.append(follow(ev) if follow is not None and b.followed else ev)
                continue
        if lines and b.lines is not False:
            answer = _NO_CONTEXT if context is None else context(b.cgroup_id)
            t = b.lines
            if t is None or t[0] != answer:
                t = b.line_template(answer)
            if t is not None:
                head, mid, window, tail = t[1]
                duration = ts_exit - ts_enter
                out.append(b"%b%d%b%d%b%d%b" % (head, ts_enter + boot_to_wall, mid, duration,
                                                window, duration, tail))
                if follow is not None and b.followed:
                    follow(t[2])
                continue
        ev = b.event(ts_enter, ts_exit, boot_to_wall, context, proc)
        out.append(follow(ev) if follow is not None and b.followed else ev)
    return out, errors


def _record(buf, off: int, size: int, boot_to_wall: int, context, runs: Runs | None):
    """A call record as (its body decoded, ts_enter, ts_exit, its payload
    if this is the body's first record, else _UNPACKED); any other record
    as its event (None for a repeat already counted)."""
    last = _LAST.get(size)
    if last is not None:        # most records: the call before of this size again
        read, hdr, body, b = last
        h, ts_enter, ts_exit, bd = read.unpack_from(buf, off)
        if bd == body and h == hdr:
            return b, ts_enter, ts_exit, _UNPACKED
    return _unlike_last(buf, off, size, boot_to_wall, context, runs)


def _unlike_last(buf, off: int, size: int, boot_to_wall: int, context, runs: Runs | None):
    """_record() of a record that is not the last call record of its size."""
    if size < _HDR.size:
        raise RecordError(f"record of {size} bytes is shorter than its header")
    kind, abi, rec_size = _HDR.unpack_from(buf, off)
    if kind == layout.KIND_CALL:            # nearly every record
        return _call(buf, off, size, rec_size, abi)
    if kind in _OTHER_KINDS or kind in _REPEAT_KINDS:
        # only call records changed between ABIs; the size checks below
        # hold the others to their one layout
        if abi not in _SHAPES:
            raise RecordError(f"record ABI {abi}, decoder knows {sorted(_SHAPES)}")
        if kind == layout.KIND_RING_BEFORE:
            if rec_size != size:
                raise RecordError(f"ring_before record of {size} bytes (header says "
                                  f"{rec_size})")
            return _ring_before(buf, off, size)
        if kind in _REPEAT_KINDS:
            return _repeat(buf, off, size, rec_size, boot_to_wall, runs,
                           kind == layout.KIND_REPEAT_END)
        lay, decoder = _OTHER_KINDS[kind]
        if kind == layout.KIND_ACTION and rec_size == size == layout.ACTION_SHORT:
            # an action recorded before `count` and `file` were appended
            buf, off = bytes(buf[off:off + size]) + bytes(lay.size - size), 0
            size = rec_size = lay.size
        elif kind == layout.KIND_OP and rec_size == size and \
                size in (layout.OP_SHORT, layout.OP_TARGET):
            # an op whose key has no target (as every op before targets), or
            # no input (as every op before SPLICE/TEE's)
            buf, off = bytes(buf[off:off + size]) + bytes(lay.size - size), 0
            size = rec_size = lay.size
        if rec_size != size or size != lay.size:
            raise RecordError(f"{lay.name} record of {size} bytes (header says "
                              f"{rec_size}, layout is {lay.size})")
        return decoder(buf, off, boot_to_wall, context)
    raise RecordError(f"unknown record kind {kind}")


_REPEAT_KINDS = (layout.KIND_REPEAT, layout.KIND_REPEAT_END)


def _ring_before(buf, off: int, size: int):
    from .before import decode_record
    try:
        return decode_record(buf, off, size)
    except msgspec.DecodeError as e:
        raise RecordError(f"ring_before record: {e}") from None


def _repeat(buf, off: int, size: int, rec_size: int, boot_to_wall: int,
            runs: Runs | None, last: bool = False) -> Repeat | None:
    if rec_size != size or size != _REPEAT.size:
        raise RecordError(f"repeat record of {size} bytes (header says {rec_size}, "
                          f"layout is {_REPEAT.size})")
    (_, _, _, first, last_ts, total, ret, pid, tid, fd, opcode,
     comm) = _REPEAT.unpack_from(buf, off)
    count = total if runs is None else runs.end(pid, total) if last else \
        runs.count(pid, total)
    if not count:
        return None
    return Repeat(first + boot_to_wall, last_ts + boot_to_wall, pid, tid,
                  cstr(comm), fd,
                  opcode & ~USE_REGISTERED_RING, opcode_name(opcode),
                  bool(opcode & USE_REGISTERED_RING), ret, count, errno_name(ret),
                  is_made(buf, off, size))     # made of the kernel's map at stop


def _call(buf, off: int, size: int, rec_size: int, abi: int) -> tuple:
    """_record() of a call record: its body found, or decoded if new."""
    shape = _SHAPES.get(abi)
    if shape is None:
        raise RecordError(f"record ABI {abi}, decoder knows {sorted(_SHAPES)}")
    if rec_size != size or size < shape.size:
        raise RecordError(f"call record of {size} bytes (header says {rec_size}, "
                          f"fixed part is {shape.size})")
    read = _reader(size)
    hdr, ts_enter, ts_exit, body = read.unpack_from(buf, off)
    payload = _UNPACKED
    b = shape.seen.get(body)
    if b is None:
        # the record as bytes: slicing bytes is cheap, a memoryview not
        rec = bytes(buf[off:off + size])
        b = _body(_SHAPES[2], _as_abi2(rec)) if shape.packed else _body(shape, rec)
        payload = arguments.payload(b.call)     # the first: nothing to copy from
        if shape.seen_bytes > _SEEN_BYTES:
            shape.seen.clear()
            shape.seen_bytes = 0
        shape.seen[body] = b
        shape.seen_bytes += size
    if len(_LAST) >= _SIZES_MAX:
        _LAST.clear()
    _LAST[size] = [read, hdr, body, b]
    return b, ts_enter, ts_exit, payload


# record size -> [its reader, the header and body of the last call record
# of that size, that body decoded]: one unpack reads a record's header, its
# timestamps and a copy of its body (slicing a memoryview, the ring or a
# dump's mapping, then copying took 5,200 instructions, this 2,100), and
# two compares (a memcmp, where hashing a REGISTER_FILES of 8's 2.7 KiB
# body took ~8,000) find the record before again without a dict lookup.
_LAST: dict[int, list] = {}
_READERS: dict[int, struct.Struct] = {}


def _reader(size: int) -> struct.Struct:
    """A record of `size` bytes as (header bytes, ts_enter, ts_exit, body)."""
    read = _READERS.get(size)
    if read is None:
        if len(_READERS) >= _SIZES_MAX:
            _READERS.clear()
        read = _READERS[size] = struct.Struct(
            f"<{_STAMPS_AT}sQQ{size - _BODY_AT}s")
    return read


_CALL3 = layout.CALL3.struct
_ABI2 = layout.CALL
_IDENT_HEAD = struct.Struct("<HHHBx")           # uw_ident before its cred
_CHANGED_AT, _IDENT_AT2 = _ABI2.offsets["changed"], _ABI2.offsets["ident"]
# ABI 3's parts: (flag, size, where ABI 2's uw_call has it)
_PARTS = ((layout.P_TASK, layout.TASK.size, None),
          (layout.P_NS, layout.NS_CTX.size, _ABI2.offsets["ns"]),
          (layout.P_CRED, layout.CRED.size, _IDENT_AT2 + _CRED_IN_IDENT),
          (layout.P_RING, layout.RING_REF.size, _ABI2.offsets["ring"]))
_TASK_AT = (_ABI2.offsets["ppid"], _ABI2.offsets["pidns"], _ABI2.offsets["mntns"])
_PARTS_ALL = sum(flag for flag, _, _ in _PARTS)
_U32 = struct.Struct("<I")


def _as_abi2(rec: bytes) -> bytes:
    """An ABI-3 call record as the ABI-2 record it stands for: what it
    leaves out is zero there, as ABI 2 sent it (flags say it is unset)."""
    size = len(rec)
    (_, _, _, ts_enter, ts_exit, arg, ret, cgroup_id, pid, tid, uid, gid, fd, opcode, nr_args,
     flags, data_len, head_len, regions, nchanged, nfiles, nmem, ident_flags, path, parts,
     comm) = _CALL3.unpack_from(rec)
    if head_len + data_len != size or head_len < _CALL3.size:
        raise RecordError(f"call record of {size} bytes has {head_len} of header and "
                          f"{data_len} of data")
    if regions >> layout.NREGION or parts & ~_PARTS_ALL or nchanged > layout.MAX_CHANGED:
        raise RecordError(f"call record names regions {regions:#x}, parts {parts:#x}, "
                          f"{nchanged} changes")
    out = bytearray(_ABI2.size)
    pos = _CALL3.size
    for i in range(layout.NREGION):
        if regions >> i & 1:
            at = _ABI2.offsets["region"] + i * layout.REGION.size
            out[at:at + layout.REGION.size] = rec[pos:pos + layout.REGION.size]
            pos += layout.REGION.size
    out[_CHANGED_AT:_CHANGED_AT + 4 * nchanged] = rec[pos:pos + 4 * nchanged]
    pos += (nchanged + 1) // 2 * 8
    for flag, n, at in _PARTS:
        if not parts & flag:
            continue
        if pos + n > head_len:
            raise RecordError("the call record's parts run past its header")
        if at is None:      # uw_task: where uw_call has ppid, pidns, mntns
            for i, dst in enumerate(_TASK_AT):
                out[dst:dst + 4] = rec[pos + 4 * i:pos + 4 * i + 4]
        else:
            out[at:at + n] = rec[pos:pos + n]
        pos += n
    if pos != head_len:
        raise RecordError(f"the call record's header is {head_len} bytes, its parts {pos}")
    struct.pack_into("<HHIQQQqQIIIIIiII", out, 0, layout.KIND_CALL, 2, _ABI2.size + data_len,
                     ts_enter, ts_exit, arg, ret, cgroup_id, pid, tid,
                     _U32.unpack_from(out, _TASK_AT[0])[0], uid, gid, fd, opcode, nr_args)
    for name, value in (("flags", flags), ("nchanged", nchanged)):
        _U32.pack_into(out, _ABI2.offsets[name], value)
    out[_ABI2.offsets["comm"]:_ABI2.offsets["comm"] + layout.COMM_LEN] = comm
    _IDENT_HEAD.pack_into(out, _IDENT_AT2, nfiles, nmem, ident_flags, path)
    return bytes(out) + rec[head_len:]


def _body(shape: _CallShape, rec: bytes) -> _Body:
    """What follows the timestamps, decoded."""
    size = len(rec)
    v = shape.struct.unpack_from(rec)
    (arg, ret, cgroup_id, pid, tid, ppid, uid, gid, fd, opcode,
     nr_args, pidns, mntns, flags, nchanged, comm) = v[:_HEAD_N]
    regions, pos = [], shape.size
    ids = (None, None, None, None, False)
    for i in _REGION_AT:
        if i == _REGION_AT[3] and shape.idents:     # identities sit before region 3
            if pos > size:
                raise RecordError("regions run past the record's end")
            *ids, used = _identities(rec, v[_IDENT_AT:_IDENT_AT + 4], shape, pos)
            pos += used
        raw = v[i]
        if raw == _UNUSED:
            regions.append(_NO_REGION)
            continue
        addr, count, length, elem, rflags, _ = _REGION.unpack(raw)
        if pos + length > size:
            raise RecordError(f"region {i - _HEAD_N} runs past the record's end")
        regions.append(Region(addr, count, elem, rflags, rec[pos:pos + length]))
        pos += length
    if pos != size:
        raise RecordError(f"{size - pos} stray bytes after the regions")
    op = opcode & ~USE_REGISTERED_RING
    call = arguments.Call(op, nr_args, ret, tuple(regions), bool(flags & layout.F_RAW))
    files, cred, memory, resolve, to_proc = ids
    # an fd that named another file at exit than at enter, or a buffer whose
    # pinned page is not of the mapping at its address, is a change too
    raced = tuple(f"fd {f.fd} ({f.role})" for f in files or () if f.reason == "raced") + \
        tuple(f"buffer {m.addr:#x} (memory[{i}])" for i, m in enumerate(memory or ())
              if m.reason == "raced")
    toctou = (bool(flags & layout.F_CHANGED) or bool(raced),
              (_changes(call, rec, shape.changed_at, nchanged) if nchanged else ()) + raced,
              bool(flags & layout.F_CHANGED_MORE), bool(flags & layout.F_EXIT_FAULT),
              not flags & layout.F_UNCOMPARED)
    has_ns = flags & layout.F_NS
    rest = (None, None, None, None, None, None)
    if shape.idents:
        ring, cred_id, nspid, nstid, ns_flags, hostname = v[_IDENT_AT + 4:_IDENT_AT + 10]
        rest = (rings.ring_id(ring), rings.ring_id(cred_id),
                *((nspid, nstid) if ns_flags & layout.NS_IDS else (None, None)),
                cstr(hostname) if ns_flags & layout.NS_UTS else None,
                _pbuf_mapped(v[_IDENT_AT + 2]))
    args = [None, pid, tid, ppid if flags & layout.F_PPID else None, uid, gid, cstr(comm),
            cgroup_id, fd, op, opcode_name(opcode), bool(opcode & USE_REGISTERED_RING),
            arg, nr_args, ret, None, None, errno_name(ret), fd == -1,
            pidns if has_ns else None, mntns if has_ns else None, None, None, None,
            None, cred, None, resolve, *rest]
    return _Body(args, call, toctou, files, memory, to_proc)


def _pbuf_mapped(flags: int) -> list[str] | None:
    """Event.pbuf_mapped from uw_ident.flags."""
    if not flags & (layout.I_PBUF_MAPPED | layout.I_PBUF_KEPT):
        return None
    return [name for bit, name in ((layout.I_PBUF_MAPPED, "at_unregister"),
                                   (layout.I_PBUF_KEPT, "after_unregister")) if flags & bit]


_PAYLOAD_ENC = msgspec.msgpack.Encoder()
_PAYLOADS = msgspec.msgpack.Decoder(Optional[Payload])


def _packed(call: arguments.Call) -> bytes | None:
    """The payload's msgpack, if it decodes back to an equal payload
    (otherwise each event's payload is decoded from the regions)."""
    payload = arguments.payload(call)
    packed = _PAYLOAD_ENC.encode(payload)
    try:
        return packed if _PAYLOADS.decode(packed) == payload else None
    except msgspec.ValidationError:
        return None


def _changes(call, rec: bytes, at: int, nchanged: int) -> tuple[str, ...]:
    """The changed fields named, in order, once each."""
    spots = _CHANGED.unpack_from(rec, at)[:min(nchanged, layout.MAX_CHANGED)]
    return tuple(dict.fromkeys(arguments.change_name(call, spot) for spot in spots))


# Record ABI -> decoder, for dumps. decode() reads every ABI in _SHAPES
# (ABI 1: layout.CALL_ABI1, no identities; ABI 3: the parts a call has),
# so dumps written before a change keep decoding; tests/test_dump.py and
# tests/test_decode_corpus.py hold committed dumps of ABI 1, 2 and 3 to
# that promise.
DECODERS = {abi: decode for abi in _SHAPES}
