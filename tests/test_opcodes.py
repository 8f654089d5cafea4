"""Every opcode, called for real with known arguments: the decoded payload
must hold exactly what was passed (and what the kernel wrote back)."""

import ctypes
import errno
import mmap
import os
import pathlib
import re

import msgspec
import pytest

import uring
from helpers import REGISTER_OPCODES, needs_opcodes
from uring import register

R_DISABLED = 1 << 6           # IORING_SETUP_R_DISABLED
PBUF_RING_MMAP = 1            # IOU_PBUF_RING_MMAP


def setup_flags(flags: int) -> int:
    params = (ctypes.c_uint32 * 30)()
    params[2] = flags
    fd = uring.syscall(uring.SYS_io_uring_setup, ctypes.c_uint32(8), params)
    assert fd >= 0
    return fd


def test_every_opcode_is_numbered_in_uring_py_and_called_by_a_test():
    """tests/uring.py numbers each opcode of opcodes.NAMES as it does, and a
    test here (or in test_foundation.py) names it."""
    from uringwatch.record import opcodes
    assert {name: getattr(uring, name, None) for name in opcodes.NAMES} == \
        {name: op for op, name in enumerate(opcodes.NAMES)}
    here = pathlib.Path(__file__).parent
    tests = (here / "test_opcodes.py").read_text() + (here / "test_foundation.py").read_text()
    assert [name for name in opcodes.NAMES if not re.search(rf"\b{name}\b", tests)] == []


@needs_opcodes(uring.REGISTER_BUFFERS, uring.UNREGISTER_BUFFERS)
def test_buffers(tracer, ring):
    bufs = [ctypes.create_string_buffer(4096) for _ in range(2)]
    iov = (uring.Iovec * 2)(*[uring.Iovec(ctypes.addressof(b), 4096) for b in bufs])
    assert register(ring, uring.REGISTER_BUFFERS, iov, 2) == 0
    assert register(ring, uring.UNREGISTER_BUFFERS, None, 0) == 0
    reg, unreg = tracer.mine(2)
    assert [(v.base, v.len) for v in reg.payload.iovecs] == \
        [(ctypes.addressof(b), 4096) for b in bufs]
    assert unreg.opcode_name == "UNREGISTER_BUFFERS" and unreg.payload is None


@needs_opcodes(uring.REGISTER_EVENTFD, uring.UNREGISTER_EVENTFD, uring.REGISTER_EVENTFD_ASYNC)
def test_eventfd_and_async(tracer, ring):
    efd = os.eventfd(0)
    assert register(ring, uring.REGISTER_EVENTFD, uring.ints(efd), 1) == 0
    assert register(ring, uring.UNREGISTER_EVENTFD, None, 0) == 0
    assert register(ring, uring.REGISTER_EVENTFD_ASYNC, uring.ints(efd), 1) == 0
    reg, unreg, reg_async = tracer.mine(3)
    assert reg.payload.eventfd == efd and reg_async.payload.eventfd == efd
    tags = [msgspec.to_builtins(e.payload)["type"] for e in (reg, reg_async)]
    assert tags == ["REGISTER_EVENTFD", "REGISTER_EVENTFD_ASYNC"]
    assert unreg.opcode_name == "UNREGISTER_EVENTFD" and unreg.payload is None
    os.close(efd)


@needs_opcodes(uring.REGISTER_FILES, uring.REGISTER_FILES_UPDATE)
def test_files_update_shows_sparse_and_skip(tracer, ring):
    efd = os.eventfd(0)
    assert register(ring, uring.REGISTER_FILES, uring.ints(-1, -1, -1), 3) == 0
    upd = uring.RsrcUpdate(offset=1, data=uring.addr(fds := uring.ints(efd, -2)))
    assert register(ring, uring.REGISTER_FILES_UPDATE, upd, 2) == 2
    reg, update = tracer.mine(2)
    assert reg.payload.fds == [-1, -1, -1]
    p = update.payload
    assert (p.offset, p.data, p.fds) == (1, uring.addr(fds), [efd, -2])
    os.close(efd)


@needs_opcodes(uring.REGISTER_PROBE)
def test_probe_reports_supported_ops(tracer, ring):
    probe = uring.Probe()
    assert register(ring, uring.REGISTER_PROBE, probe, 64) == 0
    p = tracer.one().payload
    assert p.last_op == probe.last_op and p.ops_len == probe.ops_len
    assert len(p.ops) == 64
    assert p.supported == [op for op in range(64) if probe.ops[op] >> 16 & 1]
    assert 0 in p.supported           # IORING_OP_NOP


@needs_opcodes(uring.REGISTER_PERSONALITY, uring.UNREGISTER_PERSONALITY)
def test_personality(tracer, ring):
    pid = register(ring, uring.REGISTER_PERSONALITY, None, 0)
    assert pid > 0
    assert register(ring, uring.UNREGISTER_PERSONALITY, None, pid) == 0
    reg, unreg = tracer.mine(2)
    assert reg.payload.id == pid and unreg.payload.id == pid


@needs_opcodes(uring.REGISTER_RESTRICTIONS, uring.REGISTER_ENABLE_RINGS)
def test_restrictions_named(tracer):
    ring = setup_flags(R_DISABLED)
    rs = (uring.Restriction * 3)(uring.Restriction(opcode=0, value=uring.REGISTER_FILES),
                                 uring.Restriction(opcode=1, value=22),
                                 uring.Restriction(opcode=2, value=0b101))
    assert register(ring, uring.REGISTER_RESTRICTIONS, rs, 3) == 0
    assert register(ring, uring.REGISTER_ENABLE_RINGS, None, 0) == 0
    restr, enable = tracer.mine(2)
    got = [(r.kind, r.value, r.value_name) for r in restr.payload.restrictions]
    assert got == [("REGISTER_OP", 2, "REGISTER_FILES"), ("SQE_OP", 22, "READ"),
                   ("SQE_FLAGS_ALLOWED", 5, "FIXED_FILE|IO_LINK")]
    assert enable.opcode_name == "REGISTER_ENABLE_RINGS"
    os.close(ring)


@needs_opcodes(uring.REGISTER_FILES2, uring.REGISTER_FILES_UPDATE2)
def test_files2_and_update2_with_tags(tracer, ring):
    efd = os.eventfd(0)
    fds, tags = uring.ints(0, 1, -1), (ctypes.c_uint64 * 3)(10, 20, 0)  # no tag on sparse
    reg = uring.RsrcRegister(nr=3, data=uring.addr(fds), tags=uring.addr(tags))
    assert register(ring, uring.REGISTER_FILES2, reg, ctypes.sizeof(reg)) == 0
    ufds, utags = uring.ints(efd, -2), (ctypes.c_uint64 * 2)(7, 0)  # no tag on skip
    upd = uring.RsrcUpdate2(offset=1, data=uring.addr(ufds), tags=uring.addr(utags), nr=2)
    assert register(ring, uring.REGISTER_FILES_UPDATE2, upd, ctypes.sizeof(upd)) == 2
    e_reg, e_upd = tracer.mine(2)
    p = e_reg.payload
    assert (p.nr, p.flags, p.fds, p.tags) == (3, 0, [0, 1, -1], [10, 20, 0])
    q = e_upd.payload
    assert (q.offset, q.nr, q.fds, q.tags) == (1, 2, [efd, -2], [7, 0])
    os.close(efd)


@needs_opcodes(uring.REGISTER_BUFFERS2, uring.REGISTER_BUFFERS_UPDATE)
def test_buffers2_and_update(tracer, ring):
    bufs = [ctypes.create_string_buffer(4096) for _ in range(2)]
    iov = (uring.Iovec * 2)(*[uring.Iovec(ctypes.addressof(b), 4096) for b in bufs])
    reg = uring.RsrcRegister(nr=2, data=uring.addr(iov), tags=0)
    assert register(ring, uring.REGISTER_BUFFERS2, reg, ctypes.sizeof(reg)) == 0
    one_iov = (uring.Iovec * 1)(uring.Iovec(ctypes.addressof(bufs[0]), 512))
    tags = (ctypes.c_uint64 * 1)(99)
    upd = uring.RsrcUpdate2(offset=1, data=uring.addr(one_iov), tags=uring.addr(tags), nr=1)
    assert register(ring, uring.REGISTER_BUFFERS_UPDATE, upd, ctypes.sizeof(upd)) == 1
    e_reg, e_upd = tracer.mine(2)
    assert [(v.base, v.len) for v in e_reg.payload.iovecs] == \
        [(ctypes.addressof(b), 4096) for b in bufs]
    assert e_reg.payload.tags is None        # no tags pointer given
    assert [(v.base, v.len) for v in e_upd.payload.iovecs] == [(ctypes.addressof(bufs[0]), 512)]
    assert e_upd.payload.tags == [99]


@needs_opcodes(uring.REGISTER_IOWQ_AFF, uring.UNREGISTER_IOWQ_AFF, uring.REGISTER_IOWQ_MAX_WORKERS)
def test_iowq_affinity_and_max_workers(tracer, ring):
    mask = (ctypes.c_uint8 * 8)(0b11)
    assert register(ring, uring.REGISTER_IOWQ_AFF, mask, 8) == 0
    assert register(ring, uring.UNREGISTER_IOWQ_AFF, None, 0) == 0
    vals = (ctypes.c_uint32 * 2)(4, 8)
    assert register(ring, uring.REGISTER_IOWQ_MAX_WORKERS, vals, 2) == 0
    again = (ctypes.c_uint32 * 2)(0, 0)        # 0 asks for the current values
    assert register(ring, uring.REGISTER_IOWQ_MAX_WORKERS, again, 2) == 0
    aff, unaff, first, second = tracer.mine(4)
    assert aff.payload.cpus == [0, 1] and unaff.payload is None
    assert first.payload.values == [4, 8]
    assert first.payload.previous == list(vals)      # what the kernel wrote back
    assert second.payload.values == [0, 0] and second.payload.previous == [4, 8]
    assert not first.toctou.changed                  # output is not a race


@needs_opcodes(uring.REGISTER_RING_FDS, uring.UNREGISTER_RING_FDS)
def test_ring_fds_assigned_slot(tracer, ring):
    ents = (uring.RsrcUpdate * 1)(uring.RsrcUpdate(offset=0xFFFFFFFF, data=ring))
    assert register(ring, uring.REGISTER_RING_FDS, ents, 1) == 1
    slot = ents[0].offset
    ents[0].data = 0                       # unregister takes offsets only
    assert register(ring, uring.UNREGISTER_RING_FDS, ents, 1) == 1
    reg, unreg = tracer.mine(2)
    assert [(e.offset, e.data) for e in reg.payload.entries] == [(0xFFFFFFFF, ring)]
    assert reg.payload.assigned == [slot]
    assert [(e.offset, e.data) for e in unreg.payload.entries] == [(slot, 0)]
    assert not reg.toctou.changed


@needs_opcodes(uring.REGISTER_PBUF_RING, uring.UNREGISTER_PBUF_RING)
def test_pbuf_ring_in_user_memory(tracer, ring):
    """The ring in memory the caller maps: every kernel with PBUF_RING."""
    mem = mmap.mmap(-1, 4096)                  # page aligned, as the kernel wants
    ring_addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    reg = uring.BufReg(ring_addr=ring_addr, ring_entries=8, bgid=4)
    assert register(ring, uring.REGISTER_PBUF_RING, reg, 1) == 0
    assert register(ring, uring.UNREGISTER_PBUF_RING, uring.BufReg(bgid=4), 1) == 0
    e_reg, e_unreg = tracer.mine(2)
    p = e_reg.payload
    assert (p.ring_addr, p.ring_entries, p.bgid, p.flags) == (ring_addr, 8, 4, 0)
    assert e_unreg.payload.bgid == 4


@needs_opcodes(uring.REGISTER_PBUF_RING, uring.UNREGISTER_PBUF_RING, uring.REGISTER_PBUF_STATUS)
def test_pbuf_ring_status_and_unregister(tracer, ring):
    reg = uring.BufReg(ring_entries=8, bgid=3, flags=PBUF_RING_MMAP)
    assert register(ring, uring.REGISTER_PBUF_RING, reg, 1) == 0
    st = uring.BufStatus(buf_group=3)
    assert register(ring, uring.REGISTER_PBUF_STATUS, st, 1) == 0
    assert register(ring, uring.UNREGISTER_PBUF_RING, uring.BufReg(bgid=3), 1) == 0
    e_reg, e_st, e_unreg = tracer.mine(3)
    p = e_reg.payload
    assert (p.ring_addr, p.ring_entries, p.bgid, p.flags) == (0, 8, 3, PBUF_RING_MMAP)
    assert (e_st.payload.buf_group, e_st.payload.head) == (3, st.head)
    assert e_unreg.payload.bgid == 3


def test_sync_cancel(tracer, ring):
    sc = uring.SyncCancel(addr=0x1234, fd=-1, tv_sec=-1, tv_nsec=-1)
    ret = register(ring, uring.REGISTER_SYNC_CANCEL, sc, 0)
    ev = tracer.one()
    p = ev.payload
    assert (p.addr, p.fd, p.flags, p.timeout, p.opcode) == (0x1234, -1, 0, [-1, -1], 0)
    assert ev.ret == ret < 0


@needs_opcodes(uring.REGISTER_FILES, uring.REGISTER_FILE_ALLOC_RANGE)
def test_file_alloc_range(tracer, ring):
    assert register(ring, uring.REGISTER_FILES, uring.ints(-1, -1, -1, -1), 4) == 0
    rng = uring.FileIndexRange(off=1, len=2)
    assert register(ring, uring.REGISTER_FILE_ALLOC_RANGE, rng, 0) == 0
    _, ev = tracer.mine(2)
    assert (ev.payload.off, ev.payload.len) == (1, 2)


@needs_opcodes(uring.REGISTER_NAPI, uring.UNREGISTER_NAPI)
def test_napi(tracer, ring):
    napi = uring.Napi(busy_poll_to=100, prefer_busy_poll=1)
    ret = register(ring, uring.REGISTER_NAPI, napi, 1)
    out = uring.Napi()
    register(ring, uring.UNREGISTER_NAPI, out, 1)
    e_reg, e_unreg = tracer.mine(2)
    p = e_reg.payload
    assert (p.busy_poll_to, p.prefer_busy_poll, p.opcode, p.op_param) == (100, 1, 0, 0)
    if ret == 0:   # kernels without busy poll refuse it; decoding stays the same
        assert p.previous["busy_poll_to"] == napi.busy_poll_to
        assert e_unreg.payload.busy_poll_to == out.busy_poll_to == 100


@needs_opcodes(uring.REGISTER_CLOCK)
def test_clock(tracer, ring):
    clock = uring.ClockRegister(clockid=7)                       # CLOCK_BOOTTIME
    assert register(ring, uring.REGISTER_CLOCK, clock, 0) == 0
    assert tracer.one().payload.clockid == 7


def test_clone_buffers(tracer, ring):
    buf = ctypes.create_string_buffer(4096)
    iov = (uring.Iovec * 1)(uring.Iovec(ctypes.addressof(buf), 4096))
    assert register(ring, uring.REGISTER_BUFFERS, iov, 1) == 0
    dst = uring.setup()
    cb = uring.CloneBuffers(src_fd=ring, src_off=0, dst_off=0, nr=1)
    ret = register(dst, uring.REGISTER_CLONE_BUFFERS, cb, 1)
    _, ev = tracer.mine(2)
    p = ev.payload
    assert (p.src_fd, p.flags, p.src_off, p.dst_off, p.nr) == (ring, 0, 0, 0, 1)
    assert ev.ret == ret
    os.close(dst)


def test_send_msg_ring_is_blind(tracer, ring):
    sqe = (ctypes.c_uint8 * 64)()
    sqe[0] = 40                                        # IORING_OP_MSG_RING
    ctypes.c_int32.from_buffer(sqe, 4).value = ring    # target ring fd
    ctypes.c_uint64.from_buffer(sqe, 8).value = 0xABCD  # off: the CQE's user_data
    ret = register(-1, uring.REGISTER_SEND_MSG_RING, sqe, 1)
    ev = tracer.one()
    assert ev.blind and ev.fd == -1 and ev.ret == ret
    assert (ev.payload.sqe["opcode"], ev.payload.sqe["fd"], ev.payload.sqe["off"]) == \
        (40, ring, 0xABCD)


def query_hdr(data, next_entry=0, op=0, size=48):
    hdr = (ctypes.c_uint8 * 40)()
    ctypes.c_uint64.from_buffer(hdr, 0).value = next_entry
    ctypes.c_uint64.from_buffer(hdr, 8).value = uring.addr(data)
    ctypes.c_uint32.from_buffer(hdr, 16).value = op
    ctypes.c_uint32.from_buffer(hdr, 20).value = size
    return hdr


@needs_opcodes(uring.REGISTER_QUERY)
def test_query_chain_is_blind_and_walked(tracer):
    data1, data2 = (ctypes.c_uint8 * 48)(), (ctypes.c_uint8 * 48)()
    second = query_hdr(data2, op=99)                 # unknown query op
    first = query_hdr(data1, next_entry=uring.addr(second))
    ret = register(-1, uring.REGISTER_QUERY, first, 0)
    assert ret == 0
    ev = tracer.one()
    assert ev.blind and ev.fd == -1 and ev.opcode_name == "REGISTER_QUERY"
    p = ev.payload
    assert (p.query_data, p.query_op, p.size, p.next_entry) == \
        (uring.addr(data1), 0, 48, uring.addr(second))
    a, b = p.entries
    assert (a.query_op, a.result, a.query_data) == (0, 0, uring.addr(data1))
    assert a.data == bytes(data1)[:a.size].hex()     # what the kernel wrote
    assert a.answer["nr_register_opcodes"] == ctypes.c_uint32.from_buffer(data1, 4).value
    assert a.answer["nr_register_opcodes"] == REGISTER_OPCODES   # two ways to ask agree
    assert (b.query_op, b.result) == (99, ctypes.c_int32.from_buffer(second, 24).value)
    assert b.result < 0 and p.result == 0
    assert not ev.toctou.changed                     # all of it is output


def test_opcodes_newer_than_vmlinux_decode(tracer, ring):
    """ZCRX_CTRL (36) and BPF_FILTER (37) are newer than the vendored types:
    a kernel without them refuses them (EINVAL), and either way what was
    passed decodes."""
    def expect(opcode, ret):
        if opcode >= REGISTER_OPCODES:
            assert ret == -errno.EINVAL
    ctrl = (ctypes.c_uint32 * 18)(7, 1)              # zcrx_id 7, EXPORT
    ret_ctrl = register(ring, uring.REGISTER_ZCRX_CTRL, ctrl, 0)
    expect(36, ret_ctrl)
    insns = (ctypes.c_uint64 * 2)(0x0000000500000006, 0x0000000000000015)
    reg = (ctypes.c_uint8 * 72)()
    ctypes.c_uint16.from_buffer(reg, 0).value = 1    # IO_URING_BPF_CMD_FILTER
    ctypes.c_uint32.from_buffer(reg, 8).value = 22   # IORING_OP_READ
    ctypes.c_uint32.from_buffer(reg, 12).value = 1   # DENY_REST
    ctypes.c_uint32.from_buffer(reg, 16).value = 2   # filter_len
    ctypes.c_uint64.from_buffer(reg, 24).value = uring.addr(insns)
    ret_bf = register(ring, uring.REGISTER_BPF_FILTER, reg, 1)
    expect(37, ret_bf)
    zc, bf = tracer.mine(2)
    assert (zc.ret, bf.ret) == (ret_ctrl, ret_bf)
    assert (zc.payload.zcrx_id, zc.payload.op, zc.payload.op_name) == (7, 1, "EXPORT")
    p = bf.payload
    assert (p.cmd_type, p.opcode, p.opcode_name, p.flags, p.filter_len) == \
        (1, 22, "READ", 1, 2)
    assert [(i.code, i.k) for i in p.insns] == [(6, 5), (0x15, 0)]


@pytest.mark.parametrize("opcode,size", [(uring.REGISTER_ZCRX_IFQ, 96),
                                         (uring.REGISTER_RESIZE_RINGS, 120),
                                         (uring.REGISTER_MEM_REGION, 32)])
def test_rejected_opcodes_still_decode(tracer, ring, opcode, size):
    """ZCRX_IFQ needs a NIC, RESIZE_RINGS and MEM_REGION special rings; the
    kernel refuses them here, but what was passed is decoded."""
    arg = (ctypes.c_uint32 * (size // 4))(*range(1, size // 4 + 1))
    if opcode == uring.REGISTER_MEM_REGION:
        arg[0] = arg[1] = 0           # region_uptr = NULL
    ret = register(ring, opcode, arg, 1)
    ev = tracer.one()
    assert ev.ret == ret and ev.payload is not None
    if opcode == uring.REGISTER_ZCRX_IFQ:
        assert (ev.payload.ifq["if_idx"], ev.payload.ifq["if_rxq"]) == (1, 2)
    if opcode == uring.REGISTER_RESIZE_RINGS:
        assert (ev.payload.params["sq_entries"], ev.payload.params["cq_entries"]) == (1, 2)
    if opcode == uring.REGISTER_MEM_REGION:
        assert ev.payload.region_uptr == 0 and ev.payload.flags == arg[2] | arg[3] << 32


def test_unknown_opcode_is_raw_hex(tracer, ring):
    blob = (ctypes.c_uint8 * 8)(*b"uringwat")
    assert register(ring, uring.NO_SUCH_OPCODE, blob, 1) == -errno.EINVAL
    ev = tracer.one()
    assert ev.payload.hex.startswith(b"uringwat".hex())
