"""The fast paths print exactly what the plain ones did: replay's header
filters and --stats, and recordings written without decoding, compared byte
for byte with a reference built from decode() and the public output
functions, on the committed golden dump and on fresh recordings."""

import importlib
import json
import os
import pathlib
import struct
import subprocess
import sys

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import uring
from helpers import needs_root
from uringwatch.recordings import dump
from uringwatch.record import layout
from uringwatch.outputs import output
from uringwatch.live import ringbuf
from uringwatch.record.decode import decode

replay_mod = importlib.import_module("uringwatch.recordings.replay")   # the module, not replay()

UW = [sys.executable, "-m", "uringwatch"]
DATA = pathlib.Path(__file__).parent / "data"
GOLDEN = DATA / "golden-abi1.uwd"


def run_replay(*args):
    return subprocess.run(UW + ["replay", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, URINGWATCH_LIBBPF="/nonexistent"))


def reference_events(path):
    """Every record decoded one frame at a time, as replay did before the
    header fast path (single-record frames and ring frames alike)."""
    data = pathlib.Path(path).read_bytes()
    meta, start = dump.read_header(data, str(path))
    context, out = {}, []
    to_wall = meta.boot_to_wall_ns
    for f in dump.frames(data, start, str(path), []):
        if f.kind == dump.CONTEXT:
            c = json.loads(bytes(f.payload))
            context[c["cgroup_id"]] = (c["path"], c["container_id"])
        for buf, off, size in dump.records(f):
            out.append(decode(buf, off, size, to_wall, lambda cg: context.get(cg, (None, None))))
    return out


def json_lines(events) -> str:
    return "".join(msgspec.json.encode(ev).decode() + "\n" for ev in events)


def table(events) -> str:
    return output.HEADER + "\n" + "".join(output.row(ev) + "\n" for ev in events)


def stats(events, got) -> dict:
    """The --stats report built from the decoded events, with the recorded
    counters `got` has (drops, drops by process)."""
    return {**replay_mod.stats_of(iter(events)), "drops": got["drops"],
            "drops_by_process": got["drops_by_process"],
            "drops_by_aggregate": got["drops_by_aggregate"]}


FILTERS = [
    ([], lambda ev: True),
    (["--opcode", "FILES"], lambda ev: ev.opcode == 2),
    (["--opcode", "FILES,EVENTFD", "--failed"], lambda ev: ev.opcode in (2, 4) and ev.ret < 0),
    (["--failed"], lambda ev: ev.ret < 0),
    (["-u", "0"], lambda ev: ev.uid == 0),
    (["-u", "12345"], lambda ev: False),
]


def check_dump(path, expected_events, drops=None):
    for args, keep in FILTERS:
        kept = [ev for ev in expected_events if keep(ev)]
        r = run_replay(path, "--json", *args)
        assert r.returncode == 0, r.stderr
        assert r.stdout == json_lines(kept), args
        r = run_replay(path, *args)
        assert r.stdout == table(kept), args
        r = run_replay(path, "--stats", "--json", *args)
        got = json.loads(r.stdout)
        assert r.stdout.strip() == json.dumps(stats(kept, got)), args
    pid = expected_events[0].pid
    comm = expected_events[0].comm
    mine = [ev for ev in expected_events if ev.pid == pid and ev.comm == comm]
    assert run_replay(path, "--json", "-p", pid, "-c", comm).stdout == json_lines(mine)
    cg = expected_events[0].cgroup_id
    mine = [ev for ev in expected_events if ev.cgroup_id == cg]
    assert run_replay(path, "--json", "--cgroup", cg).stdout == json_lines(mine)
    t_s = expected_events[len(expected_events) // 2].ts // 10**9
    late = [ev for ev in expected_events if ev.ts >= t_s * 10**9]
    assert run_replay(path, "--json", "--since", t_s).stdout == json_lines(late)
    early = [ev for ev in expected_events if ev.ts <= t_s * 10**9]
    assert run_replay(path, "--json", "--until", t_s).stdout == json_lines(early)


def test_golden_replay_is_byte_identical():
    """The committed golden JSON is what the tracer printed live at ABI 1."""
    expected = GOLDEN.with_suffix(".jsonl").read_text()
    r = run_replay(GOLDEN, "--json")
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected
    events = reference_events(GOLDEN)
    assert json_lines(events) == expected
    check_dump(GOLDEN, events)


def test_golden_api_and_header_stats_agree():
    events = list(replay_mod.replay(str(GOLDEN)))
    reader = replay_mod.Reader([str(GOLDEN)])
    assert reader.stats() == replay_mod.stats_of(iter(events))


def flood_calls(n):
    ring = uring.setup()
    efd = os.eventfd(0)
    for i in range(n):
        uring.register(ring, 2, uring.ints(0, 1, -1), 3)      # FILES, fails: no files
        uring.register(ring, 4, uring.ints(efd), 1)           # EVENTFD
        uring.register(ring, 5, None, 0)                      # UNREGISTER_EVENTFD
        uring.register(ring, 9999, None, 0)                   # unknown opcode
    os.close(ring)
    os.close(efd)


def untimed(jsonl: str) -> list[dict]:
    """The lines without what differs between two tracers of the same calls."""
    out = []
    for line in jsonl.splitlines():
        ev = json.loads(line)
        for k in ("ts", "duration_ns", "ring_id", "cred_id"):   # ids: keyed per run
            ev.pop(k)
        ev["toctou"].pop("window_ns")
        out.append(ev)
    return out


@needs_root
def test_fresh_recording_is_byte_identical(tmp_path):
    """`--json -w` replays to what it printed, byte for byte; `record`
    (raw, never decoding) and `--json` alone, run beside it, to the same
    events but for the timing each tracer measures itself; both recordings pass the filter and --stats
    comparisons with the one-record-at-a-time decoder."""
    n = 300
    rec, both = tmp_path / "rec.uwd", tmp_path / "both.uwd"
    pid = str(os.getpid())
    procs = [subprocess.Popen(UW + argv + ["-p", pid, "--count", str(4 * n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in (["record", "-w", str(rec)], ["--json", "-w", str(both)],
                          ["--json"])]
    for p in procs:
        assert "tracing" in p.stderr.readline()
    flood_calls(n)
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "ring_full=0" in err, err
    live = outs[1][0]
    assert len(live.splitlines()) == 4 * n
    assert f"{4 * n} events recorded" in outs[0][1]
    r = run_replay(both, "--json")
    assert r.returncode == 0, r.stderr
    assert r.stdout == live
    r = run_replay(rec, "--json")
    assert r.returncode == 0, r.stderr
    assert untimed(r.stdout) == untimed(live)
    # --json alone writes most lines from templates, not from Events
    alone = outs[2][0]
    assert untimed(alone) == untimed(live)
    for line in alone.splitlines():
        ev = json.loads(line)
        assert ev["toctou"]["window_ns"] == ev["duration_ns"] > 0 and ev["ts"] > 10**18
    for path in (rec, both):
        events = reference_events(path)
        assert len(events) == 4 * n
        check_dump(path, events)


def ring_dump(path, mutate=lambda i, rec: rec, order=None, discarded=()):
    """The golden records in one RING frame, as `record` writes them (or
    those at the indices in `order`); mutate may change record i (the
    frame's crc is computed after); entries at `discarded` get the ring's
    DISCARD bit, as the BPF side would leave a record it gave up on."""
    data = GOLDEN.read_bytes()
    meta, start = dump.read_header(data, str(GOLDEN))
    frames = list(dump.frames(data, start, str(GOLDEN), []))
    golden = [bytes(buf[off:off + size]) for f in frames for buf, off, size in dump.records(f)]
    ring = bytearray()
    for i, j in enumerate(range(len(golden)) if order is None else order):
        rec = mutate(i, golden[j])
        flag = ringbuf.DISCARD if i in discarded else 0
        ring += ringbuf.HDR.pack(len(rec) | flag, 0) + rec + bytes(-len(rec) % 8)
    with open(path, "wb") as f:
        w = dump.DumpWriter(f, meta)
        for fr in frames:
            if fr.kind == dump.CONTEXT:
                w.write(dump.CONTEXT, bytes(fr.payload))
        w.write_ring(memoryview(ring))


def test_ring_frame_replays_like_single_records(tmp_path):
    path = tmp_path / "ring.uwd"
    ring_dump(path)
    expected = GOLDEN.with_suffix(".jsonl").read_text()
    assert run_replay(path, "--json").stdout == expected
    check_dump(path, reference_events(GOLDEN))


@pytest.mark.parametrize("field,value,what", [
    ("region", 1 << 20, "runs past the record's end"),   # region 0's addr..len: len huge
    ("kind", 9, "unknown record kind 9"),
    ("size", 17, "header says 17"),
])
def test_bad_record_in_a_ring_frame_is_reported_alone(tmp_path, field, value, what):
    """A record the decoder refuses, with an intact frame checksum: reported
    with its frame's offset, in --stats too; the others are all kept."""
    at = layout.CALL.offsets[field] if field != "kind" and field != "size" else \
        layout.CALL.offsets["hdr"] + layout.REC_HDR.offsets[field]
    if field == "region":
        at += layout.REGION.offsets["len"]
        value = struct.pack("<I", value)
    else:
        value = struct.pack("<H" if field == "kind" else "<I", value)

    def spoil(i, rec):
        return rec[:at] + value + rec[at + len(value):] if i == 2 else rec

    path = tmp_path / "bad.uwd"
    ring_dump(path, spoil)
    lines = GOLDEN.with_suffix(".jsonl").read_text().splitlines(keepends=True)
    r = run_replay(path, "--json")
    assert r.returncode == dump.EXIT_DAMAGED, r.stderr
    assert what in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == "".join(lines[:2] + lines[3:])
    r = run_replay(path, "--json", "--stats")
    assert r.returncode == dump.EXIT_DAMAGED and what in r.stderr
    assert json.loads(r.stdout)["events"] == len(lines) - 1


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1,
                max_size=6))
def test_mutated_ring_frames_only_raise_dump_error(tmp_path, flips):
    """Bytes changed after the checksum was made (so the fast paths see
    them; in a format 3 frame, its index and its ring bytes alike): only
    DumpError comes out, of events and of --stats alike."""
    path = tmp_path / "fuzz.uwd"
    ring_dump(path)
    data = bytearray(path.read_bytes())
    meta, start = dump.read_header(bytes(data), str(path))
    (frame,) = [f for f in dump.frames(bytes(data), start, str(path), [])
                if f.kind == dump.RING]
    body, sealed = frame.offset + dump._FRAME.size, frame.end - dump.XXH3.trailer.size
    for at, value in flips:
        data[body + at % (sealed - body)] = value
    data[sealed:frame.end] = dump.sealed(bytes(data[frame.offset + 4:sealed]))
    path.write_bytes(bytes(data))
    for run in (lambda r: list(r.events()), lambda r: r.stats()):
        reader = replay_mod.Reader([str(path)])
        run(reader)
        try:
            reader.raise_problems()
        except dump.DumpError:
            pass


@pytest.mark.parametrize("order", [
    [4] * 50,                       # one length throughout: read with iter_unpack
    [4] * 3 + [0] * 35 + [4] * 9,   # a multiple of the first's step, yet not uniform
    [4, 5] * 20 + [4],
])
def test_stats_of_uniform_and_nearly_uniform_frames(tmp_path, order):
    path = tmp_path / "u.uwd"
    ring_dump(path, order=order)
    events = reference_events(path)
    assert len(events) == len(order)
    for args in ([], ["--failed"], ["--opcode", "FILES"]):
        r = run_replay(path, "--stats", "--json", *args)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        kept = [ev for ev in events
                if (not args or (args[0] == "--failed" and ev.ret < 0)
                    or (args[0] == "--opcode" and ev.opcode == 2))]
        assert r.stdout.strip() == json.dumps(stats(kept, got)), args


def test_discarded_entries_are_skipped(tmp_path):
    path = tmp_path / "d.uwd"
    ring_dump(path, discarded={1, 4})
    lines = GOLDEN.with_suffix(".jsonl").read_text().splitlines(keepends=True)
    kept = [line for i, line in enumerate(lines) if i not in (1, 4)]
    r = run_replay(path, "--json")
    assert r.returncode == 0 and r.stdout == "".join(kept), r.stderr
    events = [ev for i, ev in enumerate(reference_events(GOLDEN)) if i not in (1, 4)]
    r = run_replay(path, "--json", "--stats")
    assert r.stdout.strip() == json.dumps(stats(events, json.loads(r.stdout)))
