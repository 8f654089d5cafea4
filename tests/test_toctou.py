"""A thread rewrites the fds array while the kernel copies it: the tracer
must see the change; without the writer it must never claim one."""

import ctypes
import os
import resource
import threading

import uring

N = 1024              # captured and compared (the session tracer's cap)
CALL = 16384          # fds the kernel copies: a window of milliseconds
TRIES = 300           # stops at the first change


def register_many(tracer, fds, tries):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, CALL + 64)), hard))
    ring = uring.setup()
    events = []
    for _ in range(tries):
        assert uring.register(ring, 2, fds, CALL) == 0
        uring.register(ring, 3, None, 0)
        events += [e for e in tracer.mine(2) if e.opcode == 2]
        if any(e.toctou.changed for e in events):
            break
    os.close(ring)
    return events


def test_racing_writer_is_caught(tracer):
    fds = (ctypes.c_int32 * CALL)()       # all fd 0, valid
    stop = threading.Event()

    # Separate CPUs: a woken thread is queued on its waker's CPU, and the
    # caller's CPU is busy in the kernel for the whole call, so without
    # pinning the writer never ran during a call (measured: 0 writes).
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})

    def writer():
        os.sched_setaffinity(0, {1})
        i = 0
        while not stop.is_set():
            i += 1
            fds[N - 1] = i % 2            # the last one captured; fds 0 and 1 are valid
    t = threading.Thread(target=writer)
    t.start()
    try:
        events = register_many(tracer, fds, TRIES)
    finally:
        stop.set()
        t.join()
        os.sched_setaffinity(0, mine)
    changed = [e for e in events if e.toctou.changed]
    assert changed, f"no change seen in {len(events)} racing calls"
    assert f"fds[{N - 1}]" in changed[0].toctou.changes
    assert changed[0].toctou.window_ns == changed[0].duration_ns > 0


def test_no_writer_no_change(tracer):
    fds = (ctypes.c_int32 * CALL)()
    events = register_many(tracer, fds, 20)
    assert len(events) == 20
    assert not any(e.toctou.changed for e in events)
    assert all(e.toctou.checked and not e.toctou.exit_unreadable for e in events)
