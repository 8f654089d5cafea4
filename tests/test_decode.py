"""The record decoder on bytes built from the C layout, without the kernel."""

import pathlib
import re
import struct

import pytest

from uringwatch import RecordError, decode
from uringwatch.record import layout


def call_record(opcode=2, regions=((0, 0, 0, 0, 0, b""),) * 4, abi=layout.ABI_VERSION,
                files=(), ident_flags=0, path=layout.RES_BTF, ns=(0, 0, 0, b""), mems=(),
                **fields):
    """A call record of ABI `abi`: regions as (addr, count, elem, flags,
    pad, data); files and mems as packed uw_file and uw_mem entries (ABI 2
    on); ns as (nspid, nstid, flags, hostname). ABI 3: the ABI-2 record
    packed as the kernel packs it (abi3_of)."""
    if abi == 3:
        return abi3_of(call_record(opcode, regions, 2, files, ident_flags, path, ns, mems,
                                   **fields))
    entries = b"".join(files) + b"".join(mems)
    data = b"".join(r[5] for r in regions[:3]) + entries + regions[3][5]
    size = (layout.CALL if abi >= 2 else layout.CALL_ABI1).size + len(data)
    values = dict(ts_enter=1000, ts_exit=1500, arg=0x1000, ret=0, cgroup_id=7, pid=10,
                  tid=11, ppid=1, uid=0, gid=0, fd=3, opcode=opcode, nr_args=3,
                  pidns=5, mntns=6, flags=layout.F_PPID | layout.F_NS, nchanged=0,
                  comm=b"golden\0")
    values.update(fields)
    lay = layout.CALL if abi >= 2 else layout.CALL_ABI1
    fields = dict(values, hdr=(layout.KIND_CALL, abi, size),
                  region=tuple(x for a, c, e, f, _, d in regions for x in (a, c, len(d), e, f, 0)))
    if abi >= 2:
        fields["ident"] = layout.IDENT.struct.unpack(
            layout.IDENT.pack(nfiles=len(files), nmem=len(mems), flags=ident_flags, path=path))
        fields["ns"] = (ns[0], ns[1], ns[2], 0, ns[3])
    return lay.pack(**fields) + data


def abi3_of(rec: bytes) -> bytes:
    """An ABI-2 call record as ABI 3 sends it (bpf/record.h): each region
    with a field set, changed[] as far as used, the parts the flags say it
    has, then the data."""
    c = layout.CALL.unpack(rec)
    regions, head = 0, b""
    for i in range(layout.NREGION):
        r = c["region"][i * 6:i * 6 + 6]
        if any(r):
            regions |= 1 << i
            head += layout.REGION.struct.pack(*r)
    nch = min(c["nchanged"], layout.MAX_CHANGED)
    head += struct.pack(f"<{nch}I", *c["changed"][:nch]) + bytes(4 * (nch % 2))
    nfiles, nmem, iflags, path, _, *cred = c["ident"]
    ns = layout.NS_CTX.unpack(layout.NS_CTX.struct.pack(*c["ns"]))
    parts = 0
    if c["flags"] & layout.F_PPID:
        parts |= layout.P_TASK
        head += layout.TASK.pack(ppid=c["ppid"], pidns=c["pidns"], mntns=c["mntns"])
        if ns["flags"]:
            parts |= layout.P_NS
            head += layout.NS_CTX.struct.pack(*c["ns"])
    if iflags & layout.I_CRED:
        parts |= layout.P_CRED
        head += layout.CRED.struct.pack(*cred)
    if any(c["ring"]):
        parts |= layout.P_RING
        head += layout.RING_REF.struct.pack(*c["ring"])
    data = rec[layout.CALL.size:]
    head_len = layout.CALL3.size + len(head)
    fixed = layout.CALL3.pack(
        hdr=(layout.KIND_CALL, 3, head_len + len(data)), data_len=len(data),
        head_len=head_len, regions=regions, nchanged=nch, nfiles=nfiles, nmem=nmem,
        ident_flags=iflags, path=path, parts=parts,
        **{k: c[k] for k in ("ts_enter", "ts_exit", "arg", "ret", "cgroup_id", "pid", "tid",
                             "uid", "gid", "fd", "opcode", "nr_args", "flags", "comm")})
    return fixed + head + data


def uw_file(fd=4, role=layout.ROLE_FDS, index=0, flags=layout.FL_FOUND | layout.FL_ROOTED,
            path=b"shadow\0etc\0", mode=0o100640, ino=42, dev=(254 << 20) | 3, magic=0xEF53):
    return layout.FILE.struct.pack(fd, role, index, flags, len(path), mode, ino, dev, magic,
                                   0, 0, 0, 0, 0, 0, 0, bytes(16), bytes(16), path)


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


@pytest.mark.parametrize("cut", [0, 4, 8, layout.CALL3.size - 1])
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


def test_abi1_records_still_decode_without_identities():
    rec = call_record(regions=FILES_REGIONS, abi=1)
    ev = decode(rec, 0, len(rec), 0)
    assert ev.payload.fds == [4, -1, -2]
    assert (ev.files, ev.cred, ev.memory, ev.resolve) == (None, None, None, None)
    assert (ev.ring_id, ev.nspid, ev.nstid, ev.hostname) == (None, None, None, None)


def test_a_file_entry_decodes_to_its_path_and_device():
    rec = call_record(regions=FILES_REGIONS, files=[uw_file()])
    (f,) = decode(rec, 0, len(rec), 0).files
    assert (f.fd, f.role, f.kind, f.path, f.ino, f.mode) == \
        (4, "fds[0]", "file", "/etc/shadow", 42, 0o100640)
    assert f.dev == __import__("os").makedev(254, 3) and f.verified and f.source == "kernel"


def test_a_truncated_path_keeps_its_leaf_end_and_says_so():
    rec = call_record(regions=FILES_REGIONS,
                      files=[uw_file(flags=layout.FL_FOUND | layout.FL_PATH_TRUNC)])
    (f,) = decode(rec, 0, len(rec), 0).files
    assert (f.path, f.path_truncated) == ("…/etc/shadow", True)


@pytest.mark.parametrize("abi", [2, 3])
def test_identities_past_the_end_are_rejected(abi):
    rec = bytearray(call_record(regions=FILES_REGIONS, files=[uw_file()], abi=abi))
    cut = len(rec) - 100
    struct.pack_into("<I", rec, 4, cut)
    if abi == 3:        # its lengths agree with its size: the entries do not
        at = layout.CALL3.offsets["data_len"]
        struct.pack_into("<I", rec, at, struct.unpack_from("<I", rec, at)[0] - 100)
    with pytest.raises(RecordError, match="past the record"):
        decode(bytes(rec[:cut]), 0, cut, 0)
def repeat_record(total, pid=10, opcode=9999, ret=-22, kind=layout.KIND_REPEAT):
    return layout.REPEAT.struct.pack(kind, layout.ABI_VERSION,
                                     layout.REPEAT.size, 1000, 2000, total, ret, pid, 11, 3,
                                     opcode, b"flood\0")


def test_repeat_counts_come_from_running_totals():
    """A repeat record carries its process's running total: a lost or
    reordered record moves its count to the next, never loses it."""
    from uringwatch.record.decode import Runs
    runs = Runs()
    counts = []
    for total in (5, 12, 9, 30):            # 9: read out of order, already counted
        rec = repeat_record(total)
        ev = decode(rec, 0, len(rec), 10**18, None, runs=runs)
        counts.append(ev and ev.count)
    assert counts == [5, 7, None, 18]
    ev = decode(repeat_record(4, pid=20), 0, layout.REPEAT.size, 10**18, None, runs=runs)
    assert (ev.pid, ev.count, ev.comm, ev.error, ev.opcode_name) == \
        (20, 4, "flood", "EINVAL", "UNKNOWN_9999")
    assert (ev.ts, ev.last_ts) == (10**18 + 1000, 10**18 + 2000)


def test_a_process_s_last_repeat_record_restarts_its_total():
    """The record sent as a process ends counts like any, then its pid's
    total restarts: a process that reuses the pid counts from 0."""
    from uringwatch.record.decode import Runs
    runs = Runs()
    counts = []
    for total, kind in ((5, layout.KIND_REPEAT), (8, layout.KIND_REPEAT_END),
                        (3, layout.KIND_REPEAT), (8, layout.KIND_REPEAT_END),
                        (2, layout.KIND_REPEAT_END)):
        rec = repeat_record(total, kind=kind)
        ev = decode(rec, 0, len(rec), 10**18, None, runs=runs)
        counts.append(ev and ev.count)
    assert counts == [5, 3, 3, 5, 2]
    assert runs.seen == {}


def test_repeat_record_of_the_wrong_size_is_rejected():
    rec = repeat_record(1) + b"\0" * 8
    rec = rec[:4] + struct.pack("<I", len(rec)) + rec[8:]
    with pytest.raises(RecordError, match="repeat record"):
        decode(rec, 0, len(rec), 0)


def test_each_payload_type_is_tagged_with_its_opcodes_name():
    """An opcode is named once (opcodes.NAMES): its payload type's tag and
    its decoder's key agree with it, and the union holds every type."""
    from typing import get_args

    from uringwatch.record import arguments, opcodes, payloads
    typed = {op: spec.cls for op, spec in arguments.SPECS.items() if spec.cls is not None}
    assert {op: cls.__struct_config__.tag for op, cls in typed.items()} == \
        {op: opcodes.NAMES[op] for op in typed}
    assert set(get_args(payloads.Payload)) == set(typed.values()) | {payloads.Raw}


def test_every_named_opcode_has_a_decoder():
    """One arguments.SPECS entry per opcode of opcodes.NAMES (even `Spec(None)`
    for those without arguments): one left out would come out raw."""
    from uringwatch.record import arguments, opcodes
    assert sorted(arguments.SPECS) == list(range(len(opcodes.NAMES)))


def test_readme_opcode_table_lists_every_opcode_once():
    """docs/EVENTS.md's "What each opcode decodes" names each opcode of
    opcodes.NAMES once, by its number and name (REGISTER_ may be left off),
    and no other."""
    from uringwatch.record import opcodes
    readme = (pathlib.Path(__file__).parent.parent / "docs" / "EVENTS.md").read_text()
    section = readme.split("## What each opcode decodes")[1].split("\n## ")[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("|")]
    listed = [(int(n), name) for cell in first_cells
              for n, name in re.findall(r"(\d+) `(\w+)`", cell)]
    assert sorted(n for n, _ in listed) == list(range(len(opcodes.NAMES)))
    assert [(n, name) for n, name in listed if opcodes.BY_NAME.get(name) != n] == []


def test_a_raced_fd_carries_the_file_the_kernel_holds():
    """An fd that named another file in the ring's table after the call
    than at enter: not verified, the ring's file beside it, and the TOCTOU
    flag names the fd; the ring's own entry checked against the kernel."""
    rec = call_record(regions=FILES_REGIONS, ident_flags=layout.I_CHECKED, files=[
        uw_file(fd=3, role=layout.ROLE_RING, flags=layout.FL_FOUND | layout.FL_PSEUDO |
                layout.FL_KERNEL, path=b"[io_uring]\0"),
        uw_file(flags=layout.FL_FOUND | layout.FL_ROOTED | layout.FL_RACED,
                path=b"hostname\0etc\0"),
        uw_file(flags=layout.FL_FOUND | layout.FL_ROOTED | layout.FL_AT_EXIT | layout.FL_KERNEL,
                path=b"shadow\0etc\0")])
    ev = decode(rec, 0, len(rec), 0)
    ring, f = ev.files
    assert (ring.verified, ring.check, ring.reason) == (True, "kernel", None)
    assert (f.path, f.verified, f.check, f.reason) == ("/etc/hostname", False, None, "raced")
    assert (f.at_exit.path, f.at_exit.verified, f.at_exit.check) == ("/etc/shadow", True, "kernel")
    assert ev.toctou.changed and ev.toctou.changes == ["fd 4 (fds[0])"]


@pytest.mark.parametrize("flags, ident_flags, want", [
    (layout.FL_SAME_AT_EXIT, layout.I_CHECKED, (True, "exit", None)),
    (0, layout.I_CHECKED, (False, None, "unchecked")),
    (0, 0, (True, None, None)),             # a record from before the check
], ids=["same-at-exit", "unchecked", "older-record"])
def test_what_verified_rests_on(flags, ident_flags, want):
    rec = call_record(regions=FILES_REGIONS, ident_flags=ident_flags,
                      files=[uw_file(flags=layout.FL_FOUND | layout.FL_ROOTED | flags)])
    (f,) = decode(rec, 0, len(rec), 0).files
    assert (f.verified, f.check, f.reason, f.at_exit) == (*want, None)


def uw_mem(addr=0x7F0000000000, flags=layout.M_FOUND):
    """An anonymous mapping's uw_mem (no file)."""
    return layout.MEM.struct.pack(addr, 4096, addr, addr + 4096, addr >> 12, 0x73, flags, 0,
                                  *layout.FILE.struct.unpack(bytes(layout.FILE.size)))


BUFFERS_REGIONS = ((0, 0, 0, 0, 0, b""), (0x1000, 2, 16, 0, 0, bytes(32)),
                   (0, 0, 0, 0, 0, b""), (0, 0, 0, 0, 0, b""))


@pytest.mark.parametrize("flags, ident_flags, want", [
    (layout.M_KERNEL, layout.I_MEM_CHECKED, (True, "kernel", None)),
    (layout.M_RACED, layout.I_MEM_CHECKED, (False, None, "raced")),
    (0, layout.I_MEM_CHECKED, (False, None, "unchecked")),
    (0, 0, (True, None, None)),             # a record from before the check
], ids=["kernel", "raced", "unchecked", "older-record"])
def test_what_a_buffers_verified_rests_on(flags, ident_flags, want):
    """A buffer is verified only when the page the ring pinned is of the
    mapping named; a raced one is a TOCTOU change, named."""
    rec = call_record(opcode=0, regions=BUFFERS_REGIONS, ident_flags=ident_flags,
                      mems=[uw_mem(flags=layout.M_FOUND | flags), uw_mem(0x7F0000010000)])
    ev = decode(rec, 0, len(rec), 0)
    m, other = ev.memory
    assert (m.backing, m.verified, m.check, m.reason) == ("anon", *want)
    assert ev.toctou.changed == (want[2] == "raced")
    assert ev.toctou.changes == (["buffer 0x7f0000000000 (memory[0])"]
                                 if want[2] == "raced" else [])


# ABI 3 (bpf/record.h): the same call as ABI 2 sent it, only what it has
CRED = layout.CRED.pack(uid=1000, euid=1000, ngroups=2, cap_effective=1 << 21)
ABI2_CALLS = {
    "invalid": dict(opcode=9999, fd=-1, ret=-9, flags=layout.F_PPID | layout.F_NS | layout.F_RAW,
                    regions=((0x1000, 64, 1, layout.R_FAULT, 0, bytes(64)),) +
                    ((0, 0, 0, 0, 0, b""),) * 3),
    "files": dict(regions=FILES_REGIONS, files=[uw_file(), uw_file(fd=3, role=layout.ROLE_RING)],
                  ns=(1, 7, layout.NS_IDS | layout.NS_UTS, b"box"), ring=(0xabc, 0)),
    "changed": dict(regions=FILES_REGIONS, nchanged=3,
                    flags=layout.F_PPID | layout.F_NS | layout.F_CHANGED,
                    changed=(1 << 24, 1 << 24 | 4, 1 << 24 | 8) + (0,) * 13),
    "more": dict(regions=FILES_REGIONS, nchanged=16, changed=tuple(range(16)),
                 flags=layout.F_PPID | layout.F_CHANGED | layout.F_CHANGED_MORE),
    "personality": dict(opcode=9, ident_flags=layout.I_CRED, ring=(5, 6), flags=0),
    "inout": dict(opcode=2, regions=FILES_REGIONS[:3] + ((0x1000, 3, 4, layout.R_OUT, 0, FDS),),
                  path=layout.RES_OFF, ns=(3, 4, layout.NS_IDS, b"")),
}


def abi2_call(name):
    kw = dict(ABI2_CALLS[name])
    rec = bytearray(call_record(abi=2, **{k: v for k, v in kw.items() if k != "ring"}))
    if "ring" in kw:
        struct.pack_into("<2Q", rec, layout.CALL.offsets["ring"], *kw["ring"])
    if kw.get("ident_flags", 0) & layout.I_CRED:
        rec[layout.CALL.offsets["ident"] + layout.IDENT.offsets["cred"]:][:len(CRED)] = CRED
    return bytes(rec)


@pytest.mark.parametrize("name", sorted(ABI2_CALLS))
def test_abi3_record_decodes_as_its_abi2_record(name):
    """Field for field the same event, JSON line for JSON line."""
    import msgspec
    old = abi2_call(name)
    new = abi3_of(old)
    assert len(new) < len(old)
    got, want = decode(new, 0, len(new), 7), decode(old, 0, len(old), 7)
    assert msgspec.json.encode(got) == msgspec.json.encode(want)


def test_an_invalid_call_s_abi3_record_is_its_fixed_part_task_and_snapshot():
    rec = abi3_of(abi2_call("invalid"))
    h = layout.CALL3.unpack(rec)
    assert h["parts"] == layout.P_TASK and h["regions"] == 1
    assert len(rec) == layout.CALL3.size + layout.REGION.size + layout.TASK.size + 64


def _spoiled(name, field, value):
    rec = bytearray(abi3_of(abi2_call(name)))
    fmt = dict(layout.CALL3.members)[field]
    struct.pack_into("<" + fmt, rec, layout.CALL3.offsets[field], value)
    return bytes(rec)


@pytest.mark.parametrize("name,field,value,what", [
    ("files", "head_len", 8, "of header"),
    ("files", "data_len", 1, "of header"),
    ("files", "parts", 0x10, "parts"),
    ("files", "regions", 0x10, "regions"),
    ("changed", "nchanged", 17, "changes"),
    ("files", "parts", layout.P_TASK | layout.P_NS, "header is"),      # ring ref left out
    ("files", "parts", 0xF, "run past its header"),                   # cred never sent
    ("files", "regions", 0x3, "header"),
])
def test_abi3_records_whose_parts_disagree_are_rejected(name, field, value, what):
    rec = _spoiled(name, field, value)
    with pytest.raises(RecordError, match=what):
        decode(rec, 0, len(rec), 0)
