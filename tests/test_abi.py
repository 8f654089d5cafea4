"""Python's view of the ABI against the BTF of the built object: the C
side is the truth. record/_abi.py is generated from the object's BTF at
build time (bpf/gen_abi.py); here it is checked against bpftool's reading
of the same BTF, and against what the generator makes of the installed
object, so that a stale or wrong one fails."""

import ctypes
import importlib.util
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
from importlib import resources

import pytest

from helpers import REPO
from uringwatch.record import _abi, layout, opcodes, rings, uapi
from uringwatch.record.layout import Layout
from uringwatch.system import libbpf

GEN_ABI = os.path.join(REPO, "bpf", "gen_abi.py")


def gen_abi():
    spec = importlib.util.spec_from_file_location("gen_abi", GEN_ABI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def object_bytes(name: str = "uringwatch.bpf.o") -> bytes:
    return resources.files("uringwatch").joinpath(name).read_bytes()


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


def flat_typed(btf, struct, base=0):
    """(name, byte offset, type id) of every member, those of anonymous
    unions and structs in their place, as the generator lists them."""
    out = []
    for m in struct["members"]:
        off = base + m["bits_offset"] // 8
        if m["name"] == "(anon)":
            out += flat_typed(btf, resolve(btf, m["type_id"]), off)
        else:
            out.append((m["name"], off, m["type_id"]))
    return out


def type_size(btf, type_id):
    t = resolve(btf, type_id)
    if t["kind"] == "ARRAY":
        return t["nr_elems"] * type_size(btf, t["type_id"])
    return 8 if t["kind"] == "PTR" else t["size"]


@pytest.mark.parametrize("name", sorted(_abi.STRUCTS))
def test_generated_structs_are_btfs(btf, name):
    """Sizes, members and offsets as bpftool reads them; each member's
    format the size of its type."""
    size, members = _abi.STRUCTS[name]
    s = named(btf, "STRUCT", name)
    assert size == s["size"]
    expected = flat_typed(btf, s)
    assert [(m, off) for m, off, _ in members] == [(m, off) for m, off, _ in expected]
    for (member, _, fmt), (_, _, type_id) in zip(members, expected):
        if fmt is not None:
            assert struct.calcsize("<" + fmt) == type_size(btf, type_id), member


def test_generated_enums_are_btfs(btf):
    """Every enum written out, and each UW_ enumerator as a constant of
    layout without its prefix."""
    for name, values in _abi.ENUMS.items():
        e = named(btf, "ENUM", name)
        mask = (1 << 8 * e["size"]) - 1
        assert {k: v & mask for k, v in values.items()} == \
            {v["name"]: v["val"] & mask for v in e["values"]}, name
        for k, v in values.items():
            if k.startswith("UW_"):
                assert getattr(layout, k.removeprefix("UW_")) == v, k
    wanted = {t["name"] for t in btf.values() if t["kind"] == "ENUM"
              and t.get("name", "").startswith("uw_")}
    assert wanted <= set(_abi.ENUMS)


def test_generated_module_is_what_the_generator_makes_of_the_object():
    """A stale _abi.py (the header changed, the module did not) fails here."""
    installed = resources.files("uringwatch.record").joinpath("_abi.py").read_text()
    assert installed == gen_abi().generate(object_bytes(), "uringwatch.bpf.o")


def test_counter_drop_and_record_names_follow_their_enums(btf):
    counters = enum_values(btf, "uw_counter")
    assert [k.removeprefix("UW_CNT_").lower() for k in counters][:-1] == list(layout.COUNTERS)
    drops = enum_values(btf, "uw_drop")
    assert [k.removeprefix("UW_DROP_").lower() for k in drops][:-1] == list(layout.DROPS)
    recs = enum_values(btf, "uw_rec")
    assert [k.removeprefix("UW_REC_").lower() + "s_dropped" for k in recs][:-1] == \
        list(layout.REC_DROPS)


def run_generator(path):
    return subprocess.run([sys.executable, GEN_ABI, str(path), "-"],
                          capture_output=True, text=True, timeout=60)


def test_generator_says_one_line_for_a_bad_object(tmp_path):
    """Not ELF, cut short, without .BTF, with a broken BTF header: exit 1
    and one line naming the file, never a traceback."""
    elf = object_bytes()
    btf_at = elf.index(gen_abi().btf_section(elf))
    cases = {"not-elf": b"#!/bin/sh\n" * 20, "cut": elf[:len(elf) // 3],
             "no-btf": elf.replace(b".BTF\0", b".XTF\0"),
             "bad-magic": elf[:btf_at] + b"\xeb\x9f" + elf[btf_at + 2:],
             "bad-lengths": elf[:btf_at + 8] + b"\xff" * 16 + elf[btf_at + 24:]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        r = run_generator(tmp_path / name)
        assert r.returncode == 1 and r.stdout == "", name
        assert r.stderr.startswith(f"gen_abi.py: {tmp_path / name}: "), (name, r.stderr)
        assert r.stderr.count("\n") == 1, (name, r.stderr)
    assert run_generator(tmp_path / "missing").returncode == 1


def test_layout_of_refuses_a_view_btf_does_not_have():
    """A union taken whole, a member the struct lacks, a format of another
    size, or a view shorter than the struct: each an ImportError naming it."""
    with pytest.raises(ImportError, match="io_uring_sqe.addr2 at 8.*one of each union"):
        Layout.of("io_uring_sqe")
    with pytest.raises(ImportError, match="struct io_uring_nope is not in the object's BTF"):
        Layout.of("io_uring_nope")
    with pytest.raises(ImportError, match="uw_call3.nope is not in the object's BTF"):
        Layout.of("uw_call3", "hdr", "nope")
    with pytest.raises(ImportError, match="uw_task.ppid: Q is not the size of I"):
        Layout.of("uw_task", ppid="Q")
    with pytest.raises(ImportError, match="uw_task: Python's view is 12 bytes, BTF's 16"):
        Layout.of("uw_task", "ppid", "pidns", "mntns")
    assert Layout.of("uw_task", ppid="i").unpack(struct.pack("<iIII", -1, 2, 3, 0))["ppid"] == -1


def test_source_tree_import_without_a_build_says_to_install(tmp_path):
    """python/ has no _abi.py (and no object): importing it from the
    checkout names what to do instead of failing somewhere deeper."""
    r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "import uringwatch.record.layout", os.path.join(REPO, "python")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        "ImportError: uringwatch.record._abi is missing: it is generated from the BPF "
        "object's BTF when the package is built (bpf/gen_abi.py). Install the package "
        "(pip install --no-deps .) instead of importing python/ from the source tree.")


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


def test_config_is_the_whole_rodata_cfg_section(btf):
    sec = named(btf, "DATASEC", ".rodata.cfg")
    (var,) = sec["vars"]
    assert var["offset"] == 0 and var["size"] == layout.CONFIG.size


def test_resolve_names_are_the_resolve_paths(btf):
    from uringwatch.probe import hooks
    assert sorted(layout.RESOLVE_NAMES.values()) == sorted(hooks.RESOLVE)
    assert set(layout.RESOLVE_NAMES) == set(enum_values(btf, "uw_resolve").values())


def test_overflow_aggregate_key_matches_the_header():
    """User space makes the aggregate the kernel falls back to by this key
    (a macro, not in BTF: an enumerator must fit an int)."""
    header = (pathlib.Path(__file__).parent.parent / "bpf" / "uringwatch.h").read_text()
    assert f"#define UW_AGG_OVERFLOW_UID {layout.AGG_OVERFLOW_UID:#x}\n" in header


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
