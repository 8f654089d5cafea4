"""The tracer's memory under many rings held open at once (docs/RINGS.md, A ring's
whole life): `uringwatch --rings --json` as the DaemonSet runs it (stdout
to /dev/null), its RSS before, while `ringgen -k` holds RINGS rings open
(each with a NOP and a personality), and after they close.

    .venv/bin/meson setup build-bench bench && ninja -C build-bench ringgen
    .venv/bin/python bench/ring_memory.py --build build-bench [--rings 100000]
        [--no-fair] [--settle SECONDS]

Prints one JSON line: RSS in MiB (before, held peak, after), the seconds
the rings took to make, and the tracer's stop line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def watch(pid: int, seconds: float) -> float:
    """The highest RSS of pid over `seconds`, sampled every 0.1 s."""
    peak, end = 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        peak = max(peak, rss_mib(pid))
        time.sleep(0.1)
    return peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, help="bench/'s meson build directory")
    ap.add_argument("--rings", type=int, default=100_000)
    ap.add_argument("--no-fair", action="store_true", help="the tracer without fairness")
    ap.add_argument("--settle", type=float, default=8.0, help="seconds watched per phase")
    a = ap.parse_args()
    tracer = subprocess.Popen(
        [sys.executable, "-m", "uringwatch", "--rings", "--json", "-c", "ringgen",
         *(["--no-fair"] if a.no_fair else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(a.settle)                      # loaded and attached
    before = watch(tracer.pid, 1)
    gen = subprocess.Popen([os.path.join(a.build, "ringgen"), "-k", "-r", str(a.rings)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    held_line = gen.stdout.readline()
    made_s = time.monotonic() - t0
    if not held_line.startswith("held"):
        print(f"ring_memory: ringgen failed: {held_line!r}", file=sys.stderr)
        return 1
    held = max(watch(tracer.pid, a.settle), rss_mib(tracer.pid))
    gen.stdin.write("x\n")
    gen.stdin.close()
    gen.wait()
    after = watch(tracer.pid, a.settle)
    tracer.terminate()
    stop = tracer.communicate(timeout=60)[1].strip().splitlines()
    print(json.dumps({"rings": a.rings, "fair": not a.no_fair, "made_s": round(made_s, 1),
                      "rss_mib": {"before": round(before, 1), "held_peak": round(held, 1),
                                  "after": round(after, 1)},
                      "stop": stop[-1] if stop else ""}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
