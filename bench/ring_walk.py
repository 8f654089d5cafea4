#!/usr/bin/env python3
"""The live ring's walk alone, records per CPU-second on one core: spans()
(what the decoder is handed) and peek() of the recorder's fields (what
`record` reads), over a ring laid out in plain memory as the kernel lays
it (positions, 8-byte headers, the data pages twice), filled with the
committed corpus's call records as replay_bench.py's dumps are: "flood",
one 688-byte record again and again, and "mix", all 502 in turn. No root,
no BPF: the kernel's share and the decoder are left out, so the walk's own
cost shows.

    .venv/bin/python bench/ring_walk.py [--repeat R]
"""

import argparse
import mmap
import os
import statistics
import struct
import time

from replay_bench import corpus_records, flood_only
from uringwatch.record import headers
from uringwatch.live import reader, ringbuf

SIZE = 1 << 24          # the ring's data bytes: 16 MiB


def ring_of(records: list[bytes]) -> tuple[ringbuf.RingBuffer, int]:
    """A full ring of `records` in turn, consumer at 0; and its record count."""
    data, n = bytearray(), 0
    while True:
        rec = records[n % len(records)]
        entry = ringbuf.HDR.pack(len(rec), 0) + rec + bytes(-len(rec) % 8)
        if len(data) + len(entry) > SIZE:
            break
        data += entry
        n += 1
    prod = len(data)
    data += bytes(SIZE - len(data))
    rb = ringbuf.RingBuffer.__new__(ringbuf.RingBuffer)
    rb._cons = bytearray(struct.pack("<Q", 0) + bytes(mmap.PAGESIZE - 8))
    rb._prod = bytearray(struct.pack("<Q", prod) + bytes(mmap.PAGESIZE - 8)) + data + data
    rb.data = memoryview(rb._prod)[mmap.PAGESIZE:]
    rb._mask, rb.size, rb._start, rb._pending = SIZE - 1, SIZE, -1, -1
    return rb, n


def drained(rb, take) -> int:
    """Records taken batch by batch until none is left; the consumer is
    put back at 0 after."""
    got = 0
    while batch := take(rb):
        got += len(batch)
        rb.release()
    struct.pack_into("<Q", rb._cons, 0, 0)
    return got


PASSES = {
    "spans": lambda rb: rb.spans(reader.BATCH),
    "peek": lambda rb: rb.peek(reader.BATCH, reader.RING_BYTES, headers.PEEK),
}


def measure(repeat: int) -> dict:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    _, records, _ = corpus_records()
    out = {}
    for which, recs in (("flood", flood_only(records)), ("mix", records)):
        rb, n = ring_of(recs)
        for name, take in PASSES.items():
            rates = []
            for _ in range(repeat):
                t = time.process_time()
                got = drained(rb, take)
                rates.append(got / (time.process_time() - t))
                assert got == n, (got, n)
            out[which, name] = statistics.median(rates)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for (which, name), rate in measure(args.repeat).items():
        print(f"{which} {name}: {rate:,.0f} records per CPU-second")


if __name__ == "__main__":
    main()
