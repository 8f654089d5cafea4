"""Hostile arguments: every opcode family with bad pointers and counts gives
a correctly flagged event, and the tracer keeps going."""

import ctypes
import mmap
import os

import pytest

import uring

FAMILIES = [uring.REGISTER_BUFFERS, uring.REGISTER_FILES, uring.REGISTER_FILES_UPDATE,
            uring.REGISTER_PROBE, uring.REGISTER_RESTRICTIONS, uring.REGISTER_FILES2,
            uring.REGISTER_BUFFERS2, uring.REGISTER_BUFFERS_UPDATE, uring.REGISTER_IOWQ_AFF,
            uring.REGISTER_IOWQ_MAX_WORKERS, uring.REGISTER_RING_FDS, uring.REGISTER_PBUF_RING,
            uring.REGISTER_SYNC_CANCEL, uring.REGISTER_PBUF_STATUS, uring.REGISTER_NAPI,
            uring.REGISTER_CLOCK, uring.REGISTER_CLONE_BUFFERS, uring.REGISTER_SEND_MSG_RING,
            uring.REGISTER_RESIZE_RINGS, uring.REGISTER_MEM_REGION, uring.REGISTER_QUERY]
# what they read at arg fits in the 8 bytes before the hole (a cpu mask of
# nr_args=4 bytes, two u32 worker counts)
FIT_IN_8 = (uring.REGISTER_IOWQ_AFF, uring.REGISTER_IOWQ_MAX_WORKERS)
KERNEL_PTR = 0xFFFFFFFF81000000


@pytest.fixture(scope="module")
def straddle():
    """An address 8 bytes before an unmapped page."""
    m = mmap.mmap(-1, 2 * mmap.PAGESIZE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    libc = ctypes.CDLL(None)
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    assert libc.munmap(base + mmap.PAGESIZE, mmap.PAGESIZE) == 0
    yield base + mmap.PAGESIZE - 8



@pytest.mark.parametrize("opcode", FAMILIES)
@pytest.mark.parametrize("where", ["null", "unmapped", "kernel", "straddle"])
def test_bad_pointers_are_flagged(tracer, straddle, opcode, where):
    ptr = {"null": 0, "unmapped": 0x10, "kernel": KERNEL_PTR, "straddle": straddle}[where]
    ring = uring.setup()
    ret = uring.register(ring, opcode, ptr, 4)
    (ev,) = tracer.mine(1)
    assert ev.arg == ptr and ev.ret == ret and ev.opcode == opcode
    p = ev.payload
    assert p is not None          # every family takes an argument
    if where == "null" or (where == "straddle" and opcode in FIT_IN_8):
        assert p.unreadable == [], p      # NULL is not read; what fits is read whole
    else:
        # the struct or array at arg could not be read: named, not guessed
        assert p.unreadable != [], p
    os.close(ring)


@pytest.mark.parametrize("nr_args", [0, 1, 0xFFFFFFFF])
def test_counts(tracer, nr_args):
    ring = uring.setup()
    fds = (ctypes.c_int32 * 1024)(*range(8))   # mapped as far as a 1024 cap reads
    ret = uring.register(ring, uring.REGISTER_FILES, fds, nr_args)
    (ev,) = tracer.mine(1)
    assert ev.nr_args == nr_args and ev.ret == ret
    p = ev.payload
    if nr_args == 0xFFFFFFFF:        # the session tracer's cap is 1024 elements
        assert p.truncated and p.fds == list(range(8)) + [0] * 1016
    else:
        assert p.fds == list(range(nr_args)) and not p.truncated
    os.close(ring)


def test_tracer_survives_and_counts_faults(tracer):
    before = tracer.tracer.stats()["read_fault"]
    ring = uring.setup()
    uring.register(ring, uring.REGISTER_FILES, 0x10, 4)
    tracer.mine(1)
    assert tracer.tracer.stats()["read_fault"] > before
    assert uring.register(ring, uring.REGISTER_FILES, uring.ints(0), 1) == 0
    assert tracer.mine(1)[0].payload.fds == [0]
    os.close(ring)
