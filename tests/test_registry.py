"""registry.REGISTER, the one table of register opcodes, against every
other place an opcode appears: a new opcode is its C plan and one entry
there, and each step left out is named here (the last test adds a made-up
opcode to show it)."""

import gzip
import inspect
import json
import pathlib
import re

import pytest

from uringwatch.record import arguments, registry, rings
from uringwatch.record.registry import Register
from test_abi import btf, enum_values, flat_members, initial_bytes, named  # noqa: F401

REPO = pathlib.Path(__file__).parent.parent
# the newest corpus of real tracer output (tests/data/make_calls.py)
CORPUS = sorted((REPO / "tests" / "data").glob("calls-abi*.jsonl.gz"))[-1]


def btf_opcodes(btf) -> dict[str, int]:
    """The object's register opcodes: the kernel's enum, then uapi_newer.h's."""
    ops = {k.removeprefix("IORING_"): v for k, v in
           enum_values(btf, "io_uring_register_op").items()
           if k not in ("IORING_REGISTER_USE_REGISTERED_RING", "IORING_REGISTER_LAST")}
    for k, v in enum_values(btf, "uw_register_newer").items():
        ops.setdefault(k.removeprefix("UW_"), v)
    return ops


def planned(btf) -> list[int]:
    """The opcodes bpf/plans.h has a capture plan for."""
    var = named(btf, "VAR", "plans")
    (at,) = [v for v in named(btf, "DATASEC", ".rodata")["vars"] if v["type_id"] == var["id"]]
    plan = named(btf, "STRUCT", "uw_plan")
    known = flat_members(btf, plan)["known"]
    table = initial_bytes(".rodata")[at["offset"]:at["offset"] + at["size"]]
    return [op for op, off in enumerate(range(0, len(table), plan["size"])) if table[off + known]]


def readme_rows() -> list[tuple[list[tuple[int, str]], str, str]]:
    """The opcode table (docs/EVENTS.md): ([(number, name)], kernel cell, identities cell)."""
    section = (REPO / "docs" / "EVENTS.md").read_text().split("## What each opcode decodes")[1]
    rows = []
    for line in section.split("\n## ")[0].splitlines():
        cells = line.split("|")[1:-1]
        ops = re.findall(r"(\d+) `(\w+)`", cells[0]) if cells else []
        if ops:
            rows.append(([(int(n), name) for n, name in ops], cells[3].strip(), cells[4]))
    return rows


def seen_identities() -> dict[str, tuple[set, bool, bool]]:
    """Per opcode of the corpus: the fd roles its calls carried (the ring's
    aside), whether any had memory, whether any had a cred."""
    seen: dict[str, tuple[set, bool, bool]] = {}
    for line in gzip.decompress(CORPUS.read_bytes()).splitlines():
        ev = json.loads(line)
        if ev.get("kind") != "call":
            continue
        roles, memory, cred = seen.setdefault(ev["opcode_name"], (set(), False, False))
        roles |= {f["role"].split("[")[0] for f in ev["files"] or ()} - {"ring"}
        seen[ev["opcode_name"]] = (roles, memory or bool(ev["memory"]), cred or bool(ev["cred"]))
    return seen


def _version(since: str) -> tuple[int, ...]:
    return tuple(int(x) for x in since.lstrip("≈").split("."))


def _kernel_cell(entries: list[Register]) -> set[str]:
    """What the table may say of a row's first kernels."""
    sinces = [e.since for e in entries]
    low, high = min(sinces, key=_version), max(sinces, key=_version)
    return {", ".join(sinces), f"{low}–{high}"} | ({low} if low == high else set())


def problems(register: tuple[Register, ...], btf) -> list[str]:
    """Where the table and the rest disagree, one line each."""
    out = []
    names = {r.name: op for op, r in enumerate(register)}
    in_btf = btf_opcodes(btf)
    out += [f"{n}: not the object's opcode {op} (bpf/uapi_newer.h, or vmlinux.h)"
            for n, op in names.items() if in_btf.get(n) != op]
    out += [f"{n}: in the object ({op}), not in the registry"
            for n, op in in_btf.items() if n not in names]
    plans = planned(btf)
    out += [f"{r.name}: no capture plan (bpf/plans.h)"
            for op, r in enumerate(register) if op not in plans]
    for op, r in enumerate(register):
        spec = arguments.SPECS.get(op)
        if spec is None:
            out.append(f"{r.name}: no decoder (arguments.SPECS)")
        elif spec.cls is not None and spec.cls.__struct_config__.tag != r.name:
            out.append(f"{r.name}: its payload class is tagged "
                       f"{spec.cls.__struct_config__.tag} (payloads.py)")
    rows = readme_rows()
    listed = [(n, name) for ops, _, _ in rows for n, name in ops]
    for op, r in enumerate(register):
        if [n for n, name in listed if n == op and r.name.endswith(name)] != [op]:
            out.append(f"{r.name}: not once in the opcode table as {op}")
    for ops, kernel, idents in rows:
        entries = [register[n] for n, _ in ops if n < len(register)]
        if entries and kernel not in _kernel_cell(entries):
            out.append(f"{'/'.join(e.name for e in entries)}: the opcode table says kernel {kernel}")
        for e in entries:
            out += [f"{e.name}: the table's identities miss `{role}`" for role in e.files
                    if f"`{role}`" not in idents and f"`{role}[i]`" not in idents]
        if any(e.memory for e in entries) != ("memory" in idents):
            out.append(f"{'/'.join(e.name for e in entries)}: the table's identities and "
                       f"the registry disagree on memory")
    seen = seen_identities()
    for r in register:
        if r.name not in seen:
            out.append(f"{r.name}: not in the corpus (tests/data/make_calls.py)")
            continue
        roles, memory, cred = seen[r.name]
        if roles != set(r.files):
            out.append(f"{r.name}: calls carry fd roles {sorted(roles)}, "
                       f"the registry says {sorted(r.files)} (bpf/identity.h)")
        if (memory and not r.memory) or (cred and not r.cred):
            out.append(f"{r.name}: calls carry memory or a cred the registry does not say")
    handled = set(re.findall(r'"((?:UN)?REGISTER_\w+)"', inspect.getsource(
        rings.Ledger._registered)))
    out += [f"{r.name}: followed, but Ledger._registered does not handle it"
            for r in register if r.ledger and r.name not in handled]
    out += [f"{n}: handled by Ledger._registered, not followed (ledger=True)"
            for n in handled if n in names and not register[names[n]].ledger]
    return out


def test_the_registry_agrees_with_everything(btf):  # noqa: F811
    assert problems(registry.REGISTER, btf) == []


def test_each_missing_step_of_a_made_up_opcode_is_named(btf):  # noqa: F811
    """An entry with nothing behind it: every place it lacks is named."""
    made_up = Register("REGISTER_MADE_UP", "7.9", files=("fd",), ledger=True)
    found = problems((*registry.REGISTER, made_up), btf)
    assert [p.split(": ", 1)[1].split(" (")[0] for p in found] == [
        f"not the object's opcode {len(registry.REGISTER)}", "no capture plan",
        "no decoder", f"not once in the opcode table as {len(registry.REGISTER)}",
        "not in the corpus", "followed, but Ledger._registered does not handle it"]


@pytest.mark.parametrize("change, expect", [
    (dict(files=()), "calls carry fd roles ['fds'], the registry says []"),
    (dict(since="5.4"), "the opcode table says kernel 5.1"),
    (dict(ledger=False), "handled by Ledger._registered, not followed"),
    (dict(name="REGISTER_FILEZ"), "not the object's opcode 2"),
])
def test_an_entry_that_drifts_is_named(btf, change, expect):  # noqa: F811
    """REGISTER_FILES (2) changed in one fact: the place that disagrees says so."""
    table = list(registry.REGISTER)
    table[2] = table[2]._replace(**change)
    found = problems(tuple(table), btf)
    assert any(expect in p for p in found), found


# The IORING_OP sets bpf/ declares once (a bit mask of IORING_OP_* each),
# and the places in Python and the docs that must name the same opcodes.
def header_sets() -> dict[str, set[str]]:
    """NAME -> opcodes of every `#define NAME (X_OP(A) | X_OP(B) ...)`."""
    out = {}
    for header in ("targets.h", "opfile.h"):
        text = (REPO / "bpf" / header).read_text().replace("\\\n", " ")
        for name, body in re.findall(r"^#define (\w+_OPS) \((.*)\)$", text, re.M):
            out[name] = set(re.findall(r"[A-Z]+_OP\((\w+)\)", body))
    return out


def op_set_problems(python: dict[str, set[str]]) -> list[str]:
    """Where a set Python or the docs hold differs from the header's."""
    from uringwatch.record import opcodes
    sets, out = header_sets(), []
    for name, ops in python.items():
        for op in sorted(ops - sets[name]):
            out.append(f"{op}: named for {name}, not in the header's {name}")
        for op in sorted(sets[name] - ops):
            out.append(f"{op}: in the header's {name}, not named for it")
    for op in sorted(set().union(*sets.values()) - set(opcodes.SQE_OPS)):
        out.append(f"{op}: not in opcodes.SQE_OPS")
    return out


def python_op_sets() -> dict[str, set[str]]:
    from uringwatch.record import targets
    rings_doc = (REPO / "docs" / "RINGS.md").read_text()
    needs_file = rings_doc.split("`needs_file`:", 1)[1].split("; one", 1)[0]
    return {"ACT_OPS": set(targets.ACTION_OPS), "ACT_FIXED_OPS": set(targets.FIXED_OPS),
            "ACT_PATH_OPS": targets._PATHS | targets._TWO_PATHS,
            "ACT_TWO_PATH_OPS": set(targets._TWO_PATHS),
            "FILE_OPS": set(re.findall(r"`(\w+)`", needs_file))}


def test_the_op_sets_python_decodes_are_the_headers():
    assert op_set_problems(python_op_sets()) == []


def test_a_made_up_action_op_is_named_where_it_is_missing():
    """An action decoded in Python that bpf/targets.h never reports, and
    an op the header reports that Python has no decoder for."""
    sets = python_op_sets()
    sets["ACT_OPS"] = sets["ACT_OPS"] - {"LINKAT"} | {"MADE_UP"}
    assert op_set_problems(sets) == [
        "MADE_UP: named for ACT_OPS, not in the header's ACT_OPS",
        "LINKAT: in the header's ACT_OPS, not named for it"]
