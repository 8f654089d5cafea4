"""A thread rewrites the fds array while the kernel copies it: the tracer
must see the change; without the writer it must never claim one."""

import ctypes
import os
import threading

import uring

N = 1024
TRIES = 3000          # stops at the first change; contention makes some runs slow


def register_many(tracer, fds, tries):
    ring = uring.setup()
    events = []
    for _ in range(tries):
        uring.register(ring, 2, fds, N)
        uring.register(ring, 3, None, 0)
        events += [e for e in tracer.mine(2) if e.opcode == 2]
        if any(e.toctou.changed for e in events):
            break
    os.close(ring)
    return events


def test_racing_writer_is_caught(tracer):
    """With bpf_loop the change is caught; without it (before 5.17) nothing
    is re-read, and every record says so instead of claiming no change."""
    checks = tracer.tracer.features["bpf_loop"]
    fds = (ctypes.c_int32 * N)()          # all fd 0, valid
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            fds[N - 1] = i                # the last element: copied last
    t = threading.Thread(target=writer)
    t.start()
    try:
        events = register_many(tracer, fds, TRIES if checks else 50)
    finally:
        stop.set()
        t.join()
    if not checks:
        assert len(events) == 50
        assert not any(e.toctou.checked or e.toctou.changed for e in events)
        return
    changed = [e for e in events if e.toctou.changed]
    assert changed, f"no change seen in {len(events)} racing calls"
    assert f"fds[{N - 1}]" in changed[0].toctou.changes
    assert changed[0].toctou.window_ns == changed[0].duration_ns > 0


def test_no_writer_no_change(tracer):
    fds = (ctypes.c_int32 * N)()
    events = register_many(tracer, fds, 100)
    assert len(events) == 100
    assert not any(e.toctou.changed for e in events)
    checks = tracer.tracer.features["bpf_loop"]
    assert all(e.toctou.checked == checks and not e.toctou.exit_unreadable for e in events)
