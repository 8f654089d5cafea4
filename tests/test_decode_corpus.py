"""A recording of every opcode and of the benchmark's workloads decodes to
the JSON Lines the decoder printed when it was made (tests/data/make_calls.py):
a faster decoder must print the same bytes, through replay and through
decode() record by record. Records that repeat a call are decoded once:
their events must still own everything mutable."""

import gzip
import importlib
import json
import os
import pathlib
import subprocess
import sys

import msgspec
import pytest

from test_decode import FILES_REGIONS, abi3_of, call_record, uw_file
from uringwatch.recordings import dump
from uringwatch.record import layout
from uringwatch.record.decode import Runs, decode, decode_many
from uringwatch.outputs.output import Writer

decode_mod = importlib.import_module("uringwatch.record.decode")   # the package exports decode()

DATA = pathlib.Path(__file__).parent / "data"
ABIS = (2, 3)      # the recordings made at each record ABI since identities


@pytest.fixture(scope="module", params=ABIS, ids=[f"abi{n}" for n in ABIS])
def corpus(request, tmp_path_factory) -> tuple[pathlib.Path, bytes]:
    base = DATA / f"calls-abi{request.param}"
    path = tmp_path_factory.mktemp("corpus") / "calls.uwd"
    path.write_bytes(gzip.decompress(base.with_suffix(".uwd.gz").read_bytes()))
    return path, gzip.decompress(base.with_suffix(".jsonl.gz").read_bytes())


def test_replay_prints_the_same_json_lines(corpus):
    path, expected = corpus
    r = subprocess.run([sys.executable, "-m", "uringwatch", "replay", "--json", str(path)],
                       capture_output=True, timeout=120,
                       env=dict(os.environ, URINGWATCH_LIBBPF="/nonexistent"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected


def test_each_record_decodes_to_the_same_json(corpus):
    path, expected = corpus
    data = path.read_bytes()
    meta, start = dump.read_header(data, str(path))
    context, runs, got = {}, Runs(), []
    for f in dump.frames(data, start, str(path), []):
        if f.kind == dump.CONTEXT:
            c = json.loads(bytes(f.payload))
            context[c["cgroup_id"]] = (c["path"], c["container_id"])
        for buf, off, size in dump.records(f, str(path)):
            ev = decode(buf, off, size, meta.boot_to_wall_ns,
                        lambda cg: context.get(cg, (None, None)), runs=runs)
            if ev is not None:
                got.append(msgspec.json.encode(ev) + b"\n")
    assert b"".join(got) == expected


def test_the_abi2_recording_packed_as_abi3_decodes_the_same():
    """Every call the kernel sent as ABI 2, sent as ABI 3 sends it (only
    the parts it has): the same JSON, field for field."""
    data = gzip.decompress((DATA / "calls-abi2.uwd.gz").read_bytes())
    meta, start = dump.read_header(data, "abi2")
    calls = 0
    for f in dump.frames(data, start, "abi2", []):
        for buf, off, size in dump.records(f, "abi2"):
            rec = bytes(buf[off:off + size])
            if layout.REC_HDR.unpack(rec)["kind"] != layout.KIND_CALL:
                continue
            packed = abi3_of(rec)
            assert len(packed) < len(rec)
            assert msgspec.json.encode(decode(packed, 0, len(packed), 0)) == \
                msgspec.json.encode(decode(rec, 0, size, 0))
            calls += 1
    assert calls > 500


def test_the_kernel_packs_abi3_records_as_the_format_says():
    """Each call record the kernel sent as ABI 3 is what the format
    (tests/test_decode.abi3_of) makes of the ABI-2 record it stands for,
    byte for byte: nothing sent that the call does not have, nothing of
    an earlier call; an invalid call's record is a fraction of ABI 2's."""
    data = gzip.decompress((DATA / "calls-abi3.uwd.gz").read_bytes())
    meta, start = dump.read_header(data, "abi3")
    invalid = []
    for f in dump.frames(data, start, "abi3", []):
        for buf, off, size in dump.records(f, "abi3"):
            rec = bytes(buf[off:off + size])
            if layout.REC_HDR.unpack(rec)["kind"] != layout.KIND_CALL:
                continue
            assert abi3_of(decode_mod._as_abi2(rec)) == rec
            h = layout.CALL3.unpack(rec)
            if h["opcode"] == 9999:
                invalid.append(h["head_len"])
    # its raw snapshot's descriptor, ppid and namespaces, hostname: 232
    # bytes before its data, where ABI 2 sent 432
    assert set(invalid) == {layout.CALL3.size + layout.REGION.size + layout.TASK.size +
                            layout.NS_CTX.size}


def test_a_repeated_call_gives_events_that_share_nothing_mutable():
    first = call_record(regions=FILES_REGIONS, files=[uw_file()], nchanged=1,
                        flags=layout.F_CHANGED, changed=(1 << 24,) + (0,) * 15)
    again = call_record(regions=FILES_REGIONS, files=[uw_file()], nchanged=1,
                        flags=layout.F_CHANGED, changed=(1 << 24,) + (0,) * 15,
                        ts_enter=5000, ts_exit=5600)
    a, b, c = (decode(r, 0, len(r), 0) for r in (first, again, again))
    assert (b.ts, b.duration_ns, b.toctou.window_ns) == (5000, 600, 600)
    assert msgspec.structs.replace(a, ts=5000, duration_ns=600,
                                   toctou=b.toctou) == b == c
    a.payload.fds.append(99)
    a.toctou.changes.append("x")
    a.files.clear()
    assert (b.payload.fds, b.toctou.changes, len(b.files)) == ([4, -1, -2], ["fds[0]"], 1)
    assert (c.payload.fds, c.toctou.changes, len(c.files)) == ([4, -1, -2], ["fds[0]"], 1)


@pytest.mark.parametrize("arg", [0x1000, decode_mod._TS_MARK, decode_mod._DURATION_MARK],
                         ids=["plain", "arg-is-the-ts-stand-in", "arg-is-the-duration-stand-in"])
def test_lines_from_templates_are_the_events_json(arg):
    """decode_many(lines=True) writes a repeated call's JSON line from its
    first event's template: the same bytes the encoder writes for each
    event, whatever the context, and also when the record's own numbers
    are the template's stand-ins (its events are then encoded)."""
    stamps = [(1000, 1500), (5000, 5600), (9000, 9000), (2**62, 2**62 + 123456789)]
    recs = [call_record(opcode=9999, arg=arg, ts_enter=t0, ts_exit=t1) for t0, t1 in stamps]
    recs.append(call_record(regions=FILES_REGIONS, files=[uw_file()], arg=arg))
    buf = b"".join(recs)
    spans, off = [], 0
    for r in recs:
        spans.append((off, len(r)))
        off += len(r)
    for context in (None, lambda cg: ("/a.slice", None), lambda cg: ("/b", "c" * 64)):
        events, _ = decode_many(buf, spans, 77, context)
        items, errors = decode_many(buf, spans, 77, context, lines=True)
        assert not errors and len(items) == len(events) == len(recs)
        lines = [i for i in items if isinstance(i, bytes)]
        if arg == 0x1000:
            assert len(lines) >= 3
        else:
            assert not lines
        with open(os.devnull, "w") as out:
            got = Writer(out, True)._json_lines(items)
        assert got == msgspec.json.Encoder().encode_lines(events)
