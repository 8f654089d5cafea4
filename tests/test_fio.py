"""A real client: fio's io_uring engine with registered files and fixed
buffers, traced as a user would (`uringwatch --rings -c fio --json`). Its
ring, its registrations and every operation, each joined to the data
file's path, counted exactly as fio counts its own I/O; with SQPOLL too,
whose operations the kernel's SQ thread submits for fio."""

import json
import shutil
import signal
import subprocess
import sys

import msgspec
import pytest

from helpers import needs_root, wait_for
from test_rings import submit_tracepoint_has_request

UW = [sys.executable, "-m", "uringwatch"]

pytestmark = [
    needs_root,
    pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (ci/setup)"),
]


def run_fio(data, *extra):
    """fio's job (small: 1 MiB, 64 I/Os of 4 KiB, reads and writes mixed),
    and its own count of each."""
    out = subprocess.run(
        ["fio", "--name=uw", f"--filename={data}", "--size=1M", "--bs=4k", "--rw=randrw",
         "--number_ios=64", "--ioengine=io_uring", "--registerfiles=1", "--fixedbufs=1",
         "--output-format=json", *extra],
        check=True, capture_output=True, text=True, timeout=120).stdout
    job, = json.loads(out[out.index("{"):])["jobs"]
    return {"READ_FIXED": job["read"]["total_ios"], "WRITE_FIXED": job["write"]["total_ios"]}


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """Both fio runs under one tracer: (events, {variant: (data path, fio's counts)})."""
    if not submit_tracepoint_has_request():
        pytest.skip("this kernel's submit tracepoint has no request: no operations")
    d = tmp_path_factory.mktemp("fio")
    out, err = d / "out.jsonl", d / "err.txt"
    p = subprocess.Popen(UW + ["--rings", "-c", "fio", "--json"],
                         stdout=open(out, "w"), stderr=open(err, "w"))
    try:
        wait_for(lambda: "tracing" in err.read_text() or p.poll() is not None, "the tracer")
        assert p.poll() is None, err.read_text()
        runs = {"plain": (d / "plain.dat", ()),
                "sqpoll": (d / "sqpoll.dat", ("--sqthread_poll=1",))}
        ran = {k: (str(path), run_fio(path, *extra)) for k, (path, extra) in runs.items()}
    finally:
        p.send_signal(signal.SIGINT)            # counts are read once more at stop
        assert p.wait(timeout=120) == 0, err.read_text()
    from uringwatch.record.events import AnyEvent
    events = [msgspec.json.decode(line, type=AnyEvent) for line in out.read_bytes().splitlines()]
    return events, ran


def ring_of(events, path):
    """The ring whose REGISTER_FILES named path: (ring event, its register
    events, its operations)."""
    calls = [e for e in events if e.__class__.__name__ == "Event"]
    files, = [e for e in calls if e.opcode_name == "REGISTER_FILES"
              and any(f.path == path for f in e.files)]
    rid = files.ring_id
    ring, = [e for e in events if e.__class__.__name__ == "Ring" and e.ring_id == rid]
    ops = [e for e in events if e.__class__.__name__ == "Op" and e.ring_id == rid]
    return ring, [e for e in calls if e.ring_id == rid], ops


@pytest.mark.parametrize("variant", ["plain", "sqpoll"])
def test_fio_ops_are_joined_to_its_data_file_and_counted_exactly(traced, variant):
    from uringwatch.outputs.output import row
    events, ran = traced
    path, counts = ran[variant]
    ring, calls, ops = ring_of(events, path)
    assert ring.comm == "fio" and ("SQPOLL" in ring.flag_names) == (variant == "sqpoll")
    bufs, = [e for e in calls if e.opcode_name == "REGISTER_BUFFERS"]
    assert bufs.ret == 0 and bufs.memory and all(m.backing == "anon" for m in bufs.memory)
    assert ops and {e.opcode_name for e in ops} <= set(counts)
    for op in ops:
        assert op.fixed_file == 0 and op.buffer_index is not None
        assert op.uses.file_identity.path == path and op.uses.file_identity.kind == "file"
        assert op.uses.file["slot"] == 0
        assert op.pid == ring.pid                   # fio's, also when its SQ thread submits
        assert op.sq_thread == (variant == "sqpoll")
        if op.sq_thread:
            assert op.tid != ring.pid and op.comm == f"iou-sqp-{ring.pid}"
        assert f"file[0]={path}" in row(op)
    seen = {name: sum(e.count for e in ops if e.reason == "count" and e.opcode_name == name)
            for name in counts}
    assert seen == counts
