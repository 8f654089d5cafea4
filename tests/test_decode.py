"""The record decoder on bytes built from the C layout, without the kernel."""

import struct

import pytest

from uringwatch import RecordError, decode, layout


def call_record(opcode=2, regions=((0, 0, 0, 0, 0, b""),) * 4, ns=(0, 0, 0, b""), **fields):
    """A uw_call record: regions as (addr, count, elem, flags, pad, data);
    ns as (nspid, nstid, flags, hostname)."""
    data = b"".join(r[5] for r in regions)
    size = layout.CALL.size + len(data)
    values = dict(ts_enter=1000, ts_exit=1500, arg=0x1000, ret=0, cgroup_id=7, pid=10,
                  tid=11, ppid=1, uid=0, gid=0, fd=3, opcode=opcode, nr_args=3,
                  pidns=5, mntns=6, flags=layout.F_PPID | layout.F_NS, nchanged=0,
                  comm=b"golden\0")
    values.update(fields)
    head = struct.pack("<HHI", layout.KIND_CALL, layout.ABI_VERSION, size)
    fixed = struct.pack("<QQQqQIIIIIiIIIIII16s", *(values[k] for k in (
        "ts_enter", "ts_exit", "arg", "ret", "cgroup_id", "pid", "tid", "ppid", "uid",
        "gid", "fd", "opcode", "nr_args", "pidns", "mntns", "flags", "nchanged", "comm")))
    regs = b"".join(struct.pack("<QIIHHI", a, c, len(d), e, f, 0) for a, c, e, f, _, d in regions)
    ns_ctx = struct.pack(f"<IIII{layout.HOSTNAME_LEN}s", ns[0], ns[1], ns[2], 0, ns[3])
    return head + fixed + regs + bytes(4 * layout.MAX_CHANGED) + ns_ctx + data


FDS = struct.pack("<3i", 4, -1, -2)
FILES_REGIONS = ((0, 0, 0, 0, 0, b""), (0x1000, 3, 4, 0, 0, FDS),
                 (0, 0, 0, 0, 0, b""), (0, 0, 0, 0, 0, b""))


def test_golden_files_record():
    rec = call_record(regions=FILES_REGIONS)
    ev = decode(rec, 0, len(rec), boot_to_wall=10**18)
    assert ev.ts == 10**18 + 1000 and ev.duration_ns == 500
    assert (ev.pid, ev.tid, ev.ppid, ev.comm, ev.fd) == (10, 11, 1, "golden", 3)
    assert ev.opcode_name == "REGISTER_FILES" and ev.payload.fds == [4, -1, -2]
    assert (ev.pidns, ev.mntns) == (5, 6)


def test_flags_absent_mean_unknown():
    rec = call_record(regions=FILES_REGIONS, flags=0)
    ev = decode(rec, 0, len(rec), 0)
    assert ev.ppid is None and ev.pidns is None
    assert (ev.nspid, ev.nstid, ev.hostname) == (None, None, None)


def test_namespaced_ids_and_hostname():
    rec = call_record(regions=FILES_REGIONS,
                      ns=(1, 7, layout.NS_IDS | layout.NS_UTS, b"h" * layout.HOSTNAME_LEN))
    ev = decode(rec, 0, len(rec), 0)
    assert (ev.nspid, ev.nstid, ev.hostname) == (1, 7, "h" * layout.HOSTNAME_LEN)
    assert ev.payload.fds == [4, -1, -2]


def test_abi1_record_decodes_without_the_namespaced_fields():
    """An ABI-1 record is today's without uw_ns_ctx, its data right after changed[]."""
    from uringwatch.replay import DECODERS
    rec = call_record(regions=FILES_REGIONS, ns=(1, 7, layout.NS_IDS, b"x"))
    cut = layout.CALL.offsets["ns"]
    old = bytearray(rec[:cut] + rec[layout.CALL.size:])
    struct.pack_into("<HI", old, 2, 1, len(old))
    ev = DECODERS[1](bytes(old), 0, len(old), 0)
    assert (ev.nspid, ev.nstid, ev.hostname) == (None, None, None)
    assert ev.payload.fds == [4, -1, -2] and ev.pid == 10
    with pytest.raises(RecordError):
        DECODERS[1](rec, 0, len(rec), 0)      # an ABI-2 record is not ABI 1


@pytest.mark.parametrize("cut", [0, 4, 8, layout.CALL.size - 1])
def test_short_record_is_rejected(cut):
    rec = call_record(regions=FILES_REGIONS)[:cut]
    with pytest.raises(RecordError):
        decode(rec, 0, len(rec), 0)


def test_oversized_record_is_rejected():
    rec = call_record(regions=FILES_REGIONS) + bytes(8)
    with pytest.raises(RecordError, match="header says"):
        decode(rec, 0, len(rec), 0)


def test_region_past_end_is_rejected():
    rec = bytearray(call_record(regions=FILES_REGIONS))
    struct.pack_into("<I", rec, 4, len(rec) - 4)   # header size shrinks
    with pytest.raises(RecordError):
        decode(bytes(rec[:-4]), 0, len(rec) - 4, 0)


def test_unknown_kind_and_abi_are_rejected():
    rec = bytearray(call_record(regions=FILES_REGIONS))
    rec[0] = 99
    with pytest.raises(RecordError, match="kind"):
        decode(bytes(rec), 0, len(rec), 0)
    rec[0], rec[2] = layout.KIND_CALL, 99
    with pytest.raises(RecordError, match="ABI"):
        decode(bytes(rec), 0, len(rec), 0)
