"""Python's layouts and opcodes against the BTF of the built object: the C
side is the truth, and a copy that drifts from it fails here."""

import ctypes
import json
import pathlib
import shutil
import subprocess
from importlib import resources

import pytest

from uringwatch.record import layout, opcodes, rings, uapi
from uringwatch.system import libbpf


@pytest.fixture(scope="module")
def btf():
    if not shutil.which("bpftool"):
        pytest.skip("bpftool is not installed")
    obj = resources.files("uringwatch").joinpath("uringwatch.bpf.o")
    with resources.as_file(obj) as path:
        out = subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(path)],
                             check=True, capture_output=True, text=True).stdout
    types = json.loads(out)["types"]
    return {t["id"]: t for t in types}


def named(btf, kind, name):
    matches = [t for t in btf.values() if t["kind"] == kind and t.get("name") == name]
    assert matches, f"{kind} {name} is not in the object's BTF"
    return matches[0]


def resolve(btf, type_id):
    """Skip typedefs and qualifiers."""
    t = btf[type_id]
    while t["kind"] in ("TYPEDEF", "CONST", "VOLATILE"):
        t = btf[t["type_id"]]
    return t


def flat_members(btf, struct, base=0):
    """name -> byte offset, looking inside anonymous unions and structs."""
    out = {}
    for m in struct["members"]:
        off = base + m["bits_offset"] // 8
        if m["name"] == "(anon)":
            out.update(flat_members(btf, resolve(btf, m["type_id"]), off))
        else:
            out.setdefault(m["name"], off)
    return out


@pytest.mark.parametrize("lay", layout.ALL, ids=lambda lay: lay.name)
def test_record_layouts_match_btf(btf, lay):
    s = named(btf, "STRUCT", lay.name)
    assert s["size"] == lay.size
    assert [m["name"] for m in s["members"]] == [m for m, _ in lay.members]
    for m in s["members"]:
        assert m["bits_offset"] // 8 == lay.offsets[m["name"]], m["name"]


@pytest.mark.parametrize("lay", uapi.ALL, ids=lambda lay: lay.name)
def test_uapi_layouts_match_btf(btf, lay):
    s = named(btf, "STRUCT", lay.name)
    assert s["size"] == lay.size
    members = flat_members(btf, s)
    for name, _ in lay.members:
        assert members.get(name) == lay.offsets[name], name


def enum_values(btf, name):
    return {v["name"]: v["val"] for v in named(btf, "ENUM", name)["values"]}


def test_enums_match_btf(btf):
    counters = enum_values(btf, "uw_counter")
    assert [k.removeprefix("UW_CNT_").lower() for k in counters][:-1] == list(layout.COUNTERS)
    for enum, prefix, module_prefix in (("uw_call_flags", "UW_F_", "F_"),
                                        ("uw_region_flags", "UW_R_", "R_"),
                                        ("uw_resolve", "UW_RES_", "RES_"),
                                        ("uw_role", "UW_ROLE_", "ROLE_"),
                                        ("uw_file_flags", "UW_FL_", "FL_"),
                                        ("uw_mem_flags", "UW_M_", "M_"),
                                        ("uw_ident_flags", "UW_I_", "I_"),
                                        ("uw_ns_flags", "UW_NS_", "NS_"),
                                        ("uw_part", "UW_P_", "P_"),
                                        ("uw_ring_fd_flags", "UW_RFD_", "RFD_")):
        for k, v in enum_values(btf, enum).items():
            assert getattr(layout, module_prefix + k.removeprefix(prefix)) == v, k
    for k, v in enum_values(btf, "uw_kind").items():
        assert getattr(layout, k.removeprefix("UW_")) == v, k
    for enum in ("uw_op_flags", "uw_op_reason"):
        for k, v in enum_values(btf, enum).items():
            assert getattr(layout, k.removeprefix("UW_")) == v, k
    drops = enum_values(btf, "uw_drop")
    assert [k.removeprefix("UW_DROP_").lower() for k in drops][:-1] == list(layout.DROPS)
    recs = enum_values(btf, "uw_rec")
    assert [k.removeprefix("UW_REC_").lower() + "s_dropped" for k in recs][:-1] == \
        list(layout.REC_DROPS)


def test_sqe_op_names_match_btf(btf):
    ops = enum_values(btf, "io_uring_op")
    assert [k.removeprefix("IORING_OP_") for k, v in sorted(ops.items(), key=lambda kv: kv[1])
            if k != "IORING_OP_LAST"] == list(opcodes.SQE_OPS)
    # one table: Op events and restrictions name from it, past its end each
    # as its recorded JSON always has
    assert not hasattr(rings, "SQE_OPS")
    past = len(opcodes.SQE_OPS)
    assert rings.sqe_op_name(past) == f"OP_{past}"
    assert opcodes.sqe_op_name(past) == f"UNKNOWN_{past}"
    assert rings.sqe_op_name(ops["IORING_OP_READ"]) == "READ"


def test_register_opcode_names_match_btf(btf):
    """opcodes.NAMES, name for name and number for number, is what the
    object knows: the kernel's enum io_uring_register_op and, for opcodes
    newer than vmlinux.h, bpf/uapi_newer.h's enum (both where a newer
    vmlinux.h has them: then they must agree)."""
    ops = enum_values(btf, "io_uring_register_op")
    # bit 31 of a 32-bit enum: bpftool prints it sign-extended to 64 bits
    assert ops.pop("IORING_REGISTER_USE_REGISTERED_RING") & 0xFFFFFFFF == \
        opcodes.USE_REGISTERED_RING
    del ops["IORING_REGISTER_LAST"]
    known = {k.removeprefix("IORING_"): v for k, v in ops.items()}
    for k, v in enum_values(btf, "uw_register_newer").items():
        assert known.setdefault(k.removeprefix("UW_"), v) == v, k
    assert known == {name: op for op, name in enumerate(opcodes.NAMES)}


def initial_bytes(section: str) -> bytes:
    """A data section of the object as libbpf reads it, without loading."""
    lib = libbpf.lib()
    data = resources.files("uringwatch").joinpath("uringwatch.bpf.o").read_bytes()
    opts = libbpf.OpenOpts(sz=ctypes.sizeof(libbpf.OpenOpts), object_name=b"uringwatch")
    handle = libbpf.check_ptr(lib.bpf_object__open_mem(data, len(data), ctypes.byref(opts)),
                              "opening the BPF object")
    try:
        size = ctypes.c_size_t()
        ptr = lib.bpf_map__initial_value(
            libbpf.check_ptr(lib.bpf_object__find_map_by_name(handle, section.encode()),
                             f"finding {section}"), ctypes.byref(size))
        return ctypes.string_at(ptr, size.value)
    finally:
        lib.bpf_object__close(handle)


def test_every_opcode_has_a_capture_plan(btf):
    """bpf/plans.h, read from the compiled object: a plan (known set) for
    each opcode opcodes.NAMES names, and for no other."""
    var = named(btf, "VAR", "plans")
    (at,) = [v for v in named(btf, "DATASEC", ".rodata")["vars"] if v["type_id"] == var["id"]]
    plan = named(btf, "STRUCT", "uw_plan")
    known = flat_members(btf, plan)["known"]
    table = initial_bytes(".rodata")[at["offset"]:at["offset"] + at["size"]]
    planned = [opcodes.name(op) for op, off in enumerate(range(0, len(table), plan["size"]))
               if table[off + known]]
    assert planned == list(opcodes.NAMES)


def test_limits_and_defaults_match_btf(btf):
    limits = enum_values(btf, "uw_limits")
    assert limits == {"UW_" + name: getattr(layout, name) for name in (
        "HEAD_MAX", "CAP_MAX", "DEFAULT_CAP", "DEFAULT_SNAP_BYTES", "DEFAULT_RING_BYTES",
        "DEFAULT_MAX_INFLIGHT", "DEFAULT_WAKEUP_BYTES", "SIG_UNROLLED",
        "SIG_FILES_UNROLLED", "QUERY_MAX", "QUERY_DATA", "DEFAULT_MAX_AGGS")}


def test_config_is_the_whole_rodata_cfg_section(btf):
    sec = named(btf, "DATASEC", ".rodata.cfg")
    (var,) = sec["vars"]
    assert var["offset"] == 0 and var["size"] == layout.CONFIG.size


def test_identity_limits_match_the_header():
    """The record's identity area is sized from these: FILES_MAX entries,
    MEMS_MAX buffers, PATH_MAX path bytes each."""
    header = (pathlib.Path(__file__).parent.parent / "bpf" / "uringwatch.h").read_text()
    for name in ("FILES_MAX", "MEMS_MAX", "PATH_MAX"):
        assert f"#define UW_{name} {getattr(layout, name)} " in header, name
    from uringwatch.probe import hooks
    assert sorted(layout.RESOLVE_NAMES.values()) == sorted(hooks.RESOLVE)


def test_overflow_aggregate_key_matches_the_header():
    """User space makes the aggregate the kernel falls back to by this key."""
    header = (pathlib.Path(__file__).parent.parent / "bpf" / "uringwatch.h").read_text()
    assert f"#define UW_AGG_OVERFLOW_UID {layout.AGG_OVERFLOW_UID:#x} " in header


def test_only_the_btf_object_calls_a_kfunc():
    """A kfunc extern makes libbpf need the kernel's own BTF for its whole
    object: the plain object must have none, or --btf could not work."""
    def names(obj):
        with resources.as_file(resources.files("uringwatch").joinpath(obj)) as path:
            out = subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(path)],
                                 check=True, capture_output=True, text=True).stdout
        return {t.get("name") for t in json.loads(out)["types"]}
    if not shutil.which("bpftool"):
        pytest.skip("bpftool is not installed")
    assert "bpf_rdonly_cast" not in names("uringwatch.bpf.o")
    assert "bpf_rdonly_cast" in names("uringwatch_btf.bpf.o")
