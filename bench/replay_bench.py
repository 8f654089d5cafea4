#!/usr/bin/env python3
"""Replay throughput: records/s from a dump file into Event Structs, and to
JSON Lines, on one core. Makes its dump from the committed golden file's
records (real tracer output), repeated.

    .venv/bin/python bench/replay_bench.py [--records N]
"""

import argparse
import os
import pathlib
import tempfile
import time

import msgspec

from uringwatch import dump, replay

GOLDEN = pathlib.Path(__file__).parent.parent / "tests" / "data" / "golden-abi1.uwd"


def build(path: pathlib.Path, n: int) -> None:
    data = GOLDEN.read_bytes()
    meta, start = dump.read_header(data, str(GOLDEN))
    frames = list(dump.frames(data, start, str(GOLDEN), []))
    records = [f.payload for f in frames if f.kind == dump.RECORD]
    context = [f.payload for f in frames if f.kind == dump.CONTEXT]
    with open(path, "wb") as f:
        w = dump.Writer(f, meta)
        for c in context:
            w.write(dump.CONTEXT, c)
        for i in range(n):
            w.write(dump.RECORD, records[i % len(records)])


def measure(records: int) -> tuple[int, float, float]:
    """(records, records/s into Structs, records/s to JSON Lines), one core."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "bench.uwd"
        build(path, records)
        t = time.perf_counter()
        n = sum(1 for _ in replay(str(path)))
        structs = n / (time.perf_counter() - t)
        enc, buf = msgspec.json.Encoder(), bytearray()
        t = time.perf_counter()
        with open(os.devnull, "wb") as out:
            for ev in replay(str(path)):
                enc.encode_into(ev, buf, -1)
                buf.extend(b"\n")
                if len(buf) > 1 << 20:
                    out.write(buf)
                    buf.clear()
            out.write(buf)
        jsonl = n / (time.perf_counter() - t)
    return n, structs, jsonl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300_000)
    n, structs, jsonl = measure(ap.parse_args().records)
    print(f"| {n} records (golden mix: FILES, EVENTFD, PROBE, IOWQ_MAX_WORKERS, unknown, "
          f"unreadable) | {structs:,.0f} records/s to Structs | {jsonl:,.0f} records/s to "
          f"JSON Lines |")


if __name__ == "__main__":
    main()
