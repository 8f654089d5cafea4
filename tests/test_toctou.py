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
    # The kernel refuses more files than RLIMIT_NOFILE (EMFILE); root may
    # raise the hard limit too (a guest's init leaves it at 4096).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = CALL + 64
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    ring = uring.setup()
    events = []
    for _ in range(tries):
        assert uring.register(ring, uring.REGISTER_FILES, fds, CALL) == 0
        uring.register(ring, uring.UNREGISTER_FILES, None, 0)
        events += [e for e in tracer.mine(2) if e.opcode == uring.REGISTER_FILES]
        if any(e.toctou.changed for e in events):
            break
    os.close(ring)
    return events


def test_racing_writer_is_caught(tracer):
    """With bpf_loop the change is caught; without it (before 5.17) nothing
    is re-read, and every record says so instead of claiming no change."""
    checks = tracer.tracer.features["bpf_loop"]
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
        events = register_many(tracer, fds, TRIES if checks else 10)
    finally:
        stop.set()
        t.join()
        os.sched_setaffinity(0, mine)
    if not checks:
        assert len(events) == 10
        assert not any(e.toctou.checked or e.toctou.changed for e in events)
        return
    changed = [e for e in events if e.toctou.changed]
    assert changed, f"no change seen in {len(events)} racing calls"
    assert f"fds[{N - 1}]" in changed[0].toctou.changes
    assert changed[0].toctou.window_ns == changed[0].duration_ns > 0


def test_no_writer_no_change(tracer):
    fds = (ctypes.c_int32 * CALL)()
    events = register_many(tracer, fds, 20)
    assert len(events) == 20
    assert not any(e.toctou.changed for e in events)
    checks = tracer.tracer.features["bpf_loop"]
    assert all(e.toctou.checked == checks and not e.toctou.exit_unreadable for e in events)
