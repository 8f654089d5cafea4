"""The package's layers (docs/ARCHITECTURE.md, Package layout): each
subpackage imports only from layers below it, and no modules import each
other in a cycle. Read from the source with ast; imports inside functions
count as much as those at the top."""

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / "python" / "uringwatch"

# Lowest first. A unit is a subpackage or a module at the package's top; a
# unit may import itself and the units of lower layers, none of its own
# layer's others.
LAYERS = [
    {"errors", "exitcodes", "dictlike", "screen", "version"},   # shared leaves
    {"system"},                         # libbpf, privileges, cgroups
    {"record"},                         # the ABI, events, decoding and scanning records
    {"analysis", "outputs", "probe"},   # judging events, writing them, loading the object
    {"live", "recordings"},             # a running tracer; dump files
    {"commands"},                       # the command line
    {"__init__", "__main__"},           # the package's public face
]
TIER = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def module_name(path: pathlib.Path) -> str:
    parts = ["uringwatch", *path.relative_to(PKG).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 2 else parts)


def is_package(path: pathlib.Path) -> bool:
    return path.name == "__init__.py"


def imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports (a package's __init__ as
    "uringwatch.__init__" for the top one, its name for a subpackage)."""
    name = module_name(path)
    here = name.split(".") if is_package(path) and name != "uringwatch.__init__" else \
        name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here[:len(here) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if base != "uringwatch" and not base.startswith("uringwatch."):
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                out.add(full if full in modules else base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "uringwatch"}
    return {"uringwatch.__init__" if m == "uringwatch" else m for m in out} - {name}


def unit(module: str) -> str:
    return module.split(".")[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = sorted(PKG.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports(p, modules) for p in files}


def test_every_unit_has_a_layer(graph):
    assert {unit(m) for m in graph} <= set(TIER), "place the new subpackage or module in LAYERS"


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} imports {d}" for m, deps in graph.items() for d in deps
                  if unit(d) != unit(m) and TIER[unit(d)] >= TIER[unit(m)])


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None."""
    state: dict[str, int] = {}       # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state:
                found = visit(d, path + [d])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m, [m])
            if found:
                return found
    return None


def test_no_import_from_a_higher_layer_or_a_sibling(graph):
    wrong = upward(graph)
    assert not wrong, "\n".join(wrong)


def test_no_cycles(graph):
    found = cycle(graph)
    assert found is None, " -> ".join(found)


def test_the_checks_catch_what_they_forbid(graph):
    """Adversarial: an upward import, a sibling's, and a cycle inside one
    subpackage, each added to the real graph, are each reported."""
    up = {**graph, "uringwatch.record.decode": graph["uringwatch.record.decode"]
          | {"uringwatch.live.ringbuf"}}
    assert upward(up) == ["uringwatch.record.decode imports uringwatch.live.ringbuf"]
    sib = {**graph, "uringwatch.outputs.output": {"uringwatch.probe.hooks"}}
    assert upward(sib) == ["uringwatch.outputs.output imports uringwatch.probe.hooks"]
    loop = {**graph, "uringwatch.record.layout": {"uringwatch.record.decode"}}
    found = cycle(loop)
    assert found and found[0] == found[-1] and "uringwatch.record.layout" in found


def test_the_test_sees_the_imports(graph):
    """Adversarial: the walk finds relative, lazy and split imports (a test
    that read nothing would pass the two above)."""
    assert "uringwatch.record.layout" in graph["uringwatch.record.decode"]
    assert "uringwatch.analysis.findings" in graph["uringwatch.live.tracer"]   # inside a method
    assert "uringwatch.live.tracer" in graph["uringwatch.__init__"]
    assert len(graph) > 50


def test_the_public_names_stay_at_the_top():
    """What users import from `uringwatch` did not move with the modules."""
    import typing

    import uringwatch
    for name in ("Tracer", "replay", "decode", "Filters", "Recorder", "TracerError",
                 "RecordError", "DumpError", "LibbpfError", "Toctou", "AnyEvent"):
        assert name in uringwatch.__all__ and hasattr(uringwatch, name), name
    for kind in typing.get_args(uringwatch.AnyEvent):     # every kind of event
        assert getattr(uringwatch, kind.__name__) is kind
    assert callable(uringwatch.replay) and callable(uringwatch.decode)


def test_the_flat_paths_users_were_shown_still_import():
    """Agents written against the flat package (examples/agent.py imported
    uringwatch.containers; docs named uringwatch.events and output.Writer)
    keep working after the move into subpackages."""
    import subprocess
    import sys
    code = ("from uringwatch.containers import CgroupResolver\n"
            "from uringwatch.events import Op, Ring\n"
            "import uringwatch.output\n"
            "assert uringwatch.output.Writer and CgroupResolver and Op and Ring\n")
    subprocess.run([sys.executable, "-c", code], check=True)
