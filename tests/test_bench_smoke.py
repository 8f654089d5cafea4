"""The benchmark suite still builds and runs (bench/run.py --quick), so it
can't rot. No timing is asserted: only that every row is there and that the
event accounting is exact."""

import os
import subprocess
import sys

import pytest

from helpers import REPO, ROOT, meson
pytestmark = pytest.mark.skipif(not ROOT, reason="the benchmark suite loads BPF: needs root")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "build"
    subprocess.run([meson(), "setup", str(out), os.path.join(REPO, "bench")], check=True,
                   capture_output=True, timeout=60)
    subprocess.run(["ninja", "-C", str(out)], check=True, capture_output=True, timeout=120)
    return out


def rows(table: str) -> dict[str, list[str]]:
    """measurement -> the other cells of each table row."""
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and not set(cells[0]) <= {"-", " "}:
            out[cells[0]] = cells[1:]
    return out


def test_quick_run(build, tmp_path):
    results = tmp_path / "benchmark-results.md"
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "run.py"), "--quick",
                        "--build", str(build), "--write", str(results)],
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    got = rows(r.stdout)

    for mode in ("invalid", "files 8", "files 256", "buffers 64"):
        assert f"{mode}: untraced ns/call" in got
        assert f"{mode}: **uringwatch ÷ reference added cost**" in got
        assert f"{mode}: **uringwatch --resolve off ÷ reference added cost**" in got
        for who in ("reference tracer", "uringwatch --json", "library consumer", "bpftrace"):
            assert any(k.startswith(f"{mode}: added by") and who in k for k in got), (mode, who)
    assert "getppid: added with uringwatch attached" in got
    for prefix in ("consumer: events decoded", "consumer: JSON Lines", "start to attached",
                   "peak RSS", "record: records written per CPU-second",
                   "replay: records per CPU-second into Structs",
                   "replay: records per CPU-second to JSON",
                   "replay: records per CPU-second, filtered",
                   "replay: records per CPU-second, replay --stats"):
        assert any(k.startswith(prefix) for k in got), prefix

    accounting = {k: v for k, v in got.items()
                  if k.endswith(("received + coalesced + drops − calls",
                                 "written + coalesced + drops − calls"))}
    # CLI, library consumer, record (fairness off), library consumer (fairness on)
    assert len(accounting) == 4, accounting
    for k, (measured, _target, result) in accounting.items():
        assert measured == "0" and result == "met", (k, measured)
    calls = [int(v[0]) for k, v in got.items() if k.endswith("calls made")]
    assert all(n > 0 for n in calls)
    # the flood's victim, and each swarm attack's (bench/swarm)
    victims = [v for k, v in got.items() if "victim's distinct calls reported" in k]
    assert len(victims) == 5 and all(v[2] == "met" for v in victims), victims
    swarms = [v for k, v in got.items()
              if k.startswith("swarm, ") and "received + coalesced + drops − calls" in k]
    assert len(swarms) == 4 and all(v[0] == "0" and v[2] == "met" for v in swarms), swarms
    assert any("fairness added per call" in k for k in got)

    text = results.read_text()
    assert text.startswith("# Benchmark results\n")
    assert "## Benchmark suite (bench/run.py)" in text and r.stdout.strip() in text


def test_identity_cost_runs():
    """bench/identity_cost.py: a row per size and path, every path loaded."""
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "identity_cost.py"),
                        "--calls", "20", "--rounds", "1", "--sizes", "8,256"],
                       capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    table = [line for line in r.stdout.splitlines() if line.startswith("| 8 ") or
             line.startswith("| 256 ")]
    from uringwatch.probe import hooks
    paths = ["off"] + [p for p in ("proc", "probe_read", "btf") if hooks.resolve_paths()[p]]
    assert [line.split("|")[2].strip() for line in table] == paths * 2


def test_flood_rss_runs(build):
    """bench/flood_rss.py: the CLI's memory once attached and at its peak,
    and a flood in which every call is accounted for."""
    import json
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "flood_rss.py"),
                        "--build", str(build), "--threads", "1", "--seconds", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    assert 0 < got["rss_attached_mb"] <= got["peak_rss_mb"]
    assert got["calls"] > 0 and got["gap"] == 0 and got["capped_at"] is None


def test_floors_runs(build):
    """bench/floors.py: a row per tracer, the floors' references losing no
    record (it stops with an error if one did)."""
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "floors.py"),
                        "--build", str(build), "--rounds", "1", "--seconds", "0.1",
                        "--modes", "files 8"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    tracers = [line.split("|")[2].strip() for line in r.stdout.splitlines()
               if line.startswith("| files 8 ")]
    assert tracers == ["untraced", "reference", "reference floor", "reference floor + hook",
                       "reference floor + hook, reread", "reference floor + hook, reread, context",
                       "reference floor + hook, reread, context, carry",
                       "uringwatch --json --resolve off --no-fair",
                       "uringwatch --json --resolve off", "uringwatch --json --no-fair",
                       "uringwatch --json"]
