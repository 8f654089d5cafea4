"""Ring-buffer record bytes -> Event, for live tracing and replay alike."""

from __future__ import annotations

import errno
from typing import Callable

from . import arguments, identity, layout, rings
from .events import AnyEvent, Event, Repeat, Toctou
from .opcodes import USE_REGISTERED_RING, name as opcode_name
from .payloads import Region


class RecordError(ValueError):
    """A record that can't be decoded: short, oversized or of unknown kind."""


_HDR = layout.REC_HDR.struct
_NO_REGION = Region(0, 0, 0, 0, b"")    # shared by every unused region
_REPEAT = layout.REPEAT.struct


class _CallShape:
    """Where things sit in one ABI's unpacked uw_call."""

    def __init__(self, lay: layout.Layout):
        self.struct, self.size = lay.struct, lay.size
        self.region_at = len(layout.CALL_ABI1.struct.unpack(bytes(layout.CALL_ABI1.size))) \
            - 6 * layout.NREGION - layout.MAX_CHANGED
        self.region_slots = range(self.region_at, self.region_at + 6 * layout.NREGION, 6)
        self.changed_at = self.region_at + 6 * layout.NREGION
        self.ident_at = self.changed_at + layout.MAX_CHANGED   # ABI 2 on


# Record ABI -> its uw_call. ABI 1 (before identities) differs only in
# having no uw_ident after changed[] and no identities before region 3.
_SHAPES = {1: _CallShape(layout.CALL_ABI1), layout.ABI_VERSION: _CallShape(layout.CALL)}
_IDENT_KEYS = [m for m, _ in layout.IDENT.members if m != "cred"]
_CRED_KEYS = [m for m, _ in layout.CRED.members]
_FILE_SIZE, _MEM_SIZE = layout.FILE.size, layout.MEM.size
_MEM_HEAD = layout.MEM.offsets["file"]

# decode() builds Events positionally: with 28 fields that is ten times
# cheaper than keywords in msgspec. The order is checked here, once.
_EVENT_FIELDS = ("ts", "pid", "tid", "ppid", "uid", "gid", "comm", "cgroup_id", "fd",
                 "opcode", "opcode_name", "registered_ring", "arg", "nr_args", "ret",
                 "duration_ns", "payload", "error", "blind", "pidns", "mntns", "toctou",
                 "cgroup_path", "container_id", "files", "cred", "memory", "resolve",
                 "ring_id", "cred_id")
if Event.__struct_fields__ != _EVENT_FIELDS:
    raise ImportError("decode.py builds Events in an order events.py no longer has")


def errno_name(ret: int) -> str | None:
    return errno.errorcode.get(-ret, f"E{-ret}") if ret < 0 else None


def _identities(v: tuple, at: int, buf, pos: int, end: int, pid: int, proc: bool):
    """(files, cred, memory, resolve, bytes used) from an ABI-2 record's
    uw_ident at v[at:] and the entries at buf[pos:end]."""
    ident = dict(zip(_IDENT_KEYS, v[at:at + len(_IDENT_KEYS)]))
    used = ident["nfiles"] * _FILE_SIZE + ident["nmem"] * _MEM_SIZE
    if pos + used > end:
        raise RecordError("identities run past the record's end")
    cred_vals = v[at + len(_IDENT_KEYS):at + len(_IDENT_KEYS) + len(_CRED_KEYS)]
    path = layout.RESOLVE_NAMES.get(ident["path"], f"path{ident['path']}")
    resolve = identity.Resolve(path, bool(ident["flags"] & layout.I_FILES_TRUNC),
                               bool(ident["flags"] & layout.I_MEMS_TRUNC))
    cred = identity.cred(dict(zip(_CRED_KEYS, cred_vals))) \
        if ident["flags"] & layout.I_CRED else None
    files = [identity.file_identity(f) for f in
             layout.FILE.unpack_all(buf[pos:pos + ident["nfiles"] * _FILE_SIZE])]
    mpos = pos + ident["nfiles"] * _FILE_SIZE
    memory = []
    for i in range(ident["nmem"]):
        at_m = mpos + i * _MEM_SIZE
        memory.append(identity.memory_identity(layout.MEM.unpack(buf, at_m),
                                               layout.FILE.unpack(buf, at_m + _MEM_HEAD)))
    if proc:        # live: look up what the kernel left to user space
        files = [identity.proc_file(pid, f) if f.source == "proc" else f for f in files]
        memory = [identity.proc_memory(pid, m) if m.source == "proc" else m for m in memory]
    if path == "off":
        return None, cred, None, resolve, used
    return files, cred, memory or None, resolve, used


_OTHER_KINDS = {
    layout.KIND_RING: (layout.RING, lambda buf, off, wall, ctx:
                       rings.decode_ring(buf, off, wall, errno_name, ctx)),
    layout.KIND_OP: (layout.OP, rings.decode_op),
}
class Runs:
    """Turns the running totals repeat records carry into each record's
    count, per process. One per tracer run (live, or a recording's run_id):
    a record lost to a full ring or read out of order loses nothing, its
    calls are counted by the next record of the process."""

    def __init__(self):
        self.seen: dict[int, int] = {}      # pid -> calls coalesced, counted so far

    def count(self, pid: int, total: int) -> int:
        last = self.seen.get(pid, 0)
        if total <= last:
            return 0
        self.seen[pid] = total
        return total - last


def decode(buf, off: int, size: int, boot_to_wall: int,
           context: Callable[[int], tuple[str | None, str | None]] | None = None,
           proc: bool = False, runs: Runs | None = None) -> AnyEvent | None:
    """The event in buf[off:off+size]; boot_to_wall turns the kernel's
    CLOCK_BOOTTIME stamps into wall-clock ns; context maps a cgroup id to
    (cgroup path, container id); proc (live only) looks up in /proc the
    identities the kernel left unresolved; runs counts repeat records
    (without it a repeat's count is the process's running total). None for
    a repeat record whose calls an earlier one already counted."""
    if size < _HDR.size:
        raise RecordError(f"record of {size} bytes is shorter than its header")
    kind, abi, rec_size = _HDR.unpack_from(buf, off)
    if kind in _OTHER_KINDS or kind == layout.KIND_REPEAT:
        if abi != layout.ABI_VERSION:
            raise RecordError(f"record ABI {abi}, decoder knows {layout.ABI_VERSION}")
        if kind == layout.KIND_REPEAT:
            return _repeat(buf, off, size, rec_size, boot_to_wall, runs)
        lay, decoder = _OTHER_KINDS[kind]
        if rec_size != size or size != lay.size:
            raise RecordError(f"{lay.name} record of {size} bytes (header says "
                              f"{rec_size}, layout is {lay.size})")
        return decoder(buf, off, boot_to_wall, context)
    if kind != layout.KIND_CALL:
        raise RecordError(f"unknown record kind {kind}")
    return _call(buf, off, size, rec_size, abi, boot_to_wall, context, proc)


def _repeat(buf, off: int, size: int, rec_size: int, boot_to_wall: int,
            runs: Runs | None) -> Repeat | None:
    if rec_size != size or size != _REPEAT.size:
        raise RecordError(f"repeat record of {size} bytes (header says {rec_size}, "
                          f"layout is {_REPEAT.size})")
    (_, _, _, first, last, total, ret, pid, tid, fd, opcode,
     comm) = _REPEAT.unpack_from(buf, off)
    count = runs.count(pid, total) if runs is not None else total
    if not count:
        return None
    return Repeat(first + boot_to_wall, last + boot_to_wall, pid, tid,
                  comm.split(b"\0", 1)[0].decode(errors="replace"), fd,
                  opcode & ~USE_REGISTERED_RING, opcode_name(opcode),
                  bool(opcode & USE_REGISTERED_RING), ret, count, errno_name(ret))


def _call(buf, off: int, size: int, rec_size: int, abi: int, boot_to_wall: int,
          context: Callable[[int], tuple[str | None, str | None]] | None,
          proc: bool) -> Event:
    shape = _SHAPES.get(abi)
    if shape is None:
        raise RecordError(f"record ABI {abi}, decoder knows {sorted(_SHAPES)}")
    if rec_size != size or size < shape.size:
        raise RecordError(f"call record of {size} bytes (header says {rec_size}, "
                          f"fixed part is {shape.size})")
    v = shape.struct.unpack_from(buf, off)
    (_, _, _, ts_enter, ts_exit, arg, ret, cgroup_id, pid, tid, ppid, uid, gid,
     fd, opcode, nr_args, pidns, mntns, flags, nchanged, comm) = v[:shape.region_at]
    ring, cred = v[-2:] if abi >= 2 else (0, 0)
    regions, pos, end = [], off + shape.size, off + size
    ids = (None, None, None, None)
    for i in shape.region_slots:
        if i == shape.region_slots[3] and abi >= 2:   # identities sit before region 3
            if pos > end:
                raise RecordError("regions run past the record's end")
            *ids, used = _identities(v, shape.ident_at, buf, pos, end, pid, proc)
            pos += used
        addr, count, length, elem, rflags, _ = v[i:i + 6]
        if not (addr or count or length or elem or rflags):
            regions.append(_NO_REGION)
            continue
        if pos + length > end:
            raise RecordError(f"region {(i - shape.region_at) // 6} runs past the record's end")
        regions.append(Region(addr, count, elem, rflags, bytes(buf[pos:pos + length])))
        pos += length
    if pos != end:
        raise RecordError(f"{end - pos} stray bytes after the regions")
    call = arguments.Call(opcode & ~USE_REGISTERED_RING, nr_args, ret, tuple(regions),
                          bool(flags & layout.F_RAW))
    changes = list(dict.fromkeys(
        arguments.change_name(call, spot)
        for spot in v[shape.changed_at:shape.changed_at + min(nchanged, layout.MAX_CHANGED)])) \
        if nchanged else []
    has_ns = flags & layout.F_NS
    duration = ts_exit - ts_enter
    return Event(
        ts_enter + boot_to_wall, pid, tid, ppid if flags & layout.F_PPID else None, uid, gid,
        comm.split(b"\0", 1)[0].decode(errors="replace"), cgroup_id, fd, call.opcode,
        opcode_name(opcode), bool(opcode & USE_REGISTERED_RING), arg, nr_args, ret,
        duration, arguments.payload(call), errno_name(ret), fd == -1,
        pidns if has_ns else None, mntns if has_ns else None,
        Toctou(window_ns=duration, changed=bool(flags & layout.F_CHANGED), changes=changes,
               more=bool(flags & layout.F_CHANGED_MORE),
               exit_unreadable=bool(flags & layout.F_EXIT_FAULT),
               checked=not flags & layout.F_UNCOMPARED),
        *(context(cgroup_id) if context else (None, None)), *ids, rings.ring_id(ring),
        rings.ring_id(cred))

# Record ABI -> decoder, for dumps. decode() reads every ABI in _SHAPES
# (ABI 1: layout.CALL_ABI1, no identities), so dumps written before a
# change keep decoding; tests/test_dump.py holds a committed ABI-1 dump to
# that promise.
DECODERS = {abi: decode for abi in _SHAPES}
