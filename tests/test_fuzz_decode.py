"""The record decoder under hypothesis: whatever the bytes, only
RecordError comes out (bounded time: the suite runs it on every commit)."""

import struct

from hypothesis import given, settings, strategies as st

from test_decode import FILES_REGIONS, call_record
from uringwatch import RecordError, decode
from uringwatch.record import layout

# an ABI-3 record with every kind of part: regions, changed[], task, ns
GOOD = call_record(regions=FILES_REGIONS, flags=layout.F_PPID | layout.F_NS | layout.F_CHANGED,
                   nchanged=3, changed=(1 << 24, 1 << 24 | 4, 5) + (0,) * 13,
                   ns=(1, 2, layout.NS_IDS | layout.NS_UTS, b"host"))


def try_decode(data: bytes):
    try:
        decode(data, 0, len(data), 0)
    except RecordError:
        pass


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=2 * layout.CALL.size))
def test_random_bytes(data):
    try_decode(data)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)),
                max_size=12),
       st.integers(0, 65535), st.integers(0, 255))
def test_mutated_records(flips, opcode, nchanged):
    rec = bytearray(GOOD)
    struct.pack_into("<I", rec, layout.CALL3.offsets["opcode"], opcode)
    struct.pack_into("<B", rec, layout.CALL3.offsets["nchanged"], nchanged)
    for at, value in flips:
        rec[at] = value
    try_decode(bytes(rec))


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, 63), st.binary(max_size=600), st.binary(max_size=300),
       st.integers(0, 0xFFFF), st.integers(0, 31), st.integers(0, 2**32 - 1))
def test_every_opcode_with_arbitrary_regions(opcode, a, b, elem, flags, count):
    regions = ((0x1000, count, elem, flags, 0, a[:128]), (0x2000, count, elem, flags, 0, a),
               (0x3000, count, 8, flags, 0, b), (0x4000, 1, elem, flags, 0, b[:256]))
    for raw in (0, layout.F_RAW):
        rec = call_record(opcode=opcode, regions=regions,
                          flags=layout.F_PPID | raw | layout.F_CHANGED, nchanged=3)
        try_decode(rec)
