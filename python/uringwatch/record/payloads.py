"""Per-opcode payloads: what `arg` pointed to, decoded.

Each payload is a msgspec Struct in one tagged union (`type` names the
opcode). Field names follow the kernel's uapi structs. Arrays the tracer
could not read are None and named in `unreadable`; `truncated` says the
capture cap cut an array (the true count is in nr_args or `nr`).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Union

import msgspec

from . import layout


class Region(NamedTuple):
    """One captured user memory region of a record."""
    addr: int
    count: int
    elem: int
    flags: int
    data: bytes

    @property
    def readable(self) -> bool:
        return not self.flags & layout.R_FAULT and (
            len(self.data) > 0 or self.count == 0)


class Base(msgspec.Struct, frozen=True, gc=False, kw_only=True, tag_field="type"):
    truncated: bool = False
    unreadable: list[str] = []


class Iovec(msgspec.Struct, frozen=True, gc=False):
    base: int
    len: int


class Raw(Base, tag="RAW"):
    """Opcodes the decoder does not know: the first bytes at arg, hex."""
    hex: str


class Files(Base, tag="REGISTER_FILES"):
    fds: list[int] | None


class Buffers(Base, tag="REGISTER_BUFFERS"):
    iovecs: list[Iovec] | None


class Eventfd(Base, tag="REGISTER_EVENTFD"):
    eventfd: int | None


class EventfdAsync(Base, tag="REGISTER_EVENTFD_ASYNC"):
    eventfd: int | None


class FilesUpdate(Base, tag="REGISTER_FILES_UPDATE"):
    offset: int | None
    data: int | None
    fds: list[int] | None


class ProbeOp(msgspec.Struct, frozen=True, gc=False):
    op: int
    flags: int


class Probe(Base, tag="REGISTER_PROBE"):
    last_op: int | None
    ops_len: int | None
    ops: list[ProbeOp] | None
    supported: list[int] | None


class Personality(Base, tag="REGISTER_PERSONALITY"):
    id: int | None


class UnregisterPersonality(Base, tag="UNREGISTER_PERSONALITY"):
    id: int


class Restriction(msgspec.Struct, frozen=True, gc=False):
    opcode: int
    kind: str
    value: int
    value_name: str


class Restrictions(Base, tag="REGISTER_RESTRICTIONS"):
    restrictions: list[Restriction] | None


class _RsrcRegister(Base, frozen=True):
    nr: int | None
    flags: int | None
    data: int | None


class Files2(_RsrcRegister, tag="REGISTER_FILES2"):
    fds: list[int] | None
    tags: list[int] | None


class Buffers2(_RsrcRegister, tag="REGISTER_BUFFERS2"):
    iovecs: list[Iovec] | None
    tags: list[int] | None


class _RsrcUpdate2(Base, frozen=True):
    offset: int | None
    nr: int | None
    data: int | None


class FilesUpdate2(_RsrcUpdate2, tag="REGISTER_FILES_UPDATE2"):
    fds: list[int] | None
    tags: list[int] | None


class BuffersUpdate(_RsrcUpdate2, tag="REGISTER_BUFFERS_UPDATE"):
    iovecs: list[Iovec] | None
    tags: list[int] | None


class IowqAff(Base, tag="REGISTER_IOWQ_AFF"):
    cpus: list[int] | None


class IowqMaxWorkers(Base, tag="REGISTER_IOWQ_MAX_WORKERS"):
    values: list[int] | None      # [bounded, unbounded] asked for
    previous: list[int] | None    # what the kernel wrote back


class RingFd(msgspec.Struct, frozen=True, gc=False):
    offset: int
    data: int


class RingFds(Base, tag="REGISTER_RING_FDS"):
    entries: list[RingFd] | None
    assigned: list[int] | None    # offsets the kernel wrote back


class UnregisterRingFds(Base, tag="UNREGISTER_RING_FDS"):
    entries: list[RingFd] | None


class _BufReg(Base, frozen=True):
    ring_addr: int | None
    ring_entries: int | None
    bgid: int | None
    flags: int | None
    min_left: int | None


class PbufRing(_BufReg, tag="REGISTER_PBUF_RING"):
    pass


class UnregisterPbufRing(_BufReg, tag="UNREGISTER_PBUF_RING"):
    pass


class SyncCancel(Base, tag="REGISTER_SYNC_CANCEL"):
    addr: int | None
    fd: int | None
    flags: int | None
    timeout: list[int] | None     # [tv_sec, tv_nsec]
    opcode: int | None


class FileAllocRange(Base, tag="REGISTER_FILE_ALLOC_RANGE"):
    off: int | None
    len: int | None


class PbufStatus(Base, tag="REGISTER_PBUF_STATUS"):
    buf_group: int | None
    head: int | None              # written by the kernel


class _Napi(Base, frozen=True):
    busy_poll_to: int | None
    prefer_busy_poll: int | None
    opcode: int | None
    op_param: int | None


class Napi(_Napi, tag="REGISTER_NAPI"):
    previous: dict[str, int] | None   # settings the kernel wrote back


class UnregisterNapi(_Napi, tag="UNREGISTER_NAPI"):
    pass


class Clock(Base, tag="REGISTER_CLOCK"):
    clockid: int | None


class CloneBuffers(Base, tag="REGISTER_CLONE_BUFFERS"):
    src_fd: int | None
    flags: int | None
    src_off: int | None
    dst_off: int | None
    nr: int | None


class SendMsgRing(Base, tag="REGISTER_SEND_MSG_RING"):
    sqe: dict[str, int] | None


class ZcrxIfq(Base, tag="REGISTER_ZCRX_IFQ"):
    ifq: dict[str, int] | None    # io_uring_zcrx_ifq_reg as passed
    area: dict[str, int] | None   # io_uring_zcrx_area_reg as passed
    region: dict[str, int] | None  # io_uring_region_desc as passed
    result: dict[str, Any] | None  # offsets and zcrx_id written back


class ResizeRings(Base, tag="REGISTER_RESIZE_RINGS"):
    params: dict[str, int] | None
    result: dict[str, Any] | None


class MemRegion(Base, tag="REGISTER_MEM_REGION"):
    region_uptr: int | None
    flags: int | None
    region: dict[str, int] | None
    result: dict[str, int] | None


class QueryEntry(msgspec.Struct, frozen=True, gc=False):
    """One io_uring_query_hdr of the chain, as the kernel left it."""
    query_op: int
    size: int
    result: int
    next_entry: int
    query_data: int
    data: str                     # the first bytes of the answer, hex
    answer: dict[str, int] | None = None  # decoded, for known query_ops


class Query(Base, tag="REGISTER_QUERY"):
    next_entry: int | None
    query_data: int | None
    query_op: int | None
    size: int | None
    result: int | None            # written by the kernel
    entries: list[QueryEntry] | None  # the chain after the call, bounded


class ZcrxCtrl(Base, tag="REGISTER_ZCRX_CTRL"):
    zcrx_id: int | None
    op: int | None
    op_name: str | None
    zcrx_fd: int | None           # written back by EXPORT


class SockFilter(msgspec.Struct, frozen=True, gc=False):
    code: int
    jt: int
    jf: int
    k: int


class BpfFilter(Base, tag="REGISTER_BPF_FILTER"):
    cmd_type: int | None
    cmd_flags: int | None
    opcode: int | None            # the IORING_OP_* filtered
    opcode_name: str | None
    flags: int | None
    filter_len: int | None
    pdu_size: int | None          # as passed
    pdu_size_out: int | None      # written back by the kernel
    filter_ptr: int | None
    insns: list[SockFilter] | None  # the first instructions


def _leaves(cls: type) -> list[type]:
    """Every payload type below cls: the leaves (shared bases are not
    payloads of their own)."""
    subs = cls.__subclasses__()
    return [leaf for sub in subs for leaf in _leaves(sub)] if subs else [cls]


# the tagged union of every payload type
Payload = Union[tuple(_leaves(Base))]
