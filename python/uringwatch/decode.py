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
_NVALS = len(_CALL.unpack(bytes(_CALL_SIZE)))
_REGION_AT = _NVALS - 6 * layout.NREGION - layout.MAX_CHANGED
_REGION_STARTS = tuple(_REGION_AT + 6 * i for i in range(layout.NREGION))


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
    for at in _REGION_STARTS:
        addr, count, length, elem, rflags, _ = v[at:at + 6]
        if pos + length > end:
            raise RecordError(f"region {len(regions)} runs past the record's end")
        regions.append(Region(addr, count, elem, rflags,
                              bytes(buf[pos:pos + length]) if length else b""))
        pos += length
    if pos != off + size:
        raise RecordError(f"{off + size - pos} stray bytes after the regions")
    call = arguments.Call(opcode & ~USE_REGISTERED_RING, nr_args, ret, tuple(regions),
                          bool(flags & layout.F_RAW))
    cgroup_path, container_id = context(cgroup_id) if context else (None, None)
    changes = []
    if nchanged:    # rare: name the changed fields, once each
        first = _NVALS - layout.MAX_CHANGED
        spots = v[first:first + min(nchanged, layout.MAX_CHANGED)]
        changes = list(dict.fromkeys(arguments.change_name(call, s) for s in spots))
    return Event(
        ts=ts_enter + boot_to_wall, pid=pid, tid=tid,
        ppid=ppid if flags & layout.F_PPID else None, uid=uid, gid=gid,
        comm=comm.split(b"\0", 1)[0].decode(errors="replace"), cgroup_id=cgroup_id,
        fd=fd, opcode=call.opcode, opcode_name=opcode_name(opcode),
        registered_ring=bool(opcode & USE_REGISTERED_RING), arg=arg,
        nr_args=nr_args, ret=ret, duration_ns=ts_exit - ts_enter,
        payload=arguments.payload(call), error=errno_name(ret), blind=fd == -1,
        pidns=pidns if flags & layout.F_NS else None,
        mntns=mntns if flags & layout.F_NS else None,
        toctou=Toctou(
            window_ns=ts_exit - ts_enter, changed=bool(flags & layout.F_CHANGED),
            changes=changes,
            more=bool(flags & layout.F_CHANGED_MORE),
            exit_unreadable=bool(flags & layout.F_EXIT_FAULT),
            checked=not flags & layout.F_UNCOMPARED),
        cgroup_path=cgroup_path, container_id=container_id)
