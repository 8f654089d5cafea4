"""Rings made before the tracer started: a server that made its ring and
registered a file and a buffer before tracing began gets them reported
once at start, under the id its later operations carry, and those
operations are joined to them."""

import ctypes
import os

import pytest

import uring
from helpers import needs_root
from test_rings import _child, _wait, collect, kinds, needs_ops

pytestmark = needs_root


class Server:
    """A forked process that makes rings and registers on them at once,
    then, each time it is told to, submits one READ_FIXED of slot 1 with
    buffer 0 on its first ring; it ends when its pipe closes."""

    def __init__(self, path: str):
        self.path = path
        self._ready_r, ready_w = os.pipe()
        go_r, self._go_w = os.pipe()
        self.pid = _child(lambda: self._serve(ready_w, go_r))
        os.close(ready_w)
        os.close(go_r)
        assert os.read(self._ready_r, 1) == b"r"

    def _serve(self, ready_w: int, go_r: int) -> None:
        os.close(self._go_w)                    # the parent's ends: EOF when it closes
        os.close(self._ready_r)
        ring = uring.Ring(8)
        f = os.open(self.path, os.O_RDONLY)
        buf = ctypes.create_string_buffer(4096)
        assert uring.register(ring.fd, uring.REGISTER_FILES, uring.ints(-1, f), 2) == 0
        iov = uring.Iovec(ctypes.addressof(buf), 4096)
        assert uring.register(ring.fd, uring.REGISTER_BUFFERS, iov, 1) == 0
        os.close(f)                             # the ring keeps its own reference
        sqpoll = uring.Ring(8, flags=uring.SETUP_SQPOLL, sq_thread_idle=1000)
        os.write(ready_w, b"r")
        while os.read(go_r, 1):
            ring.put(0, uring.OP_READ_FIXED, fd=1, addr=ctypes.addressof(buf), length=64,
                     flags=uring.SQE_FIXED_FILE, buf_index=0)
            assert ring.submit(1) > 0
            os.write(ready_w, b"d")
        sqpoll.close()
        ring.close()

    def read_fixed(self) -> None:
        os.write(self._go_w, b"g")
        assert os.read(self._ready_r, 1) == b"d"

    def stop(self) -> None:
        os.close(self._go_w)
        os.close(self._ready_r)
        _wait(self.pid)

    def sq_thread(self) -> int:
        """The tid of its SQPOLL ring's thread (named iou-sqp-PID)."""
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            with open(f"/proc/{self.pid}/task/{tid}/comm") as f:
                if f.read().strip() == f"iou-sqp-{self.pid}":
                    return int(tid)
        raise AssertionError("no SQPOLL thread")


def fdinfo_names_full_paths() -> bool:
    """Asked of the kernel, independently of uringwatch: whether an
    io_uring fd's fdinfo names a registered file by its full path (6.18)
    or by its last component only (older kernels)."""
    r = uring.Ring(4)
    f = os.open("/etc/hostname", os.O_RDONLY)
    try:
        assert uring.register(r.fd, uring.REGISTER_FILES, uring.ints(f), 1) == 0
        with open(f"/proc/self/fdinfo/{r.fd}") as info:
            return "/etc/hostname" in info.read()
    finally:
        os.close(f)
        r.close()


@pytest.fixture
def server(tmp_path):
    data = tmp_path / "served file"            # a space: fdinfo escapes it
    data.write_bytes(b"x" * 4096)
    s = Server(str(data))
    yield s
    s.stop()


def test_a_servers_registrations_are_reported_at_start_and_joined(server, needs_ops):
    from uringwatch import Filters, Tracer
    from uringwatch.outputs.output import row
    from uringwatch.screen import escape
    with Tracer(Filters(pids=frozenset([server.pid])), rings=True, count_interval=0.2) as t:
        server.read_fixed()
        late = uring.Ring(4)            # made while tracing, by a process not kept
        events = collect(t, lambda ev: any(e.reason == "count" for e in kinds(ev, "Op")))
        late.close()
    before = kinds(events, "RingBefore")
    assert len(before) == 2 and all(e.pid == server.pid for e in before)
    plain, = [e for e in before if e.sq_thread is None]
    sq, = [e for e in before if e.sq_thread is not None]
    assert sq.sq_thread == server.sq_thread() and sq.files == [] and sq.buffers == []
    assert plain.files_registered == 2 and [f.role for f in plain.files] == ["fds[1]"]
    registered, = plain.files
    named = server.path if fdinfo_names_full_paths() else "…/" + os.path.basename(server.path)
    assert (registered.path, registered.path_truncated) == (named, named != server.path)
    assert registered.source == "fdinfo" and not registered.verified
    assert [(b["index"], b["len"]) for b in plain.buffers] == [(0, 4096)]
    assert plain.memory[0].backing == "anon" and plain.memory[0].addr == plain.buffers[0]["base"]
    assert {pid for pid, _ in plain.holders} == {server.pid}
    assert (server.pid, plain.fd) in plain.holders
    ops = [e for e in kinds(events, "Op") if e.pid == server.pid]
    assert ops and {e.ring_id for e in ops} == {plain.ring_id}
    for op in ops:
        assert op.opcode_name == "READ_FIXED" and op.fixed_file == 1
        assert op.uses.file_identity == registered and op.uses.file == {"slot": 1}
        assert op.uses.buffer == plain.buffers[0]
        # the table shows the slot's file as the kernel's table holds it:
        # its whole path, where fdinfo may name only its last component
        assert op.target.path == server.path and op.target.role == "slot"
        assert f"file[1]={escape(server.path)}" in row(op)  # the table escapes the space
    assert sum(e.count for e in ops if e.reason == "count") == 1
    assert events.index(plain) < events.index(ops[0])   # reported first


def test_rings_of_processes_the_filters_drop_are_not_reported(server):
    from uringwatch import Filters, Tracer
    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True) as t:
        events = collect(t, lambda ev: False, timeout=0.5)
    assert all(e.pid != server.pid for e in kinds(events, "RingBefore"))


def test_a_ring_made_while_tracing_is_not_reported_as_from_before(needs_ops):
    """It has its ring event; the probe ring the tracer makes is not shown."""
    from uringwatch import Filters, Tracer
    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True) as t:
        r = uring.Ring(4)
        events = collect(t, lambda ev: any(e.fd == r.fd for e in kinds(ev, "Ring")))
        r.close()
    made, = [e for e in kinds(events, "Ring") if e.fd == r.fd]
    assert made.ring_id not in {e.ring_id for e in kinds(events, "RingBefore")}


def test_a_ring_shared_over_fork_is_reported_once_with_its_holders(tmp_path):
    from uringwatch import Filters, Tracer
    r = uring.Ring(4)
    go_r, go_w = os.pipe()
    child = _child(lambda: os.read(go_r, 1))
    try:
        with Tracer(Filters(pids=frozenset([os.getpid(), child])), rings=True) as t:
            events = collect(t, lambda ev: False, timeout=0.5)
    finally:
        os.write(go_w, b"x")
        _wait(child)
    mine = [e for e in kinds(events, "RingBefore") if (os.getpid(), r.fd) in e.holders]
    assert len(mine) == 1 and (child, r.fd) in mine[0].holders
    assert mine[0].pid == min(os.getpid(), child)
    r.close()


# fdinfo as kernels before about 6.7 print it (io_uring/fdinfo.c then:
# d_iname, `<none>` for an empty slot, personalities listed)
OLD_FDINFO = """pos:\t0
flags:\t02000002
SqThread:\t-1
SqThreadCpu:\t-1
UserFiles:\t3
    0: hostname
    1: <none>
    2: [eventfd]
UserBufs:\t1
    0: 0x7f00deadb000/4096
Personalities:
    1
\tUid:\t0\t\t0\t\t0\t\t0
\tGid:\t0\t\t0\t\t0\t\t0
\tGroups:\t0
\tCapEff:\t000001ffffffffff
PollList:
"""


def test_old_fdinfo_gives_leaf_names_marked_truncated():
    from uringwatch.record.before import parse_fdinfo
    got = parse_fdinfo(OLD_FDINFO)
    assert [(f.role, f.path, f.path_truncated, f.kind) for f in got["files"]] == [
        ("fds[0]", "…/hostname", True, None), ("fds[2]", "[eventfd]", False, "eventfd")]
    assert got["buffers"] == [{"index": 0, "base": 0x7f00deadb000, "len": 4096}]
    assert got["personalities"] == [1] and got["fields"]["SqThread"] == "-1"


@pytest.mark.parametrize("command", [["--json"], ["record"]], ids=["shown", "record"])
def test_a_recording_holds_the_rings_from_before_and_replays_them(server, tmp_path, needs_ops,
                                                                  command):
    """`-w` (shown live, and `record`, which decodes nothing): the rings
    found at start are records of the recording ahead of any operation, so
    its replay shows them as they were shown live, and joins the server's
    operations, their first uses too, to what they had registered."""
    import json
    import signal
    import subprocess
    import sys
    uw, cap = [sys.executable, "-m", "uringwatch"], tmp_path / "cap.uwd"
    argv = ["record"] * (command == ["record"]) + ["--rings", "-w", str(cap),
                                                    "-p", str(server.pid)]
    p = subprocess.Popen(uw + argv + ["--json"] * (command == ["--json"]),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "tracing" in p.stderr.readline()
    server.read_fixed()
    p.send_signal(signal.SIGINT)
    live, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    replayed = subprocess.run(uw + ["replay", str(cap), "--json"], capture_output=True,
                              text=True, timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    lines = replayed.stdout.splitlines()
    shown = [line for line in lines if '"kind":"ring_before"' in line]
    assert len(shown) == 2
    if command == ["--json"]:
        assert shown == [line for line in live.splitlines() if '"kind":"ring_before"' in line]
    ops = [json.loads(line) for line in lines if '"kind":"op"' in line]
    assert ops and all(op["uses"]["file_identity"]["source"] == "fdinfo" for op in ops)
