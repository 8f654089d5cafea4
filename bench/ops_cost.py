#!/usr/bin/env python3
"""What tracing a ring's operations costs each operation.

    .venv/bin/python bench/ops_cost.py [--build build-bench] [--ops N] [--rounds R]

opsgen submits NOPs, and 64-byte READs through registered-file slot 0, in
batches of 64 per io_uring_enter, pinned to one CPU: untraced, with the
reference tracer (bench/reftracer: a count per thread, opcode and fixed
flag from the same tp_btf tracepoint), the reference with an empty program
on the completion tracepoint (the floor of any tracer that joins an
operation to its result) and with `uringwatch --rings`; with
--modes openat also OPENATs of /dev/null, which uringwatch reports each
with their target and result. Prints a Markdown table: wall-clock ns per
operation (median of the rounds, with kernel.bpf_stats_enabled off as
users run it: the statistics' clock reads cost each program run) and, from
one more round with bpf_stats on, the submit and completion programs' own
run time per operation. The tracers run back to back
in each round (untraced, reference, uringwatch, then again), so that the
load of a shared machine weighs on all alike; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import processes as P

BENCH = os.path.dirname(os.path.abspath(__file__))


def opsgen(build: str, mode: str, ops: int, gate: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [os.path.join(build, "opsgen"), "-n", str(ops), *(["-g"] if gate else []), mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {P.GEN_CPU}))


def timed(build: str, mode: str, ops: int, attach=None) -> tuple[float, dict]:
    """ns per op of one opsgen run, and the BPF run time per run of the
    programs the tracer attached (when one is)."""
    gen = opsgen(build, mode, ops, gate=True)
    tracer = attach(gen.pid) if attach else None
    try:
        before = P.bpf_prog_stats(tracer.pid) if tracer else {}
        out, _ = gen.communicate("go\n", timeout=600)
        after = P.bpf_prog_stats(tracer.pid) if tracer else {}
    finally:
        if tracer:
            tracer.stop()
    return json.loads(out)["ns_per_op"], P.per_run_ns(before, after)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build-bench")
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modes", default="nop,read",
                    help="opsgen modes, comma-separated: nop, read, pread (a READ "
                         "through a plain fd), readfixed (READ_FIXED: its length read at "
                         "submission), openat (an action: its target read at submission, "
                         "its result at completion)")
    args = ap.parse_args()
    if not os.access(os.path.join(args.build, "opsgen"), os.X_OK):
        ap.error(f"no {args.build}/opsgen: build the benchmarks first "
                 f"(.venv/bin/meson setup {args.build} bench && ninja -C {args.build})")
    py = sys.executable
    tracers = {
        "untraced": None,
        "reference": lambda pid: P.TracerProcess(
            [os.path.join(args.build, "reftracer")], "reftracer: attached"),
        # the floor of any tracer that sees results: the reference plus a
        # program on the completion tracepoint that does nothing
        "reference + empty completion program": lambda pid: P.TracerProcess(
            [os.path.join(args.build, "reftracer"), "--completions"], "reftracer: attached"),
        "uringwatch --rings": lambda pid: P.TracerProcess(
            [py, "-m", "uringwatch", "--rings", "--json", "-p", str(pid)],
            "uringwatch: tracing via", stdout=subprocess.DEVNULL),
    }
    rows = []
    load = [os.getloadavg()[0]]
    for mode in args.modes.split(","):
        # the tracers back to back in each round, so that a change in the
        # machine's load falls on all of them, not on one tracer's rounds
        runs: dict[str, list] = {name: [] for name in tracers}
        for _ in range(args.rounds):
            for name, attach in tracers.items():
                runs[name].append(timed(args.build, mode, args.ops, attach)[0])
        with P.BpfStats():
            stats = {name: timed(args.build, mode, args.ops, attach)[1]
                     for name, attach in tracers.items() if attach}
        base = ref = None
        for name in tracers:
            ns = statistics.median(runs[name])
            run_ns = stats.get(name, {})
            prog = [v for k, v in run_ns.items()
                    if k.startswith(("tp_btf__io_uring_submit", "ref_submit"))]
            done = [v for k, v in run_ns.items()
                    if k.startswith(("tp_btf__io_uring_complete", "ref_complete"))]
            base = ns if base is None else base
            added = ns - base
            ref = added if name == "reference" else ref
            ratio = f"{added / ref:.2f}×" if ref and name != "reference" and \
                name != "untraced" else "—"
            rows.append((mode, name, f"{ns:.1f}", f"{added:+.1f}", ratio,
                         f"{sum(prog):.0f}" if prog else "—",
                         f"{sum(done):.0f}" if done else "—"))
    load.append(os.getloadavg()[0])
    print(f"load average (1 min) at start {load[0]:.1f}, at end {load[1]:.1f}; "
          f"{args.rounds} rounds of {args.ops} operations, tracers back to back in each, "
          f"bpf_stats off; BPF run time from one more round with it on")
    print()
    print("| operation | tracer | ns per op (median) | added ns | added / reference's "
          "| BPF ns per op: submit | completion |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
