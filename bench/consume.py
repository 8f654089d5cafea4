#!/usr/bin/env python3
"""uringwatch's library consumer alone: decode records to Event Structs and
drop them, no output. For bench/run.py; run as root with the venv's python.

    consume.py [--pid PID] [--wakeup-bytes N]

Says "consume: attached" on stderr once attached; on SIGINT or SIGTERM it
drains what is queued and prints one JSON line on stdout: events received,
the tracer's counters, and the CPU seconds this process spent after attaching.
"""

import argparse
import json
import signal
import sys
import time

from uringwatch import Filters, Tracer

stopping = False


def _stop(signum, frame):
    # a flag, not an exception: a batch being decoded is never cut in half
    global stopping
    stopping = True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--wakeup-bytes", type=int, default=256 << 10,
                    help="queued bytes past which each record wakes us (Tracer's default)")
    args = ap.parse_args()
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    received = 0
    filters = Filters(pids=frozenset([args.pid])) if args.pid else None
    with Tracer(filters, wakeup_bytes=args.wakeup_bytes) as tracer:
        print("consume: attached", file=sys.stderr, flush=True)
        cpu0 = time.process_time()
        while not stopping:
            received += len(tracer.poll())
        tracer.detach()            # nothing new: drain what is queued
        while batch := tracer.poll(0):
            received += len(batch)
        cpu = time.process_time() - cpu0
        stats = tracer.stats()
    print(json.dumps({"received": received, "cpu_s": cpu, **stats}), flush=True)


if __name__ == "__main__":
    main()
