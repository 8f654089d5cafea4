"""Turn the captured regions of one call into its opcode's payload.

Region 0 is the struct at `arg` (or its raw first bytes), regions 1 and 2
the arrays it points to, region 3 the kernel's write-back of an in/out
region, as planned in bpf/plans.h.
"""

from __future__ import annotations

import struct
from typing import Callable, NamedTuple

from . import layout, opcodes, payloads as p, uapi
from .layout import Layout
from .opcodes import RESTRICTION_KINDS, name as opcode_name, sqe_flag_names, sqe_op_name
from .payloads import Region


class Call(NamedTuple):
    opcode: int       # without the registered-ring bit
    nr_args: int
    ret: int
    regions: tuple[Region, Region, Region, Region]
    raw: bool         # captured without a plan: region 0 is raw bytes


def _values(r: Region, fmt: str) -> list | None:
    """The region's elements as plain values, None if unreadable."""
    if not r.readable:
        return None
    n = len(r.data) // struct.calcsize(fmt)
    return list(struct.unpack_from(f"<{n}{fmt}", r.data))


def _structs(r: Region, lay: Layout) -> list[dict] | None:
    if not r.readable:
        return None
    return lay.unpack_all(r.data)


def _head(r: Region, lay: Layout) -> dict | None:
    if not r.readable or len(r.data) < lay.size:
        return None
    return lay.unpack(r.data)


def _flat(d: dict | None, skip: tuple[str, ...] = ()) -> dict[str, int] | None:
    """A struct as a JSON object: reserved fields dropped, arrays listed."""
    if d is None:
        return None
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()
            if not k.startswith(("resv", "__resv", "pad", "__pad")) and k not in skip}


def _get(d: dict | None, key: str):
    return None if d is None else d[key]


def _iovecs(r: Region) -> list[p.Iovec] | None:
    v = _values(r, "Q")
    return None if v is None else [p.Iovec(v[i], v[i + 1]) for i in range(0, len(v) - 1, 2)]


def _cpus(r: Region) -> list[int] | None:
    if not r.readable:
        return None
    return [byte * 8 + bit for byte, b in enumerate(r.data) for bit in range(8) if b >> bit & 1]


def _restriction(d: dict) -> p.Restriction:
    kind = d["opcode"]
    value = d["register_op"]
    if kind == 0:
        vname = opcode_name(value)
    elif kind == 1:
        vname = sqe_op_name(value)
    else:
        vname = sqe_flag_names(value)
    kname = RESTRICTION_KINDS[kind] if kind < len(RESTRICTION_KINDS) else f"UNKNOWN_{kind}"
    return p.Restriction(opcode=kind, kind=kname, value=value, value_name=vname)


def _probe(c: Call) -> dict:
    h = _head(c.regions[0], uapi.PROBE)
    r = c.regions[1]
    # up to 256 ops a call: tuples (op, resv, flags, resv2) rather than dicts
    ops = [p.ProbeOp(op, flags) for op, _, flags, _ in uapi.PROBE_OP.rows(r.data)] \
        if r.readable else None
    return dict(
        last_op=_get(h, "last_op"), ops_len=_get(h, "ops_len"), ops=ops,
        supported=None if ops is None else [o.op for o in ops if o.flags & 1])


def _fds(r: Region) -> list[int] | None:
    return _values(r, "i")


def _tags(r: Region) -> list[int] | None:
    return None if not r.addr else _values(r, "Q")


def _rsrc(lay: Layout, keys: tuple[str, ...], elems: str, decode):
    """FILES2/BUFFERS2 and their _UPDATE2 forms: a head, data[] and tags[]."""
    def fields(c: Call) -> dict:
        h = _head(c.regions[0], lay)
        return {**{k: _get(h, k) for k in keys}, elems: decode(c.regions[1]),
                "tags": _tags(c.regions[2])}
    return fields


def _head_fields(lay: Layout, keys: tuple[str, ...], **extra):
    """Fields of the struct at arg, plus computed ones."""
    def fields(c: Call) -> dict:
        h = _head(c.regions[0], lay)
        return {**{k: _get(h, k) for k in keys}, **{k: f(c, h) for k, f in extra.items()}}
    return fields


def _ring_fds(r: Region) -> list[p.RingFd] | None:
    entries = _structs(r, uapi.RSRC_UPDATE)
    return None if entries is None else [p.RingFd(e["offset"], e["data"]) for e in entries]


def _exit(c: Call, lay: Layout) -> dict | None:
    """The kernel's write-back of an in/out struct."""
    return _head(c.regions[3], lay)


def _first_int(c: Call) -> int | None:
    v = _values(c.regions[0], "i")
    return v[0] if v else None


_ZCRX_OPS = {0: "FLUSH_RQ", 1: "EXPORT"}
_QUERY_ENTRY = uapi.QUERY_HDR.size + layout.QUERY_DATA      # UW_QUERY_ENTRY in bpf/plans.h


def _query_chain(r: Region) -> list[p.QueryEntry] | None:
    """The chain walked at exit: header + first 48 bytes of data each."""
    if r.flags & layout.R_FAULT and not r.data:
        return None
    out = []
    for i in range(min(r.count, len(r.data) // _QUERY_ENTRY)):
        at = i * _QUERY_ENTRY
        h = uapi.QUERY_HDR.unpack(r.data, at)
        data = r.data[at + uapi.QUERY_HDR.size:at + _QUERY_ENTRY][:h["size"]]
        answer = None
        if h["query_op"] == 0 and h["result"] == 0 and len(data) >= uapi.QUERY_OPCODE.size:
            answer = _flat(uapi.QUERY_OPCODE.unpack(data))
        out.append(p.QueryEntry(h["query_op"], h["size"], h["result"], h["next_entry"],
                                h["query_data"], data.hex(), answer))
    return out


def _bpf_filter(c: Call) -> dict:
    h = _head(c.regions[0], uapi.BPF)
    f = None if h is None else uapi.BPF_FILTER.unpack(c.regions[0].data, 8)
    out = _exit(c, uapi.BPF)
    insns = _structs(c.regions[1], uapi.SOCK_FILTER)
    return dict(
        cmd_type=_get(h, "cmd_type"), cmd_flags=_get(h, "cmd_flags"),
        opcode=_get(f, "opcode"),
        opcode_name=None if f is None else sqe_op_name(f["opcode"]),
        flags=_get(f, "flags"), filter_len=_get(f, "filter_len"),
        pdu_size=_get(f, "pdu_size"),
        pdu_size_out=None if out is None else uapi.BPF_FILTER.unpack(
            c.regions[3].data, 8)["pdu_size"],
        filter_ptr=_get(f, "filter_ptr"),
        insns=None if insns is None else [p.SockFilter(**i) for i in insns])


class Spec(NamedTuple):
    cls: type | None                          # None: the opcode takes no argument
    fields: Callable[[Call], dict] = lambda c: {}
    head: Layout | str | None = None          # region 0, for naming changed fields
    arrays: tuple[str, str] = ("", "")        # names of regions 1 and 2


_RSRC_REG_KEYS = ("nr", "flags", "data")
_RSRC_UPD_KEYS = ("offset", "nr", "data")
_BUF_REG_KEYS = ("ring_addr", "ring_entries", "bgid", "flags", "min_left")
_NAPI_KEYS = ("busy_poll_to", "prefer_busy_poll", "opcode", "op_param")

def _op(name: str) -> int:
    return opcodes.BY_NAME[name]


# opcode -> how its payload is decoded; each payload type's tag is its
# opcode's name (tests/test_decode.py checks)
SPECS: dict[int, Spec] = {
    _op("REGISTER_BUFFERS"): Spec(p.Buffers, lambda c: dict(iovecs=_iovecs(c.regions[1])), None, ("iovecs", "")),
    _op("UNREGISTER_BUFFERS"): Spec(None),
    _op("REGISTER_FILES"): Spec(p.Files, lambda c: dict(fds=_fds(c.regions[1])), None, ("fds", "")),
    _op("UNREGISTER_FILES"): Spec(None),
    _op("REGISTER_EVENTFD"): Spec(p.Eventfd, lambda c: dict(eventfd=_first_int(c)), "eventfd"),
    _op("UNREGISTER_EVENTFD"): Spec(None),
    _op("REGISTER_FILES_UPDATE"): Spec(p.FilesUpdate, _head_fields(uapi.RSRC_UPDATE, ("offset", "data"),
                                        fds=lambda c, h: _fds(c.regions[1])),
            uapi.RSRC_UPDATE, ("fds", "")),
    _op("REGISTER_EVENTFD_ASYNC"): Spec(p.EventfdAsync, lambda c: dict(eventfd=_first_int(c)), "eventfd"),
    _op("REGISTER_PROBE"): Spec(p.Probe, _probe, uapi.PROBE, ("ops", "")),
    _op("REGISTER_PERSONALITY"): Spec(p.Personality, lambda c: dict(id=c.ret if c.ret >= 0 else None)),
    _op("UNREGISTER_PERSONALITY"): Spec(p.UnregisterPersonality, lambda c: dict(id=c.nr_args)),
    _op("REGISTER_RESTRICTIONS"): Spec(p.Restrictions, lambda c: dict(restrictions=None if (
        rs := _structs(c.regions[1], uapi.RESTRICTION)) is None
        else [_restriction(d) for d in rs]), None, ("restrictions", "")),
    _op("REGISTER_ENABLE_RINGS"): Spec(None),
    _op("REGISTER_FILES2"): Spec(p.Files2, _rsrc(uapi.RSRC_REGISTER, _RSRC_REG_KEYS, "fds", _fds),
             uapi.RSRC_REGISTER, ("fds", "tags")),
    _op("REGISTER_FILES_UPDATE2"): Spec(p.FilesUpdate2, _rsrc(uapi.RSRC_UPDATE2, _RSRC_UPD_KEYS, "fds", _fds),
             uapi.RSRC_UPDATE2, ("fds", "tags")),
    _op("REGISTER_BUFFERS2"): Spec(p.Buffers2, _rsrc(uapi.RSRC_REGISTER, _RSRC_REG_KEYS, "iovecs", _iovecs),
             uapi.RSRC_REGISTER, ("iovecs", "tags")),
    _op("REGISTER_BUFFERS_UPDATE"): Spec(p.BuffersUpdate, _rsrc(uapi.RSRC_UPDATE2, _RSRC_UPD_KEYS, "iovecs", _iovecs),
             uapi.RSRC_UPDATE2, ("iovecs", "tags")),
    _op("REGISTER_IOWQ_AFF"): Spec(p.IowqAff, lambda c: dict(cpus=_cpus(c.regions[1])), None, ("cpus", "")),
    _op("UNREGISTER_IOWQ_AFF"): Spec(None),
    _op("REGISTER_IOWQ_MAX_WORKERS"): Spec(p.IowqMaxWorkers, lambda c: dict(values=_values(c.regions[0], "I"),
                                              previous=_values(c.regions[3], "I")), "values"),
    _op("REGISTER_RING_FDS"): Spec(p.RingFds, lambda c: dict(
        entries=_ring_fds(c.regions[1]),
        assigned=None if (e := _ring_fds(c.regions[3])) is None else [x.offset for x in e]),
        None, ("entries", "")),
    _op("UNREGISTER_RING_FDS"): Spec(p.UnregisterRingFds, lambda c: dict(entries=_ring_fds(c.regions[1])),
             None, ("entries", "")),
    _op("REGISTER_PBUF_RING"): Spec(p.PbufRing, _head_fields(uapi.BUF_REG, _BUF_REG_KEYS), uapi.BUF_REG),
    _op("UNREGISTER_PBUF_RING"): Spec(p.UnregisterPbufRing, _head_fields(uapi.BUF_REG, _BUF_REG_KEYS), uapi.BUF_REG),
    _op("REGISTER_SYNC_CANCEL"): Spec(p.SyncCancel, _head_fields(
        uapi.SYNC_CANCEL_REG, ("addr", "fd", "flags", "opcode"),
        timeout=lambda c, h: None if h is None else list(h["timeout"])),
        uapi.SYNC_CANCEL_REG),
    _op("REGISTER_FILE_ALLOC_RANGE"): Spec(p.FileAllocRange, _head_fields(uapi.FILE_INDEX_RANGE, ("off", "len")),
             uapi.FILE_INDEX_RANGE),
    _op("REGISTER_PBUF_STATUS"): Spec(p.PbufStatus, _head_fields(
        uapi.BUF_STATUS, ("buf_group",),
        head=lambda c, h: _get(_exit(c, uapi.BUF_STATUS), "head")), uapi.BUF_STATUS),
    _op("REGISTER_NAPI"): Spec(p.Napi, _head_fields(uapi.NAPI, _NAPI_KEYS,
                                  previous=lambda c, h: _flat(_exit(c, uapi.NAPI))),
             uapi.NAPI),
    _op("UNREGISTER_NAPI"): Spec(p.UnregisterNapi, _head_fields(uapi.NAPI, _NAPI_KEYS), uapi.NAPI),
    _op("REGISTER_CLOCK"): Spec(p.Clock, _head_fields(uapi.CLOCK_REGISTER, ("clockid",)), uapi.CLOCK_REGISTER),
    _op("REGISTER_CLONE_BUFFERS"): Spec(p.CloneBuffers, _head_fields(
        uapi.CLONE_BUFFERS, ("src_fd", "flags", "src_off", "dst_off", "nr")),
        uapi.CLONE_BUFFERS),
    _op("REGISTER_SEND_MSG_RING"): Spec(p.SendMsgRing, lambda c: dict(sqe=_flat(_head(c.regions[0], uapi.SQE))),
             uapi.SQE),
    _op("REGISTER_ZCRX_IFQ"): Spec(p.ZcrxIfq, lambda c: dict(
        ifq=_flat(_head(c.regions[0], uapi.ZCRX_IFQ_REG), ("offsets", "zcrx_id")),
        area=_flat(_head(c.regions[1], uapi.ZCRX_AREA_REG)),
        region=_flat(_head(c.regions[2], uapi.REGION_DESC)),
        result=_flat(_pick(_exit(c, uapi.ZCRX_IFQ_REG), ("offsets", "zcrx_id")))),
        uapi.ZCRX_IFQ_REG, ("area", "region")),
    _op("REGISTER_RESIZE_RINGS"): Spec(p.ResizeRings, lambda c: dict(
        params=_flat(_head(c.regions[0], uapi.PARAMS), ("sq_off", "cq_off")),
        result=_flat(_exit(c, uapi.PARAMS))), uapi.PARAMS),
    _op("REGISTER_MEM_REGION"): Spec(p.MemRegion, _head_fields(
        uapi.MEM_REGION_REG, ("region_uptr", "flags"),
        region=lambda c, h: _flat(_head(c.regions[1], uapi.REGION_DESC)),
        result=lambda c, h: _flat(_exit(c, uapi.REGION_DESC))),
        uapi.MEM_REGION_REG, ("region", "")),
    _op("REGISTER_QUERY"): Spec(p.Query, _head_fields(
        uapi.QUERY_HDR, ("next_entry", "query_data", "query_op", "size"),
        result=lambda c, h: _get(_exit(c, uapi.QUERY_HDR), "result"),
        entries=lambda c, h: _query_chain(c.regions[1])),
        uapi.QUERY_HDR, ("entries", "")),
    _op("REGISTER_ZCRX_CTRL"): Spec(p.ZcrxCtrl, _head_fields(
        uapi.ZCRX_CTRL, ("zcrx_id", "op"),
        op_name=lambda c, h: None if h is None else _ZCRX_OPS.get(h["op"], f"UNKNOWN_{h['op']}"),
        zcrx_fd=lambda c, h: None if (x := _exit(c, uapi.ZCRX_CTRL)) is None
        or not h or h["op"] != 1 else x["zc_export"][0]),
        uapi.ZCRX_CTRL),
    _op("REGISTER_BPF_FILTER"): Spec(p.BpfFilter, _bpf_filter, uapi.BPF, ("insns", "")),
}

_NO_SPEC = Spec(None)


def _pick(d: dict | None, keys: tuple[str, ...]) -> dict | None:
    return None if d is None else {k: d[k] for k in keys}


def payload(c: Call) -> p.Base | None:
    """The decoded payload; None for opcodes that take no argument."""
    spec = None if c.raw else SPECS.get(c.opcode)
    if spec is None:
        r = c.regions[0]
        fault = r.flags & layout.R_FAULT    # readable, when there is data
        return p.Raw(hex="" if fault else r.data.hex(),
                     truncated=bool(r.flags & layout.R_TRUNC),
                     unreadable=["arg"] if fault else [])
    if spec.cls is None:
        return None
    r0, r1, r2, _ = c.regions
    flags = r0.flags | r1.flags | r2.flags
    unreadable = []
    if flags & layout.R_FAULT:      # rare: name the faulted regions
        names = ("arg",) + tuple(n or f"region{i + 1}" for i, n in enumerate(spec.arrays))
        unreadable = [names[i] for i, r in enumerate((r0, r1, r2))
                      if r.flags & layout.R_FAULT]
    return spec.cls(**spec.fields(c), truncated=bool(flags & layout.R_TRUNC),
                    unreadable=unreadable)


def change_name(c: Call, spot: int) -> str:
    """Name of a changed spot (region << 24 | byte offset)."""
    region, off = spot >> 24, spot & 0xFFFFFF
    spec = _NO_SPEC if c.raw else SPECS.get(c.opcode, _NO_SPEC)
    if region == 0:
        if isinstance(spec.head, Layout):
            return _member_at(spec.head, off)
        if isinstance(spec.head, str):
            return f"{spec.head}[{off // 4}]"
        return f"arg+{off}"
    name = (spec.arrays[region - 1] if region <= 2 else "") or f"region{region}"
    elem = c.regions[region].elem if region < len(c.regions) else 0
    return f"{name}[{off // elem}]" if elem else f"{name}+{off}"


def _member_at(lay: Layout, off: int) -> str:
    best = lay.members[0][0]
    for member, _ in lay.members:
        if lay.offsets[member] <= off:
            best = member
    return best
