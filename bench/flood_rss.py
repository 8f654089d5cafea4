#!/usr/bin/env python3
"""The CLI's memory under bench/run.py's flood, without the rest of the
suite (which takes 12 minutes): `uringwatch --json --no-fair` (stdout to
/dev/null) traces `loadgen flood THREADS` for SECONDS, as run.py's
"peak RSS" row does.

    .venv/bin/meson setup build-bench bench && ninja -C build-bench loadgen
    .venv/bin/python bench/flood_rss.py [--threads 4] [--seconds 60] [ARGS...]

ARGS after `--` go to uringwatch as well. Prints one JSON line: RSS in MB
(10^6 bytes, as run.py's row) right after "tracing via" (imports, object,
ring buffer mapped; start to attached in seconds beside it) and its peak (VmHWM) after the flood drained, the
flood's accounting (received + coalesced + drops - calls, 0 when every
call is accounted for), the lines written per CPU-second of the tracer
(run.py's JSON Lines row) and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import processes as P
import run

MB = 1024 / 1e6     # per KiB


def measure(build: str, threads: int, seconds: float, extra: list[str]) -> dict:
    plan = run.Plan(rounds=1, calls=0, seconds=0, stats_calls=0, flood_threads=threads,
                    flood_seconds=seconds, swarm_seconds=0, swarm_once=0)
    attached = {}

    def start(*pids):
        tracer = run.cli("--json", "--no-fair", *extra)(*pids)
        attached["rss_kib"] = tracer.status_kib("VmRSS")
        return tracer

    load_before = os.getloadavg()[0]
    c = run.flood(plan, build, start, run.cli_counters, False)
    return {"threads": threads, "seconds": seconds,
            "attach_s": round(c["attach_s"], 3),
            "rss_attached_mb": round(attached["rss_kib"] * MB, 1),
            "peak_rss_mb": round(c["rss_kib"] * MB, 1),
            "calls": c["calls"], "received": c["received"],
            "coalesced": c.get("coalesced", 0), "drops": c["drops"], "gap": c["gap"],
            "capped_at": c["capped_at"],
            "lines_per_cpu_s": round(c["received"] / c["cpu_s"]) if c["cpu_s"] else 0,
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(run.REPO, "build-bench"),
                    help="bench/'s meson build directory (default: build-bench)")
    ap.add_argument("--threads", type=int, default=run.FULL.flood_threads)
    ap.add_argument("--seconds", type=float, default=run.FULL.flood_seconds)
    ap.add_argument("extra", nargs="*", help="more uringwatch arguments (after --)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("flood_rss: needs root (loads BPF)", file=sys.stderr)
        return 77
    if not os.access(os.path.join(a.build, "loadgen"), os.X_OK):
        print(f"flood_rss: no loadgen in {a.build}; build first: {run.BUILD_HINT}",
              file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {P.TRACER_CPU})   # keep the generator's CPU to itself
    print(json.dumps(measure(a.build, a.threads, a.seconds, a.extra)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
