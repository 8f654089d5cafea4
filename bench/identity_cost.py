#!/usr/bin/env python3
"""The BPF run time that resolving identities adds to a REGISTER_FILES call.

For each resolution path this kernel offers, loads the tracer (only this
process traced, cap 256) and makes REGISTER_FILES calls of 8 and of 256
fds, each fd a regular file /tmp/<dir>/file-N, on a ring that already has
files, so the kernel refuses every call (EBUSY) after the tracer has read
it: each call is one enter and one exit of the same work. Run time per call
(enter + exit) comes from bpf_stats (kernel.bpf_stats_enabled,
run_time_ns / run_cnt via bpftool); `off` is the baseline.

    .venv/bin/python bench/identity_cost.py [--calls N] [--rounds R]

Prints a Markdown table, median over rounds; docs/BENCHMARKS.md quotes it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import processes as P  # noqa: E402
import uring  # noqa: E402
from uringwatch import Filters, Tracer, hooks, layout  # noqa: E402

SIZES = (8, 256)


def run(resolve: str, fds, ring: int, calls: int) -> float:
    """ns of BPF run time per call (enter + exit) with this path."""
    with Tracer(Filters(pids=frozenset([os.getpid()])), cap=256, resolve=resolve) as t:
        before = P.bpf_prog_stats(os.getpid())
        for _ in range(calls):
            uring.register(ring, 2, fds, len(fds))
        after = P.bpf_prog_stats(os.getpid())
        events = t.poll(0.2)
        while more := t.poll(0):
            events += more
    assert events, "the tracer saw no calls"
    ev = events[-1]
    if resolve != "off":
        assert ev.resolve.path == resolve and ev.files, ev.resolve
    return sum(P.per_run_ns(before, after).values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    paths = ["off"] + [p for p in ("proc", "probe_read", "btf") if hooks.resolve_paths()[p]]
    tmp = tempfile.mkdtemp(prefix="uringwatch-bench-")
    files = [os.open(os.path.join(tmp, f"file-{i}"), os.O_RDONLY | os.O_CREAT, 0o600)
             for i in range(max(SIZES))]
    ring = uring.setup()
    assert uring.register(ring, 2, uring.ints(files[0]), 1) == 0   # later calls: EBUSY
    ns: dict[tuple[str, int], list[float]] = {}
    with P.BpfStats():
        for _ in range(args.rounds):
            for n in SIZES:
                fds = uring.ints(*files[:n])
                for path in paths:
                    ns.setdefault((path, n), []).append(run(path, fds, ring, args.calls))
    med = {k: statistics.median(v) for k, v in ns.items()}
    print("| REGISTER_FILES of | path | BPF ns per call (enter + exit) | added by resolution |")
    print("| ---: | --- | ---: | ---: |")
    for n in SIZES:
        for path in paths:
            added = med[(path, n)] - med[("off", n)]
            resolved = min(n + 1, layout.FILES_MAX)       # the ring fd too
            note = "" if path in ("off", "proc") else f" ({resolved} fds resolved)"
            print(f"| {n} | {path} | {med[(path, n)]:.0f} | "
                  f"{'—' if path == 'off' else f'{added:+.0f} ns'}{note} |")
    print(f"\n{args.rounds} rounds × {args.calls} calls, median; kernel {os.uname().release}")
    for fd in files:
        os.close(fd)
    os.close(ring)
    return 0


if __name__ == "__main__":
    sys.exit(main())
