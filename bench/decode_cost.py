#!/usr/bin/env python3
"""Added cost per traced io_uring_register call: full per-opcode decoding with
the TOCTOU re-read, against the generic capture (first 64 bytes at arg).

Run as root from the repo: .venv/bin/python bench/decode_cost.py [--calls N]
The generator runs here, pinned to CPU 1; the tracer (`uringwatch --json`
to /dev/null) runs in its own process pinned to CPU 0. Prints a Markdown table.
"""

import argparse
import ctypes
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import uring  # noqa: E402

GEN_CPU, TRACER_CPU = 1, 0


def workload(ring: int, mode: str):
    """A function making one round of calls, and how many calls a round is."""
    if mode == "invalid":
        return (lambda: uring.register(ring, 9999, None, 0)), 1
    kind, n = mode.split("x")
    n = int(n)
    if kind == "files":
        fds = (ctypes.c_int32 * n)()
        return (lambda: (uring.register(ring, 2, fds, n), uring.register(ring, 3, None, 0))), 2
    bufs = ctypes.create_string_buffer(4096 * n)
    iov = (uring.Iovec * n)(*[uring.Iovec(ctypes.addressof(bufs) + 4096 * i, 4096)
                              for i in range(n)])
    # bufs is a default argument so the memory lives as long as the workload
    return (lambda bufs=bufs: (uring.register(ring, 0, iov, n),
                               uring.register(ring, 1, None, 0))), 2


def ns_per_call(fn, per_round: int, calls: int, repeats: int = 5) -> float:
    rounds = max(1, calls // per_round)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter_ns()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter_ns() - t) / (rounds * per_round))
    return best


def start_tracer(*flags):
    p = subprocess.Popen([sys.executable, "-m", "uringwatch", "--json", "--cap", "256", *flags],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, {TRACER_CPU}))
    assert "tracing" in p.stderr.readline()
    return p


def stop(p):
    p.send_signal(2)
    return p.communicate(timeout=30)[1].strip().splitlines()[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000)
    args = ap.parse_args()
    os.sched_setaffinity(0, {GEN_CPU})
    modes = ["invalid", "filesx8", "filesx256", "buffersx64"]
    ring = uring.setup()
    base = {m: ns_per_call(*workload(ring, m), args.calls) for m in modes}
    added = {}
    for label, flags in (("generic", ("--generic",)), ("full", ())):
        p = start_tracer(*flags)
        try:
            added[label] = {m: ns_per_call(*workload(ring, m), args.calls) - base[m]
                            for m in modes}
        finally:
            print(f"<!-- {label}: {stop(p)} -->")
    print("| mode | untraced ns/call | + generic capture | + full decode and TOCTOU | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for m in modes:
        g, f = added["generic"][m], added["full"][m]
        print(f"| {m} | {base[m]:.0f} | {g:.0f} | {f:.0f} | {f / g:.2f} |")


if __name__ == "__main__":
    main()
