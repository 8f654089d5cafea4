#!/usr/bin/env python3
"""Time from a lone io_uring_register call to its event in user space, at a
low rate (one call every 150-250 ms, at random), with the default batched wakeups.

Run as root from the repo: .venv/bin/python bench/latency.py [--calls N]
"""

import argparse
import random
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import uring  # noqa: E402
from uringwatch import Filters, Tracer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    ring = uring.setup()
    delays = []
    with Tracer(Filters(pids=frozenset([os.getpid()]))) as t:
        def caller():
            for _ in range(args.calls):
                time.sleep(random.uniform(0.15, 0.25))   # not in step with polls
                uring.register(ring, 9999, None, 0)
        th = threading.Thread(target=caller)
        th.start()
        while len(delays) < args.calls:
            for ev in t.poll():
                delays.append((time.time_ns() - ev.ts - ev.duration_ns) / 1e6)
        th.join()
    delays.sort()
    print(f"{len(delays)} lone events: median {delays[len(delays) // 2]:.1f} ms, "
          f"max {delays[-1]:.1f} ms from syscall exit to the event in Python")


if __name__ == "__main__":
    main()
