#!/usr/bin/env python3
"""User-space decode cost alone: every record of a dump through decode()
(no replay machinery, no filters), then the same events to JSON Lines with
one Encoder.encode_lines per batch of 4096, as the live tracer and `--json`
do. Records per CPU-second on one core, the best of --repeat runs.

    .venv/bin/python bench/decode_rate.py DUMP [DUMP ...] [--repeat R] [--profile]

Make a dump of the suite's workloads with `uringwatch record -w F.uwd -p PID
--no-fair` around `bench/loadgen -g -n 30000 invalid` (or `files 8`).
"""

import argparse
import cProfile
import json
import os
import pathlib
import pstats
import time

import msgspec

from uringwatch.recordings import dump
from uringwatch.record.decode import Runs, decode

BATCH = 4096


def load(path: str):
    """(to_wall, context, [(buf, off, size)]) of every record in the dump."""
    data = pathlib.Path(path).read_bytes()
    meta, start = dump.read_header(data, path)
    context, recs = {}, []
    for f in dump.frames(data, start, path, []):
        if f.kind == dump.CONTEXT:
            c = json.loads(bytes(f.payload))
            context[c["cgroup_id"]] = (c["path"], c["container_id"])
        recs.extend(dump.records(f, path))
    return meta.boot_to_wall_ns, context, recs


def decode_all(to_wall, context, recs):
    runs, ctx = Runs(), (lambda cg: context.get(cg, (None, None)))
    return [decode(buf, off, size, to_wall, ctx, runs=runs) for buf, off, size in recs]


def encode_all(events) -> int:
    enc, n = msgspec.json.Encoder(), 0
    for i in range(0, len(events), BATCH):
        n += len(enc.encode_lines(events[i:i + BATCH]))
    return n


def best_rate(n: int, run, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        run()
        best = min(best, time.process_time() - t)
    return n / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dumps", nargs="+")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile one decode pass")
    args = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    for path in args.dumps:
        to_wall, context, recs = load(path)
        n = len(recs)
        events = [e for e in decode_all(to_wall, context, recs) if e is not None]
        if args.profile:
            prof = cProfile.Profile(time.process_time)
            prof.runcall(decode_all, to_wall, context, recs)
            pstats.Stats(prof).sort_stats("tottime").print_stats(14)
            continue
        full = best_rate(n, lambda: decode_all(to_wall, context, recs), args.repeat)
        enc = best_rate(len(events), lambda: encode_all(events), args.repeat)
        both = best_rate(n, lambda: encode_all(decode_all(to_wall, context, recs)),
                         args.repeat)
        print(f"{path}: {n} records; per CPU-second: {full:,.0f} decoded, "
              f"{enc:,.0f} encoded (JSON Lines of decoded events), "
              f"{both:,.0f} decoded + encoded")


if __name__ == "__main__":
    main()
