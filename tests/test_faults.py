"""Floods, stalls, signals and hostile fds: the tracer never crashes, never
leaves anything in the kernel, and never loses an event without counting it."""

import ctypes
import errno
import json
import mmap
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

import uring
from helpers import needs_root, pipe_full, wait_for
from uringwatch import Filters, Tracer

UW = [sys.executable, "-m", "uringwatch"]


def bpf_ids(kind):
    out = subprocess.run(["bpftool", "-j", kind, "show"], capture_output=True, text=True,
                         check=True).stdout
    return {o["id"] for o in json.loads(out or "[]")}


def flood(calls_per_thread, threads):
    ring = uring.setup()
    ts = [threading.Thread(target=lambda: [uring.register(ring, uring.NO_SUCH_OPCODE, None, 0)
                                           for _ in range(calls_per_thread)])
          for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    os.close(ring)
    return calls_per_thread * threads


@needs_root
def test_flood_accounting_is_exact():
    """A 16 KiB ring and a consumer that doesn't read during the flood: most
    records are dropped, and every one is counted. Fairness off: every call
    goes to the ring (tests/test_fairness.py floods with it on)."""
    with Tracer(Filters(pids=frozenset([os.getpid()])), ring_bytes=16384, fair=False) as t:
        calls = flood(5000, 4)
        received = 0
        while batch := t.poll(0.2):
            received += sum(1 for e in batch if e.opcode == uring.NO_SUCH_OPCODE)
        s = t.stats()
    assert s["ring_full"] > 0
    assert received + s["ring_full"] + s["inflight_full"] == calls
    assert s["emitted"] == received and s["decode_errors"] == 0


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signals_leave_nothing_in_the_kernel(sig):
    before = {k: bpf_ids(k) for k in ("prog", "map", "link")}
    p = subprocess.Popen(UW + ["--json", "-p", str(os.getpid())], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert "tracing" in p.stderr.readline()
    mine = {k: bpf_ids(k) - before[k] for k in before}
    assert mine["prog"] and mine["map"] and mine["link"]
    p.send_signal(sig)
    p.communicate(timeout=60)
    deadline = time.monotonic() + 60     # the kernel frees them asynchronously
    while time.monotonic() < deadline:
        left = {k: bpf_ids(k) & mine[k] for k in mine}
        if not any(left.values()):
            break
        time.sleep(0.05)
    assert not any(left.values()), left
    # an immediate restart works
    q = subprocess.Popen(UW + ["--json", "--count", "1", "-p", str(os.getpid())],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "tracing" in q.stderr.readline()
    ring = uring.setup()
    uring.register(ring, uring.NO_SUCH_OPCODE, None, 0)
    out, _ = q.communicate(timeout=60)
    assert json.loads(out)["opcode"] == uring.NO_SUCH_OPCODE
    os.close(ring)


@needs_root
def test_stalled_stdout_drops_are_counted_and_it_recovers():
    p = subprocess.Popen(UW + ["--json", "--no-fair", "-p", str(os.getpid())],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert b"tracing" in p.stderr.readline()
    calls = flood(100000, 2)          # nobody reads stdout meanwhile: the pipe fills
    wait_for(lambda: pipe_full(p.stdout), "the tracer to fill its stdout")
    rss_kb = int(next(line.split()[1] for line in open(f"/proc/{p.pid}/status")
                      if line.startswith("VmRSS")))
    p.lines = 0

    def read():
        while chunk := p.stdout.read1(1 << 16):
            p.lines += chunk.count(b"\n")
    reader = threading.Thread(target=read)
    reader.start()                    # the pipe drains: the tracer goes on
    # more lines than a full pipe holds (each is over 64 bytes)
    wait_for(lambda: p.lines > 1024, "the tracer to go on writing")
    p.send_signal(signal.SIGINT)
    err = p.stderr.read().decode()
    p.wait(10)
    reader.join(10)
    counters = dict(kv.split("=") for kv in err.strip().splitlines()[-1].split("; ")[1]
                    .split(", "))
    assert int(counters["ring_full"]) > 0
    assert p.lines + int(counters["ring_full"]) + int(counters["inflight_full"]) == calls
    assert rss_kb < 100_000


@needs_root
def test_hostile_fds(tracer):
    efd = os.eventfd(0)
    ring = uring.setup()
    closed = uring.setup()
    os.close(closed)                  # nothing opened after this reuses it
    ents = (uring.RsrcUpdate * 1)(uring.RsrcUpdate(offset=0xFFFFFFFF, data=ring))
    assert uring.register(ring, uring.REGISTER_RING_FDS, ents, 1) == 1
    index = ents[0].offset
    files, by_index = uring.REGISTER_FILES, uring.REGISTER_FILES | uring.USE_REGISTERED_RING
    cases = [(-1, files, -errno.EINVAL), (closed, files, -errno.EBADF),
             (efd, files, -errno.EOPNOTSUPP), (index, by_index, 0), (15, by_index, -errno.EBADF)]
    for fd, op, want in cases:
        assert uring.register(fd, op, uring.ints(0), 1) == want, (fd, op)
        if want == 0:
            assert uring.register(index, uring.UNREGISTER_FILES | uring.USE_REGISTERED_RING,
                                  None, 0) == 0
    tracer.mine(1)   # RING_FDS
    for fd, op, want in cases:
        (ev,) = tracer.mine(1, ret=want, fd=fd)
        assert ev.registered_ring == bool(op >> 31) and ev.payload.fds == [0]
        assert ev.blind == (fd == -1)
    os.close(efd)
    os.close(ring)


@needs_root
def test_array_unmapped_mid_call(tracer):
    """REGISTER_BUFFERS copies iovec 0, then pins its 64 MiB (tens of ms,
    measured 43 ms here) before it reads iovec 1. A thread unmaps the iovec
    array meanwhile: the event still comes, and says the memory was gone at
    exit. The kernel then fails the call with EFAULT. Whether the timer
    fires inside the call is the scheduler's choice: a try where it fired
    after the call is undone and tried again, up to 20 times."""
    libc = ctypes.CDLL(None)
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mmap.restype = ctypes.c_void_p
    big = mmap.mmap(-1, 64 << 20)
    ring = uring.setup()
    for _ in range(20):
        # a page no Python object owns: only the timer unmaps it
        addr = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE,
                         mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        iov = (uring.Iovec * 2).from_address(addr)
        iov[0] = uring.Iovec(ctypes.addressof(ctypes.c_char.from_buffer(big)), 64 << 20)
        iov[1] = uring.Iovec(iov[0].iov_base, 4096)
        del iov
        th = threading.Timer(0.005, libc.munmap, args=(addr, mmap.PAGESIZE))
        th.start()
        ret = uring.register(ring, uring.REGISTER_BUFFERS, addr, 2)
        th.join()
        (ev,) = tracer.mine(1, opcode=uring.REGISTER_BUFFERS)
        if ret != -errno.EFAULT:                    # unmapped after the call
            assert ret == ev.ret == 0
            uring.register(ring, uring.UNREGISTER_BUFFERS, None, 0)
            tracer.mine(1, opcode=uring.UNREGISTER_BUFFERS)
            continue
        break
    assert ev.ret == ret == -errno.EFAULT
    assert ev.duration_ns > 5_000_000               # the unmap fell inside the call
    assert ev.payload.unreadable == [] and len(ev.payload.iovecs) == 2  # read at entry
    assert ev.toctou.exit_unreadable and not ev.toctou.changed
    os.close(ring)


# Makes argv[1] calls, each different from the one before (so none is
# coalesced), once a line comes on stdin; a process of its own, so the
# suite's session tracer, which traces this one, is not flooded.
CALLER = f"""
import os, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import uring
print(os.getpid(), flush=True)
sys.stdin.readline()
ring = uring.setup()
for i in range(int(sys.argv[1])):
    uring.register(ring, 9999 - i % 2, None, 0)
"""


def blocked_tracer(args, signals, calls=3000):
    """Starts `uringwatch ARGS -p <a caller>` while nobody reads its stdout;
    the caller's calls fill the pipe and the tracer blocks writing. Sends
    the signals, then reads everything. (stdout bytes, stderr text)"""
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(calls)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = caller.stdout.readline().strip()
    p = subprocess.Popen(UW + args + ["-p", pid], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert b"tracing" in p.stderr.readline()
    caller.communicate("go\n", timeout=60)
    wait_for(lambda: pipe_full(p.stdout), "the tracer to block on its full stdout")
    for sig in signals:               # the handler counts them, in this order
        p.send_signal(sig)
    out = p.stdout.read()             # the reader catches up
    err = p.stderr.read().decode()
    p.wait(10)
    return out, err


def shown(err: str, verb: str = "shown") -> int:
    return int(re.search(rf"(\d+) events {verb}", err)[1])


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_stop_on_a_full_pipe_writes_whole_batches(sig):
    """The first signal lets the batch in progress, and what is queued, go
    out whole: nothing lost, no line cut."""
    out, err = blocked_tracer(["--json"], [sig])
    lines = out.splitlines()
    assert [json.loads(line)["opcode"] for line in lines] == [9999, 9998] * 1500
    assert len(lines) == shown(err) == 3000


@needs_root
def test_second_signal_stops_at_a_line_end_and_counts_what_was_written():
    out, err = blocked_tracer(["--json"], [signal.SIGINT, signal.SIGTERM])
    lines = out.splitlines(keepends=True)
    assert all(line.endswith(b"\n") and json.loads(line)["kind"] == "call" for line in lines)
    assert len(lines) == shown(err) < 3000


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_recording_to_a_full_pipe_is_whole(sig, tmp_path):
    from uringwatch import replay
    out, err = blocked_tracer(["record", "-w", "-"], [sig])
    dump = tmp_path / "piped.uwd"
    dump.write_bytes(out)
    assert [e.opcode for e in replay(str(dump))] == [9999, 9998] * 1500
    assert shown(err, "recorded") == 3000



class _Signals:
    """What output.WholeWriter reads of cli._Stop: a count and a wakeup fd."""

    def __init__(self):
        self.signals = 0
        self.wakeup_fd, self._w = os.pipe()

    def send(self, n: int, to: int) -> None:
        """n signals counted, as cli._Stop's handler counts them; one sent
        to thread `to` cuts its write short, as a real one does."""
        self.signals += n
        os.write(self._w, b"x")
        signal.pthread_kill(to, signal.SIGUSR1)

    def drain_wakeup(self) -> None:
        os.read(self.wakeup_fd, 512)


def test_a_write_cut_by_signals_is_a_result_not_an_exception():
    """A third signal while the pipe is full ends the write at once: the
    bytes that got out and `whole` False come back (no exception to catch),
    and the next write says so again rather than blocking."""
    from uringwatch.outputs.output import WholeWriter
    r, w = os.pipe()
    stop = _Signals()
    out = WholeWriter(w, stop)
    data = bytes(4 << 20)       # far more than a pipe holds
    old = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:        # the write blocks meanwhile
        threading.Timer(0.2, stop.send, (3, threading.get_ident())).start()
        got = out.write(data, unit=None)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert not got.whole and 0 < got.count < len(data)
    assert len(os.read(r, 8 << 20)) <= got.count
    again = out.write(b"more\n")
    assert again == (0, False)
    for fd in (r, w, stop.wakeup_fd, stop._w):
        os.close(fd)


@needs_root
def test_threads_racing_for_one_slot_account_every_call():
    """One slot for four threads: a call that finds none when they overlap
    is counted (inflight_full) and leaves a marker its thread's next call
    replaces; whichever way they race, no call is lost uncounted and none
    is counted twice."""
    with Tracer(Filters(pids=frozenset([os.getpid()])), max_inflight=1, fair=False) as t:
        calls = flood(500, 4)
        received = 0
        while batch := t.poll(0.2):
            received += sum(1 for e in batch if e.opcode == uring.NO_SUCH_OPCODE)
        s = t.stats()
    assert received + s["inflight_full"] == calls
    assert (s["no_enter"], s["no_exit"], s["ring_full"], s["decode_errors"]) == (0, 0, 0, 0)
