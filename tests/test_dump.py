"""Record and replay: real recordings, identical output, damage reported
with a file and byte offset, never a traceback."""

import json
import os
import pathlib
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import uring
from helpers import needs_root
from uringwatch import DumpError, dump, replay
from uringwatch.events import Event

UW = [sys.executable, "-m", "uringwatch"]
DATA = pathlib.Path(__file__).parent / "data"
CALLS = [(uring.REGISTER_FILES, lambda: uring.ints(0, 1), 2),
         (uring.UNREGISTER_FILES, lambda: None, 0), (uring.NO_SUCH_OPCODE, lambda: None, 0),
         (2, lambda: None, 2), (11, lambda: None, 1)]


def make_calls():
    ring = uring.setup()
    for op, arg, nr in CALLS:
        uring.register(ring, op, arg(), nr)
    os.close(ring)


def trace_and_record(path, *extra):
    """Live --json and a recording of the same run."""
    p = subprocess.Popen(UW + ["--json", "-w", str(path), "--count", str(len(CALLS)),
                               "-p", str(os.getpid()), *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "tracing" in p.stderr.readline()
    make_calls()
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    return out


def run_replay(*args):
    return subprocess.run(UW + ["replay", *map(str, args)], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, URINGWATCH_LIBBPF="/nonexistent"))


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("recording needs root")
    path = tmp_path_factory.mktemp("dump") / "cap.uwd"
    live = trace_and_record(path)
    return path, live


def test_live_and_replay_json_are_identical(recording):
    path, live = recording
    r = run_replay(path, "--json")
    assert r.returncode == 0, r.stderr
    assert r.stdout == live
    assert [json.loads(line)["opcode"] for line in live.splitlines()] == [c[0] for c in CALLS]


def test_header_says_what_traced(recording):
    path, _ = recording
    meta, _ = dump.read_header(path.read_bytes(), str(path))
    probe = json.loads(subprocess.run(UW + ["probe", "--json"], capture_output=True,
                                      text=True, check=True).stdout)
    assert meta.features["hook"] == probe["chosen"]
    assert len(meta.features["hooks"]) == 2      # the enter and exit programs
    assert meta.kernel == os.uname().release and meta.features["tracefs"]


def test_replay_api_yields_the_same_structs(recording):
    path, live = recording
    got = [msgspec.json.encode(ev).decode() for ev in replay(str(path))]
    assert got == live.splitlines()


def test_replay_as_nobody_without_libbpf(recording):
    path, live = recording
    where = pathlib.Path(tempfile.mkdtemp(prefix="uwreplay-"))   # readable by nobody
    os.chmod(where, 0o755)
    copy = where / "copy.uwd"
    copy.write_bytes(path.read_bytes())
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all"] + UW + ["replay", "--json", str(copy)],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, URINGWATCH_LIBBPF="/nonexistent"))
    copy.unlink()
    where.rmdir()
    assert r.returncode == 0, r.stderr
    assert r.stdout == live


def test_replay_filters_and_stats(recording):
    path, _ = recording
    r = run_replay(path, "--json", "--opcode", "FILES", "--failed")
    assert [json.loads(line)["error"] for line in r.stdout.splitlines()] == ["EFAULT"]
    r = run_replay(path, "--stats", "--json")
    s = json.loads(r.stdout)
    assert s["events"] == len(CALLS) and s["by_opcode"]["REGISTER_FILES"] == 2
    assert s["errors"]["EINVAL"] >= 1 and s["drops"]["ring_full"] == 0
    assert s["drops"]["emitted"] >= len(CALLS)
    assert run_replay(path, "--json", "--since", "2000-01-01T00:00:00",
                      "--until", "1").stdout == ""


@pytest.mark.parametrize("damage,code,where", [
    (lambda b: b[:len(b) - 10], dump.EXIT_TRUNCATED, "truncated"),
    (lambda b: b"", dump.EXIT_NOT_A_DUMP, "empty file"),
    (lambda b: b"GARBAGE!" + b[8:], dump.EXIT_NOT_A_DUMP, "bad magic"),
    (lambda b: b[:8] + struct.pack("<H", 99) + b[10:], dump.EXIT_NEWER_FORMAT, "newer"),
])
def test_damaged_files(recording, tmp_path, damage, code, where):
    path, _ = recording
    bad = tmp_path / "bad.uwd"
    bad.write_bytes(damage(path.read_bytes()))
    r = run_replay(bad, "--json")
    assert r.returncode == code, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"uringwatch: {bad}: byte ") and where in line
    assert "Traceback" not in r.stderr


def test_flipped_byte_is_local(recording, tmp_path):
    """A flipped byte in one frame loses that frame's records only (one
    RING frame holds one batch of the ring, at most tracer.RING_BYTES)."""
    path, live = recording
    data = bytearray(path.read_bytes())
    _, start = dump.read_header(bytes(data), str(path))
    frames = [f for f in dump.frames(bytes(data), start, str(path), [])
              if f.kind in (dump.RECORD, dump.RING)]
    counts = [len(list(dump.records(f))) for f in frames]
    hit = len(frames) - 1
    data[frames[hit].offset + 40] ^= 0xFF
    bad = tmp_path / "flip.uwd"
    bad.write_bytes(bytes(data))
    r = run_replay(bad, "--json")
    assert r.returncode == dump.EXIT_DAMAGED
    assert f"byte {frames[hit].offset}: frame checksum mismatch" in r.stderr
    lines = live.splitlines()
    before = sum(counts[:hit])
    assert r.stdout.splitlines() == lines[:before] + lines[before + counts[hit]:]


def test_unknown_frame_kind_is_reported_and_skipped(recording, tmp_path):
    path, live = recording
    head = dump._FRAME.pack(dump.FRAME_MAGIC, 99, 0, 0, 3)
    extra = head + b"xyz" + struct.pack("<I", zlib.crc32(head[4:] + b"xyz"))
    bad = tmp_path / "kind.uwd"
    bad.write_bytes(path.read_bytes() + extra)
    r = run_replay(bad, "--json")
    assert r.returncode == dump.EXIT_UNKNOWN_FRAME and r.stdout == live
    assert "unknown frame kind 99" in r.stderr


@needs_root
def test_rotation_keeps_the_newest_files(tmp_path):
    path = tmp_path / "rot.uwd"
    p = subprocess.Popen(UW + ["record", "-w", str(path), "-C", "0.002", "-W", "2",
                               "-p", str(os.getpid()), "--count", "60"],
                         stderr=subprocess.PIPE, text=True)
    assert "tracing" in p.stderr.readline()
    ring = uring.setup()
    for i in range(60):
        uring.register(ring, uring.REGISTER_FILES, uring.ints(*range(64)), 64)
        uring.register(ring, uring.UNREGISTER_FILES, None, 0)
        if i % 5 == 4:      # files rotate between batches: make several
            time.sleep(0.1)
    p.communicate(timeout=20)
    os.close(ring)
    files = sorted(tmp_path.glob("rot.uwd*"))
    assert 1 <= len(files) <= 2 and not path.exists()   # the first was rotated away
    for f in files:
        assert list(replay(str(f)))                          # each stands alone


def test_golden_dumps_still_decode():
    """Dumps made by the real tracer at each record ABI, with their JSON."""
    goldens = sorted(DATA.glob("golden-abi*.uwd"))
    assert goldens
    for g in goldens:
        expected = [json.loads(line) for line in g.with_suffix(".jsonl").read_text().splitlines()]
        # fields added after the golden's ABI are there, empty
        added = {f: None for f in Event.__struct_fields__ if f not in expected[0]}
        assert [json.loads(msgspec.json.encode(ev)) for ev in replay(str(g))] == \
            [e | added for e in expected]


GOLDEN = (DATA / "golden-abi1.uwd").read_bytes() if (DATA / "golden-abi1.uwd").exists() else b""


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=4096),
                 st.lists(st.tuples(st.integers(0, max(len(GOLDEN) - 1, 0)),
                                    st.integers(0, 255)), max_size=8)
                 .map(lambda flips: _mutate(GOLDEN, flips)),
                 st.integers(0, max(len(GOLDEN), 1)).map(lambda n: GOLDEN[:n])))
def test_reader_only_raises_dump_error(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz.uwd"
    path.write_bytes(data)
    try:
        for _ in replay(str(path)):
            pass
    except DumpError:
        pass


def _mutate(data: bytes, flips) -> bytes:
    b = bytearray(data)
    for at, value in flips:
        if b:
            b[at % len(b)] = value
    return bytes(b)


@needs_root
def test_record_to_a_closed_pipe_exits_cleanly():
    p = subprocess.Popen(UW + ["record", "-w", "-", "-p", str(os.getpid())],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "tracing" in p.stderr.readline()
    p.stdout.close()                                   # the reader goes away
    make_calls()
    err = p.communicate(timeout=20)[1]
    # a reader that goes away ends the recording, as it ends `uringwatch | head`
    assert p.returncode == 0 and "Traceback" not in err and "Exception" not in err, err
