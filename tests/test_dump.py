"""Record and replay: real recordings, identical output, damage reported
with a file and byte offset, never a traceback."""

import grp
import gzip
import io
import json
import os
import pathlib
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import uring
from helpers import needs_root
from uringwatch import DumpError, replay
from uringwatch.recordings import dump, recorder
from uringwatch.record import ringscan
from uringwatch.record.events import Event
from uringwatch.exitcodes import EXIT_ERROR

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
    out, err = p.communicate(timeout=60)
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
    assert meta.filters["pids"] == [os.getpid()] and meta.options["cap"] == 64


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
    RING frame holds one batch of the ring, at most reader.RING_BYTES)."""
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
    bad = tmp_path / "kind.uwd"
    bad.write_bytes(path.read_bytes() + dump._frame(99, b"xyz"))
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
    p.communicate(timeout=60)
    os.close(ring)
    files = sorted(tmp_path.glob("rot.uwd*"))
    assert 1 <= len(files) <= 2 and not path.exists()   # the first was rotated away
    for f in files:
        assert list(replay(str(f)))                          # each stands alone


def record_until_rotated(path, files: int, *extra, umask: int):
    """`record -w path` with a rotation at every batch (every call sent), under `umask`,
    making calls until `files` files exist; the tracer is then stopped."""
    p = subprocess.Popen(UW + ["record", "-w", str(path), "-C", "1e-6", "--no-fair", "-p", str(os.getpid()),
                               *extra], stderr=subprocess.PIPE, text=True, umask=umask)
    assert "tracing" in p.stderr.readline()
    ring = uring.setup()
    deadline = time.monotonic() + 60
    while len(list(path.parent.glob(path.name + "*"))) < files:
        assert time.monotonic() < deadline, "the recording did not rotate"
        uring.register(ring, uring.NO_SUCH_OPCODE, None, 0)
        time.sleep(0.05)        # a batch each, or a few: files roll over between them
    os.close(ring)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=30)[1]
    assert p.returncode == 0, err


def modes(path) -> dict:
    return {f.name: (stat.S_IMODE(f.stat().st_mode), f.stat().st_gid)
            for f in sorted(path.parent.glob(path.name + "*"))}


@needs_root
def test_recordings_are_owner_only_whatever_the_umask(tmp_path):
    path = tmp_path / "cap.uwd"
    record_until_rotated(path, 3, umask=0)
    found = modes(path)
    assert len(found) >= 3 and set(found.values()) == {(0o600, 0)}, found


@needs_root
def test_file_mode_and_group_and_existing_files_never_loosened(tmp_path):
    group = next(g for g in grp.getgrall() if g.gr_gid != 0)
    path = tmp_path / "cap.uwd"
    for name, mode in (("cap.uwd", 0o600), ("cap.uwd.1", 0o644)):  # from an earlier run
        (tmp_path / name).touch(mode)
        os.chmod(tmp_path / name, mode)
    record_until_rotated(path, 3, "--file-mode", "0640", "--group", group.gr_name, umask=0o077)
    found = modes(path)
    assert found.pop("cap.uwd") == (0o600, 0)        # tighter already: kept
    assert found.pop("cap.uwd.1") == (0o640, 0)      # looser: narrowed, its group kept
    assert found and set(found.values()) == {(0o640, group.gr_gid)}, found


@needs_root
def test_files_other_than_regular_are_left_as_they_are(tmp_path):
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR, os.makedev(1, 3))     # as `-w /dev/null`
    os.chmod(node, 0o666)
    os.close(recorder.create(str(node)))
    assert stat.S_IMODE(node.stat().st_mode) == 0o666


@needs_root
def test_a_file_record_cannot_make_is_named(tmp_path):
    path = tmp_path / "no-such-dir" / "cap.uwd"
    r = subprocess.run(UW + ["record", "-w", str(path), "--count", "1"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == EXIT_ERROR
    assert r.stderr == f"uringwatch: {path}: No such file or directory\n"


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
GOLDEN_START = dump.read_header(GOLDEN, "golden")[1] if GOLDEN else 0
GOLDEN_META = GOLDEN[dump._HEAD.size:GOLDEN_START - 4]


def with_header(body: bytes) -> bytes:
    """The golden dump's frames behind a header holding `body` (of the
    golden's format version, 1: its frames are checked by CRC-32)."""
    head = dump._HEAD.pack(dump.MAGIC, 1, 0, len(body)) + body
    return head + dump.sealed(head, 1) + GOLDEN[GOLDEN_START:]


def with_frame(kind: int, payload: bytes) -> bytes:
    """The golden dump with one more frame at its end."""
    return GOLDEN + dump._frame(kind, payload, version=1)


def without_abi(meta: bytes) -> bytes:
    return json.dumps({k: v for k, v in json.loads(meta).items() if k != "record_abi"}).encode()


@pytest.mark.parametrize("data,code,where,what", [
    (with_header(b"[]"), dump.EXIT_DAMAGED, dump._HEAD.size,
     "header is malformed: Expected `object`, got `array`"),
    (with_header(b"{"), dump.EXIT_DAMAGED, dump._HEAD.size, "header is not JSON"),
    (with_header(without_abi(GOLDEN_META)), dump.EXIT_DAMAGED, dump._HEAD.size,
     "header is malformed: Object missing required field `record_abi`"),
    (with_header(GOLDEN_META.replace(b'"record_abi": 1', b'"record_abi": "1"')),
     dump.EXIT_DAMAGED, dump._HEAD.size,
     "header is malformed: Expected `int`, got `str` - at `$.record_abi`"),
    (with_header(GOLDEN_META.replace(b'"options": {', b'"options": {"deep": ' + b"[" * 10000
                                     + b"]" * 10000 + b", ")),
     dump.EXIT_DAMAGED, dump._HEAD.size, "header nests too deeply"),
    (with_header(GOLDEN_META.replace(b'"record_abi": 1', b'"record_abi": 99')),
     dump.EXIT_UNKNOWN_ABI, 0, "record ABI 99 is not known here"),
    (with_frame(dump.CONTEXT, b'{"cgroup_id": "1", "path": "/", "container_id": null}'),
     dump.EXIT_DAMAGED, len(GOLDEN),
     "CONTEXT frame is malformed: Expected `int`, got `str` - at `$.cgroup_id`"),
    (with_frame(dump.CONTEXT, b'{"cgroup_id": 1'), dump.EXIT_DAMAGED, len(GOLDEN),
     "CONTEXT frame is not JSON"),
    (with_frame(dump.STATS, b"[]"), dump.EXIT_DAMAGED, len(GOLDEN),
     "STATS frame is malformed: Expected `object`, got `array`"),
    (with_frame(dump.END, b'{"emitted": 1.5}'), dump.EXIT_DAMAGED, len(GOLDEN),
     "END frame is malformed: Expected `int`, got `float` - at `$.emitted`"),
    (with_frame(dump.END, b'{"processes": [{"pid": 1}]}'), dump.EXIT_DAMAGED, len(GOLDEN),
     "END frame is malformed: Object missing required field `comm` - at `$.processes[0]`"),
])
def test_json_of_the_wrong_shape_is_reported(tmp_path, data, code, where, what):
    """A header or frame whose JSON is not what the writer writes: one line
    with its byte offset and the exit code; a bad frame costs that frame only."""
    bad = tmp_path / "shape.uwd"
    bad.write_bytes(data)
    r = run_replay(bad, "--json")
    assert r.returncode == code, r.stderr
    assert r.stderr == f"uringwatch: {bad}: byte {where}: {what}\n"
    if where == len(GOLDEN):    # a frame: every event is still there
        assert r.stdout == run_replay(DATA / "golden-abi1.uwd", "--json").stdout != ""
    else:
        assert r.stdout == ""


def test_counters_an_old_dump_lacks_are_not_shown():
    """The golden dump predates most counters: --stats shows the ones it
    recorded, in name order, not the newer ones as zeros."""
    r = run_replay(DATA / "golden-abi1.uwd", "--stats", "--json")
    assert r.returncode == 0, r.stderr
    assert list(json.loads(r.stdout)["drops"].items()) == [
        ("decode_errors", 0), ("emitted", 6), ("filtered", 0), ("inflight_full", 0),
        ("no_enter", 0), ("no_exit", 0), ("read_fault", 1), ("ring_full", 0)]


def test_header_reads_back_as_written():
    meta, _ = dump.read_header(GOLDEN, "golden")
    out = io.BytesIO()
    dump.DumpWriter(out, meta)
    assert dump.read_header(out.getvalue(), "copy")[0] == meta
    assert json.loads(out.getvalue()[dump._HEAD.size:-dump.XXH3.trailer.size]) == \
        json.loads(GOLDEN_META)


def test_counters_frame_holds_every_stat(tracer):
    """Every key of the tracer's stats() is a field of the STATS and END
    frames' Struct: one it lacked would be left out of recordings."""
    stats = tracer.tracer.stats()
    assert set(stats) == set(dump.Counters.__struct_fields__)
    assert msgspec.to_builtins(dump.counters(stats)) == stats


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


@pytest.mark.parametrize("name,data,code,what", [
    ("missing.uwd", None, EXIT_ERROR, "No such file or directory"),
    ("", None, EXIT_ERROR, "Is a directory"),
    ("empty.uwd", b"", dump.EXIT_NOT_A_DUMP, "byte 0: empty file"),
    ("text.uwd", b"GARBAGE!" * 8, dump.EXIT_NOT_A_DUMP, "byte 0: not a uringwatch dump"),
])
@pytest.mark.parametrize("mode", [[], ["--stats"]])
def test_a_file_that_cannot_be_replayed_is_one_line_before_any_output(
        tmp_path, name, data, code, what, mode):
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    r = run_replay(*mode, path)
    assert (r.returncode, r.stdout) == (code, "")
    assert r.stderr.startswith(f"uringwatch: {path}: {what}") and r.stderr.count("\n") == 1


def test_good_files_are_replayed_before_a_bad_ones_problem(tmp_path):
    empty = tmp_path / "cap.uwd.1"      # a crash just after a rotation
    empty.write_bytes(b"")
    r = run_replay(DATA / "golden-abi1.uwd", empty)
    assert r.returncode == dump.EXIT_NOT_A_DUMP and r.stdout.startswith("TIME ")
    assert r.stdout.count("\n") > 1 and r.stderr == f"uringwatch: {empty}: byte 0: empty file\n"


@needs_root
def test_an_unreadable_file_is_named(tmp_path):
    os.chmod(tmp_path, 0o755)
    path = tmp_path / "private.uwd"
    path.write_bytes((DATA / "golden-abi1.uwd").read_bytes())
    os.chmod(path, 0o600)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all"] + UW + ["replay", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (EXIT_ERROR, "")
    assert r.stderr == f"uringwatch: {path}: Permission denied\n"


def test_replay_to_a_closed_pipe_exits_cleanly():
    r, w = os.pipe()
    os.close(r)                                        # the reader went away first
    p = subprocess.run(UW + ["replay", str(DATA / "golden-abi1.uwd")], stdout=w, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    os.close(w)
    assert (p.returncode, p.stderr) == (0, "")


@needs_root
def test_record_to_a_closed_pipe_exits_cleanly():
    p = subprocess.Popen(UW + ["record", "-w", "-", "-p", str(os.getpid())],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "tracing" in p.stderr.readline()
    p.stdout.close()                                   # the reader goes away
    make_calls()
    err = p.communicate(timeout=60)[1]
    # a reader that goes away ends the recording, as it ends `uringwatch | head`
    assert p.returncode == 0 and "Traceback" not in err and "Exception" not in err, err


# -- format 3: XXH3-64 checks; formats 1 and 2 (CRC-32) still read

CORPUS = DATA / "calls-abi2.uwd.gz"     # format 2: the current record ABI's calls


def in_format_3(data: bytes) -> bytes:
    """A dump's frames rewritten by today's Writer: the same records, sealed
    as format 3 seals them."""
    meta, start = dump.read_header(data, "old")
    out = io.BytesIO()
    w = dump.DumpWriter(out, meta)
    for f in dump.frames(data, start, "old", []):
        if f.kind == dump.RING:
            w.write_ring(f.payload)
        else:
            w.write(f.kind, bytes(f.payload))
    return out.getvalue()


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    """The corpus as recorded (format 2) and rewritten as format 3, and its
    replay's JSON Lines (test_decode_corpus holds those to the corpus's)."""
    d = tmp_path_factory.mktemp("formats")
    old = gzip.decompress(CORPUS.read_bytes())
    (d / "v2.uwd").write_bytes(old)
    (d / "v3.uwd").write_bytes(in_format_3(old))
    r = run_replay(d / "v2.uwd", "--json")
    assert (r.returncode, r.stderr) == (0, "") and r.stdout.count("\n") > 500
    return d / "v2.uwd", d / "v3.uwd", r.stdout


def test_every_format_replays_the_same(formats):
    v2, v3, expected = formats
    assert struct.unpack_from("<H", v3.read_bytes(), 8) == (3,)
    r = run_replay(v3, "--json")
    assert (r.returncode, r.stderr, r.stdout) == (0, "", expected)
    stats = [json.loads(run_replay(p, "--stats", "--json").stdout) for p in (v2, v3)]
    assert stats[0] == stats[1] and stats[0]["events"] > 500


def ring_frames(data: bytes) -> list:
    _, start = dump.read_header(data, "f")
    return [f for f in dump.frames(data, start, "f", []) if f.kind == dump.RING]


def test_damaged_format_3_frames_are_said_and_counted(formats, tmp_path):
    """A flipped byte in each of two RING frames: their records alone are
    lost, the first is named with its byte offset, the other counted; the
    same for --stats."""
    data = formats[1].read_bytes()
    frames = ring_frames(data)
    hit = [frames[1], frames[3]]
    flipped, without = bytearray(data), data
    for f in reversed(hit):
        flipped[f.offset + dump._FRAME.size + 100] ^= 0x01
        without = without[:f.offset] + without[f.end:]
    bad, rest = tmp_path / "flipped.uwd", tmp_path / "without.uwd"
    bad.write_bytes(bytes(flipped))
    rest.write_bytes(without)
    for mode in (["--json"], ["--stats", "--json"]):
        r, expected = run_replay(bad, *mode), run_replay(rest, *mode)
        assert r.returncode == dump.EXIT_DAMAGED and expected.returncode == 0
        assert r.stderr == (f"uringwatch: {bad}: byte {hit[0].offset}: frame checksum "
                            f"mismatch (and 1 more problems)\n")
        assert r.stdout == expected.stdout != run_replay(formats[1], *mode).stdout


@pytest.mark.parametrize("damage,code,what", [
    (lambda b, f: b[:30] + bytes([b[30] ^ 1]) + b[31:], dump.EXIT_DAMAGED,
     "byte 0: header checksum mismatch"),
    # a frame sealed with CRC-32, as format 2 seals it: not format 3's check
    (lambda b, f: b[:f.offset] + dump._frame(dump.RING, bytes(f.payload), version=2)
     + b[f.end:], dump.EXIT_DAMAGED, "frame checksum mismatch"),
    # sealed, but its count says the index is longer than the frame
    (lambda b, f: b[:f.offset] + dump._frame(dump.RING, struct.pack("<I", 1 << 20)
                                             + bytes(f.payload)) + b[f.end:],
     dump.EXIT_DAMAGED, "ring frame's index runs past its end"),
    (lambda b, f: b[:f.end - 3], dump.EXIT_TRUNCATED,
     "truncated frame (file cut mid-record)"),
])
def test_format_3_checks(formats, tmp_path, damage, code, what):
    v3 = formats[1].read_bytes()
    last = ring_frames(v3)[-1]
    bad = tmp_path / "bad.uwd"
    bad.write_bytes(damage(v3, last))
    r = run_replay(bad, "--json")
    assert r.returncode == code
    assert what in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_recorded_frames_carry_their_index(recording):
    """The recorder stores the walk it took each batch with: every RING
    frame's entries come from its index (the index's own check: offsets
    following from the length words, the last entry ending the frame)."""
    frames = ring_frames(recording[0].read_bytes())
    assert frames and all(ringscan.indexed(f.payload, f.index) is not None for f in frames)


def test_an_index_that_does_not_match_is_said_and_its_records_kept(formats, tmp_path):
    """A sealed frame whose index is off by one entry (as a writer's bug
    would make it): damage said aloud, the records walked and all kept."""
    data = formats[1].read_bytes()
    f = ring_frames(data)[0]
    index = bytes(f.index)[:-4]
    payload = struct.pack("<I", len(index) // 4) + index + bytes(f.payload)
    bad = tmp_path / "index.uwd"
    bad.write_bytes(data[:f.offset] + dump._frame(dump.RING, payload) + data[f.end:])
    r = run_replay(bad, "--json")
    assert r.returncode == dump.EXIT_DAMAGED
    assert r.stderr == (f"uringwatch: {bad}: byte {f.offset}: ring frame's index does not "
                        f"match its records\n")
    assert r.stdout == formats[2]
