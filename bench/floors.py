#!/usr/bin/env python3
"""What uringwatch's promises cost at the least, beside what it costs.

    .venv/bin/python bench/floors.py [--build build-bench] [--rounds R] [--seconds S]

loadgen's invalid calls and REGISTER_FILES of 8 fds (each followed by its
UNREGISTER), pinned to one CPU: untraced, with the reference tracer, with
the reference's floor programs (bench/reftracer --floor: the same record
written in place in a per-thread entry) and, added one at a time, the
least work of each promise uringwatch keeps for such a call:
  hook    the ring as the kernel took it: a program on the io_uring_register
          tracepoint that stores the ring's pointer (uringwatch's ring id);
  reread  the input read again at exit and compared (the TOCTOU flag);
  context the caller's process and container context, read at exit as
          uringwatch reads it: uid, gid, comm, cgroup, ppid, namespaces,
          the pid numbers in its namespace, hostname;
  carry   256 bytes sent per file handed over, the ring's and, for
          REGISTER_FILES, each fd's (uringwatch's identities), neither read
          in the kernel nor written: only copied into the ring buffer;
then `uringwatch --json --resolve off` and `uringwatch --json`, each
without fairness and with it (the CLI's default, which folds runs of
identical calls into repeat records: fewer bytes sent). Prints a
Markdown table: wall-clock ns per call (median of the rounds, tracers back
to back in each round, bpf_stats off), the cost added over untraced, that
over the reference's, and over the floor with every promise; and from one
more round with bpf_stats on, the BPF run time per call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import processes as P
import run

FLOORS = ("", "=hook", "=hook,reread", "=hook,reread,context", "=hook,reread,context,carry")
ALL = "reference floor + hook, reread, context, carry"


def tracers(build: str) -> dict:
    ref = os.path.join(build, "reftracer")
    out = {"untraced": None,
           "reference": lambda: P.TracerProcess([ref], "reftracer: attached")}
    for f in FLOORS:
        label = "reference floor" + (" + " + f[1:].replace(",", ", ") if f else "")
        out[label] = lambda f=f: P.TracerProcess([ref, "--floor" + f], "reftracer: attached")
    for extra in (("--resolve", "off", "--no-fair"), ("--resolve", "off"), ("--no-fair",), ()):
        out[" ".join(("uringwatch --json",) + extra)] = run.cli("--json", *extra)
    return out


def timed(build: str, mode, start, seconds: float, stats: bool) -> tuple[float, float]:
    """ns per call of one loadgen run, and with stats the BPF run time per
    call of the tracer's programs that ran for every call. A reference
    that lost records did less than the floor's work: an error."""
    tracer = start() if start else None
    out = ""
    try:
        if tracer:
            tracer.wait_idle()
        before = P.bpf_prog_stats(tracer.pid) if tracer and stats else {}
        r = P.loadgen(build, list(mode), seconds=seconds)
        after = P.bpf_prog_stats(tracer.pid) if tracer and stats else {}
    finally:
        if tracer:
            out = tracer.stop()[0]
    if out.startswith("{"):
        counts = json.loads(out)
        if counts["ring_full"] or counts["no_enter"] or counts["stash_full"]:
            raise SystemExit(f"floors: the reference lost records: {out.strip()}")
    calls = r["register_calls"]
    return r["ns_per_call"], sum(P.per_run_ns(before, after, calls // 2).values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build-bench")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--modes", default="invalid,files 8",
                    help="loadgen modes, comma-separated (default: %(default)s)")
    args = ap.parse_args()
    if not os.access(os.path.join(args.build, "reftracer"), os.X_OK):
        ap.error(f"no {args.build}/reftracer: build the benchmarks first "
                 f"(.venv/bin/meson setup {args.build} bench && ninja -C {args.build})")
    modes = [tuple(m.split()) for m in args.modes.split(",")]
    starters = tracers(args.build)
    load = [os.getloadavg()[0]]
    runs = {(t, m): [] for t in starters for m in modes}
    for _ in range(args.rounds):
        for mode in modes:
            for t, start in starters.items():
                runs[t, mode].append(timed(args.build, mode, start, args.seconds, False)[0])
    with P.BpfStats():
        bpf = {(t, m): timed(args.build, m, s, args.seconds, True)[1]
               for m in modes for t, s in starters.items() if s}
    load.append(os.getloadavg()[0])
    print(f"load average (1 min) at start {load[0]:.1f}, at end {load[1]:.1f}; {args.rounds} "
          f"rounds of {args.seconds:g} s per tracer and mode, back to back, bpf_stats off; "
          "BPF run time from one more round with it on")
    print()
    print("| calls | tracer | ns per call | added | ÷ reference's | ÷ floor with every "
          "promise | BPF ns per call |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for mode in modes:
        m = " ".join(mode)
        med = {t: statistics.median(runs[t, mode]) for t in starters}
        added = {t: med[t] - med["untraced"] for t in starters}
        print(f"| {m} | untraced | {med['untraced']:.1f} | — | — | — | — |")
        for t in list(starters)[1:]:
            print(f"| {m} | {t} | {med[t]:.1f} | {added[t]:+.1f} | "
                  f"{added[t] / added['reference']:.2f}× | {added[t] / added[ALL]:.2f}× | "
                  f"{bpf[t, mode]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
