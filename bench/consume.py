#!/usr/bin/env python3
"""uringwatch's library consumer alone: decode records to Event Structs and
drop them, no output. For bench/run.py; run as root with the venv's python.

    consume.py [--pid PID[,PID] | --cgroup DIR] [--wakeup-bytes N] [--rate N] [--no-fair]

Says "consume: attached" on stderr once attached; on SIGINT or SIGTERM it
drains what is queued and prints one JSON line on stdout: call events
received (in all, and per pid), calls counted by repeat events, the
tracer's counters, and the CPU seconds this process spent after attaching.
"""

import argparse
import collections
import json
import os
import signal
import sys
import time

import msgspec

from uringwatch import Event, Filters, Tracer

stopping = False


def _stop(signum, frame):
    # a flag, not an exception: a batch being decoded is never cut in half
    global stopping
    stopping = True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", default="", help="comma-separated tgids")
    ap.add_argument("--cgroup", help="a cgroup2 directory: its processes (a swarm's new ones too)")
    ap.add_argument("--rate", type=int, default=None, help="fairness budget (Tracer's default)")
    ap.add_argument("--no-fair", dest="fair", action="store_false")
    ap.add_argument("--wakeup-bytes", type=int, default=256 << 10,
                    help="queued bytes past which each record wakes us (Tracer's default)")
    args = ap.parse_args()
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    by_pid: collections.Counter = collections.Counter()
    repeats = 0

    def count(batch) -> None:
        nonlocal repeats
        for ev in batch:
            if isinstance(ev, Event):
                by_pid[ev.pid] += 1
            else:
                repeats += ev.count

    pids = [int(p) for p in args.pid.split(",") if p]
    filters = Filters(pids=frozenset(pids)) if pids else None
    if args.cgroup:
        filters = Filters(cgroups=frozenset([os.stat(args.cgroup).st_ino]))
    fair = {"fair": args.fair} | ({"rate": args.rate} if args.rate is not None else {})
    with Tracer(filters, wakeup_bytes=args.wakeup_bytes, **fair) as tracer:
        print("consume: attached", file=sys.stderr, flush=True)
        cpu0 = time.process_time()
        while not stopping:
            count(tracer.poll())
        tracer.detach()            # nothing new: drain what is queued, then pending repeats
        while batch := tracer.poll(0):
            count(batch)
        cpu = time.process_time() - cpu0
        stats = tracer.stats()
    print(json.dumps({"received": sum(by_pid.values()), "by_pid": by_pid,
                      "repeat_calls": repeats, "cpu_s": cpu,
                      **msgspec.to_builtins(stats)}), flush=True)


if __name__ == "__main__":
    main()
