"""End to end: the real BPF object traces real io_uring_register calls."""

import ctypes
import errno
import os
import threading

import msgspec
import pytest

import uring
from uring import REGISTER_FILES, UNREGISTER_FILES, USE_REGISTERED_RING, register


def test_register_files(tracer):
    ring = uring.setup()
    fds = uring.ints(0, 1, 2, -1)
    assert register(ring, REGISTER_FILES, fds, 4) == 0
    assert register(ring, UNREGISTER_FILES, None, 0) == 0
    reg, unreg = tracer.mine(2)
    assert (reg.fd, reg.opcode, reg.opcode_name, reg.nr_args, reg.ret) == \
        (ring, REGISTER_FILES, "REGISTER_FILES", 4, 0)
    assert reg.arg == uring.addr(fds)
    assert reg.pid == os.getpid() and reg.tid == threading.get_native_id()
    assert reg.uid == os.getuid() and reg.gid == os.getgid()
    assert reg.comm == open("/proc/self/comm").read().strip()
    assert reg.cgroup_id > 0
    if tracer.tracer.features["task_btf"]:
        assert reg.ppid == os.getppid()
        assert reg.pidns == os.stat("/proc/self/ns/pid").st_ino
        assert reg.mntns == os.stat("/proc/self/ns/mnt").st_ino
    else:       # documented: null where the kernel refuses BTF task reads
        assert (reg.ppid, reg.pidns, reg.mntns) == (None, None, None)
    assert reg.payload.fds == [0, 1, 2, -1]
    assert not reg.payload.truncated and reg.payload.unreadable == []
    assert not reg.registered_ring and reg.error is None
    assert 0 < reg.duration_ns < 10**9 and reg.toctou.window_ns == reg.duration_ns
    assert (unreg.opcode_name, unreg.payload) == ("UNREGISTER_FILES", None)
    os.close(ring)


def test_invalid_opcode_gives_einval(tracer):
    ring = uring.setup()
    assert register(ring, uring.NO_SUCH_OPCODE, None, 0) == -errno.EINVAL
    (ev,) = tracer.mine(1)
    assert (ev.opcode, ev.opcode_name, ev.ret, ev.error) == (9999, "UNKNOWN_9999", -22, "EINVAL")
    # no decoder for it: the raw bytes at arg, here none (arg is NULL)
    raw = msgspec.to_builtins(ev.payload)
    assert (raw["type"], raw["hex"], raw["unreadable"]) == ("RAW", "", [])
    os.close(ring)


def test_closed_fd_gives_ebadf(tracer):
    ring = uring.setup()
    os.close(ring)
    assert register(ring, REGISTER_FILES, uring.ints(0), 1) == -errno.EBADF
    (ev,) = tracer.mine(1)
    assert (ev.fd, ev.ret, ev.error) == (ring, -errno.EBADF, "EBADF")
    assert ev.payload.fds == [0]   # captured even though the kernel refused


def test_registered_ring_bit_survives(tracer):
    ring = uring.setup()
    ret = register(ring, REGISTER_FILES | USE_REGISTERED_RING, uring.ints(0), 1)
    assert ret < 0   # the ring was never registered: fd is not a valid index
    (ev,) = tracer.mine(1)
    assert ev.registered_ring and ev.opcode == REGISTER_FILES
    assert ev.opcode_name == "REGISTER_FILES" and ev.fd == ring
    os.close(ring)


def test_null_and_unmapped_arg_are_flagged(tracer):
    ring = uring.setup()
    assert register(ring, REGISTER_FILES, None, 2) == -errno.EFAULT
    assert register(ring, REGISTER_FILES, 0x10, 2) == -errno.EFAULT
    null, unmapped = tracer.mine(2)
    assert null.arg == 0 and null.payload.fds is None
    assert unmapped.arg == 0x10 and unmapped.payload.fds is None
    assert unmapped.payload.unreadable == ["fds"]
    # the tracer keeps going
    assert register(ring, REGISTER_FILES, uring.ints(1), 1) == 0
    (ok,) = tracer.mine(1)
    assert ok.payload.fds == [1]
    os.close(ring)


def test_stats_count_emitted(tracer):
    before = tracer.tracer.stats()
    ring = uring.setup()
    register(ring, uring.NO_SUCH_OPCODE, None, 0)
    tracer.mine(1)
    after = tracer.tracer.stats()
    assert after["emitted"] >= before["emitted"] + 1
    # earlier tests' floods (test_faults) may have filled the session's ring
    assert after["ring_full"] == before["ring_full"]
    assert after["decode_errors"] == before["decode_errors"] == 0
    os.close(ring)


def test_runs_the_kernel_skipped_are_counted_where_it_counts_them(tracer):
    """The kernel counts each program run it skips (the program busy on
    that CPU) from 5.12: stats() sums them over the tracer's programs."""
    skipped = tracer.tracer._obj.runs_skipped()
    if skipped is None:
        pytest.skip("this kernel counts no skipped runs (before 5.12)")
    assert set(skipped) == set(tracer.tracer._obj.programs)
    assert tracer.tracer.stats()["runs_skipped"] >= sum(skipped.values()) >= 0


def test_generic_capture_is_raw_and_a_second_tracer_sees_it_too(tracer):
    from uringwatch import Filters, Tracer
    ring = uring.setup()
    opened = [os.open("/dev/null", os.O_RDONLY) for _ in range(16)]
    fds = (ctypes.c_int32 * 16)(*opened)
    with Tracer(Filters(pids=frozenset([os.getpid()])), generic=True) as raw:
        assert register(ring, REGISTER_FILES, fds, 16) == 0
        events = [e for e in raw.poll(1.0) if e.tid == threading.get_native_id()]
    (ev,) = events
    assert ev.payload.hex == bytes(fds).hex()    # the first 64 bytes, undecoded
    (decoded,) = tracer.mine(1)                  # the session tracer saw it too
    assert decoded.payload.fds == opened
    os.close(ring)
    for fd in opened:
        os.close(fd)
