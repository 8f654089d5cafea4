"""Ring-buffer record bytes -> Event, for live tracing and replay alike."""

from __future__ import annotations

import errno
from typing import Callable

from . import arguments, layout
from .events import Event, Toctou
from .opcodes import USE_REGISTERED_RING, name as opcode_name
from .payloads import Region


class RecordError(ValueError):
    """A record that can't be decoded: short, oversized or of unknown kind."""


_HDR = layout.REC_HDR.struct
_CALL = layout.CALL.struct
_CALL_SIZE = layout.CALL.size
_REGION_AT = layout.CALL.value_index("region")
_REGION_SLOTS = range(_REGION_AT, _REGION_AT + 6 * layout.NREGION, 6)
_CHANGED_AT = layout.CALL.value_index("changed")
_NS_AT = layout.CALL.value_index("ns")     # uw_ns_ctx: nspid, nstid, flags, pad, hostname
_NO_REGION = Region(0, 0, 0, 0, b"")    # shared by every unused region

# decode() builds Events positionally: with 22 fields that is ten times
# cheaper than keywords in msgspec. The order is checked here, once.
_EVENT_FIELDS = ("ts", "pid", "tid", "ppid", "uid", "gid", "comm", "cgroup_id", "fd",
                 "opcode", "opcode_name", "registered_ring", "arg", "nr_args", "ret",
                 "duration_ns", "payload", "error", "blind", "pidns", "mntns", "toctou",
                 "cgroup_path", "container_id", "nspid", "nstid", "hostname")
if Event.__struct_fields__ != _EVENT_FIELDS:
    raise ImportError("decode.py builds Events in an order events.py no longer has")


def errno_name(ret: int) -> str | None:
    return errno.errorcode.get(-ret, f"E{-ret}") if ret < 0 else None


def decode(buf, off: int, size: int, boot_to_wall: int,
           context: Callable[[int], tuple[str | None, str | None]] | None = None) -> Event:
    """The event in buf[off:off+size]; boot_to_wall turns the kernel's
    CLOCK_BOOTTIME stamps into wall-clock ns; context maps a cgroup id to
    (cgroup path, container id)."""
    if size < _HDR.size:
        raise RecordError(f"record of {size} bytes is shorter than its header")
    kind, abi, rec_size = _HDR.unpack_from(buf, off)
    if kind != layout.KIND_CALL:
        raise RecordError(f"unknown record kind {kind}")
    if abi != layout.ABI_VERSION:
        raise RecordError(f"record ABI {abi}, decoder knows {layout.ABI_VERSION}")
    if rec_size != size or size < _CALL_SIZE:
        raise RecordError(f"call record of {size} bytes (header says {rec_size}, "
                          f"fixed part is {_CALL_SIZE})")
    v = _CALL.unpack_from(buf, off)
    (_, _, _, ts_enter, ts_exit, arg, ret, cgroup_id, pid, tid, ppid, uid, gid,
     fd, opcode, nr_args, pidns, mntns, flags, nchanged, comm) = v[:_REGION_AT]
    regions, pos, end = [], off + _CALL_SIZE, off + size
    for i in _REGION_SLOTS:
        addr, count, length, elem, rflags, _ = v[i:i + 6]
        if not (addr or count or length or elem or rflags):
            regions.append(_NO_REGION)
            continue
        if pos + length > end:
            raise RecordError(f"region {(i - _REGION_AT) // 6} runs past the record's end")
        regions.append(Region(addr, count, elem, rflags, bytes(buf[pos:pos + length])))
        pos += length
    if pos != end:
        raise RecordError(f"{end - pos} stray bytes after the regions")
    call = arguments.Call(opcode & ~USE_REGISTERED_RING, nr_args, ret, tuple(regions),
                          bool(flags & layout.F_RAW))
    changes = list(dict.fromkeys(
        arguments.change_name(call, spot)
        for spot in v[_CHANGED_AT:_CHANGED_AT + min(nchanged, layout.MAX_CHANGED)])) \
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
        *(context(cgroup_id) if context else (None, None)), *_ns_ctx(v))


def _ns_ctx(v: tuple) -> tuple:
    """(nspid, nstid, hostname), None where the kernel could not read them."""
    nspid, nstid, flags, _, hostname = v[_NS_AT:_NS_AT + 5]
    ids = (nspid, nstid) if flags & layout.NS_IDS else (None, None)
    return (*ids, hostname.split(b"\0", 1)[0].decode(errors="replace")
            if flags & layout.NS_UTS else None)

# Records of older ABIs, from dumps: decode_abi1.py; replay.DECODERS lists them.
