#!/usr/bin/env python3
"""Replay throughput, records per CPU-second on one core: into Event
Structs, to JSON Lines, a filtered pass that keeps 1 record in 1000, and
`--stats`. The dump is made as `uringwatch record` writes one (RING frames
of the ring's bytes) from the committed golden file's records (real tracer
output), repeated; every 1000th copy gets another pid, for the filter.

    .venv/bin/python bench/replay_bench.py [--records N] [--repeat R]
"""

import argparse
import os
import pathlib
import statistics
import struct
import tempfile
import time

from uringwatch import Filters, dump, layout, reader, ringbuf
from uringwatch.output import Writer
from uringwatch.replay import Reader

GOLDEN = pathlib.Path(__file__).parent.parent / "tests" / "data" / "golden-abi1.uwd"
KEEP_EVERY = 1000
MARK_PID = 0x7FFFFFF0          # the pid of the records the filtered pass keeps
_PID = struct.Struct("<I")


def golden_records() -> tuple[dict, list[bytes], list]:
    data = GOLDEN.read_bytes()
    meta, start = dump.read_header(data, str(GOLDEN))
    frames = list(dump.frames(data, start, str(GOLDEN), []))
    records = [bytes(buf[off:off + size]) for f in frames
               for buf, off, size in dump.records(f)]
    context = [bytes(f.payload) for f in frames if f.kind == dump.CONTEXT]
    return meta, records, context


def build(path: pathlib.Path, n: int) -> None:
    meta, records, context = golden_records()
    marked = []
    for r in records:
        m = bytearray(r)
        _PID.pack_into(m, layout.CALL.offsets["pid"], MARK_PID)
        marked.append(bytes(m))
    with open(path, "wb") as f:
        w = dump.Writer(f, meta)
        for c in context:
            w.write(dump.CONTEXT, c)
        batch = bytearray()
        for i in range(n):
            rec = (marked if i % KEEP_EVERY == 0 else records)[i % len(records)]
            batch += ringbuf.HDR.pack(len(rec), 0) + rec
            batch += bytes(-len(batch) % 8)
            if len(batch) >= reader.RING_BYTES:
                w.write_ring(memoryview(batch))
                batch = bytearray()
        if batch:
            w.write_ring(memoryview(batch))


def cpu_rate(n: int, run, repeat: int) -> float:
    """Median records per CPU-second of `run` over `repeat` runs."""
    rates = []
    for _ in range(repeat):
        t = time.process_time()
        got = run()
        rates.append(n / (time.process_time() - t))
        assert got, "nothing replayed"
    return statistics.median(rates)


def measure(records: int, repeat: int = 3) -> dict:
    """Records per CPU-second for each pass, on one core."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as d:
        path = str(pathlib.Path(d) / "bench.uwd")
        build(pathlib.Path(path), records)

        def structs():
            return sum(len(b) for b in Reader([path]).batches())

        def jsonl():
            with open(os.devnull, "w") as out:
                w = Writer(out, True)
                for batch in Reader([path]).batches():
                    w.write(batch)
            return True

        def filtered():
            kept = sum(len(b) for b in Reader([path], Filters(pids=frozenset([MARK_PID])))
                       .batches())
            assert kept == -(-records // KEEP_EVERY), kept
            return kept

        def stats():
            return Reader([path]).stats()["events"] == records

        return {"records": records,
                "structs": cpu_rate(records, structs, repeat),
                "jsonl": cpu_rate(records, jsonl, repeat),
                "filtered": cpu_rate(records, filtered, repeat),
                "stats": cpu_rate(records, stats, repeat)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    r = measure(args.records, args.repeat)
    print(f"{r['records']} records (golden mix), per CPU-second: "
          f"{r['structs']:,.0f} into Structs, {r['jsonl']:,.0f} to JSON Lines, "
          f"{r['filtered']:,.0f} filtered (1 in {KEEP_EVERY} kept), "
          f"{r['stats']:,.0f} --stats")


if __name__ == "__main__":
    main()
