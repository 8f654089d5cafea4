"""RingBuffer.spans() over ring states a live kernel makes only now and
then: records still being written (BUSY) or discarded in the middle of a
run of one length, lengths alternating, a run wrapping past the ring's
end, limits. The ring's data pages can't be written from user space, so
the same bytes are laid out as the kernel lays them (positions, 8-byte
headers, the data mapped twice) in plain memory, and spans() must walk
them as the one-record-at-a-time walk does."""

import mmap
import struct

import pytest

from uringwatch.recordings import dump
from uringwatch.live import ringbuf
from uringwatch.record import ringscan

SIZE = 1 << 16


def ring_of(cons: int, lengths: list[int], flags: dict[int, int]) -> ringbuf.RingBuffer:
    """A RingBuffer whose consumer is at cons and whose records (lengths,
    flags by index) follow it; the producer after the last."""
    ring, pos = bytearray(SIZE), cons
    for i, n in enumerate(lengths):
        entry = ringbuf.HDR.pack(n | flags.get(i, 0), 0) + bytes([i % 251]) * n
        entry += bytes(-len(entry) % 8)
        for j, b in enumerate(entry):
            ring[(pos + j) % SIZE] = b
        pos += len(entry)
    rb = ringbuf.RingBuffer.__new__(ringbuf.RingBuffer)
    rb._cons = bytearray(struct.pack("<Q", cons) + bytes(mmap.PAGESIZE - 8))
    rb._prod = bytearray(struct.pack("<Q", pos) + bytes(mmap.PAGESIZE - 8)) + ring + ring
    rb.data = memoryview(rb._prod)[mmap.PAGESIZE:]
    rb._mask, rb.size, rb._start, rb._pending = SIZE - 1, SIZE, -1, -1
    return rb


def walked(rb, limit: int, max_bytes: int) -> list[list[tuple[int, int]]]:
    """Every batch spans() gives until it gives none, released in turn."""
    batches = []
    while batch := rb.spans(limit, max_bytes):
        batches.append(batch)
        rb.release()
    return batches


def expected(cons: int, lengths: list[int], flags: dict[int, int]) -> list[tuple[int, int]]:
    """The committed records' spans, up to the first busy one."""
    out = []
    for i, n in enumerate(lengths):
        if flags.get(i, 0) & ringbuf.BUSY:
            break
        if not flags.get(i, 0) & ringbuf.DISCARD:
            out.append(((cons & (SIZE - 1)) + 8, n))
        cons += (n + 15) & ~7
    return out


CASES = {
    "one length": ([688] * 80, {}),
    "busy inside the run": ([688] * 80, {70: ringbuf.BUSY}),
    "discarded inside the run": ([688] * 80, {30: ringbuf.DISCARD}),
    "busy first": ([688] * 80, {0: ringbuf.BUSY}),
    "alternating lengths": ([2704, 688] * 10, {}),
    "a run, then another length": ([688] * 70 + [2704] * 5, {}),
    "a short run, then another": ([688] * 3 + [96] * 90, {}),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("cons", [0, SIZE - 3000], ids=["start", "wrapping"])
@pytest.mark.parametrize("limit,max_bytes", [(4096, 0), (64, 0), (4096, 8192)])
def test_spans_walk_every_committed_record_once_in_order(case, cons, limit, max_bytes):
    lengths, flags = CASES[case]
    rb = ring_of(cons, lengths, flags)
    batches = walked(rb, limit, max_bytes)
    for off, n in (s for b in batches for s in b):     # each record's own bytes
        assert rb.data[off:off + n] == bytes([rb.data[off]]) * n
    # offsets past the ring's end read the second mapping of the same pages
    got = [(off % SIZE, n) for b in batches for off, n in b]
    assert got == expected(cons, lengths, flags)
    assert all(len(b) <= limit for b in batches)
    if max_bytes:       # no batch spans more ring bytes than asked, past its first record
        assert all(b[-1][0] - b[0][0] <= max_bytes for b in batches)


def frame_of(lengths: list[int], flags: dict[int, int]) -> bytearray:
    """The same entries as a dump's RING frame holds them."""
    frame = bytearray()
    for i, n in enumerate(lengths):
        frame += ringbuf.HDR.pack(n | flags.get(i, 0), 0) + bytes([i % 251]) * n
        frame += bytes(-len(frame) % 8)
    return frame


@pytest.mark.parametrize("case", CASES)
def test_dump_frames_walk_as_the_live_ring(case):
    """One walk for both: a RING frame's records are the live ring's, and
    an entry marked busy, which no recorder copies, is damage said aloud
    rather than records silently dropped behind it."""
    lengths, flags = CASES[case]
    problems = []
    got = list(dump.ring_records(memoryview(frame_of(lengths, flags)), 0, "f", problems))
    assert got == expected(0, lengths, flags)
    busy = any(f & ringbuf.BUSY for f in flags.values())
    assert [str(p) for p in problems] == (["f: byte 0: an entry marked busy (still being "
                                           "written)"] if busy else [])


@pytest.mark.parametrize("tail,what", [(b"\x10\0\0\0", "mid-header"),
                                       (ringbuf.HDR.pack(688, 0) + bytes(40), "runs past")])
def test_a_cut_frame_keeps_what_came_before(tail, what):
    problems = []
    frame = frame_of([688] * 80, {}) + tail
    got = list(dump.ring_records(memoryview(frame), 0, "f", problems))
    assert got == expected(0, [688] * 80, {})
    assert len(problems) == 1 and what in str(problems[0])


@pytest.mark.parametrize("case", CASES)
def test_an_index_gives_the_walks_entries(case):
    """A format 3 frame's entries, taken from the index its writer stored
    (ringscan.index_of: the walk's offsets), are the walk's; a frame with a
    busy entry has no index that checks out, so the walk says why."""
    lengths, flags = CASES[case]
    frame = bytes(frame_of(lengths, flags))
    got = ringscan.indexed(frame, ringscan.index_of(frame))
    if any(f & ringbuf.BUSY for f in flags.values()):
        assert got is None
    else:
        assert got.spans() == expected(0, lengths, flags) and got.end == len(frame)


def test_an_index_that_does_not_follow_the_length_words_is_refused():
    frame = bytes(frame_of([688, 96, 2704], {}))
    index = ringscan.index_of(frame)
    at = struct.unpack(f"<{len(index) // 4}I", index)
    wrong = {"an entry left out": at[:2], "one more": at + (at[-1] + 8,),
             "not from 0": (8,) + at[1:], "out of order": (at[0], at[2], at[1]),
             "past the end": at[:2] + (len(frame),), "none": ()}
    for what, offsets in wrong.items():
        assert ringscan.indexed(frame, struct.pack(f"<{len(offsets)}I", *offsets)) is None, what
    assert ringscan.indexed(frame, index) is not None
    assert ringscan.indexed(frame[:-8], index) is None      # the last entry cut


def test_an_index_out_of_order_near_the_end_is_refused():
    """Offsets out of order, one too near the end for the fields a pass
    reads: refused, not a struct.error."""
    frame = bytes(frame_of([688] * 3 + [96], {}))
    fields = struct.Struct("<I300x")
    at = struct.unpack("<4I", ringscan.index_of(frame))
    wrong = struct.pack("<4I", at[0], at[3], at[1], at[2])
    assert ringscan.indexed(frame, wrong, fields) is None
    assert ringscan.indexed(frame, ringscan.index_of(frame), fields) is not None
