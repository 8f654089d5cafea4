#!/usr/bin/env python3
"""A mixed soak run: every opcode family, racing writers, floods, hostile
pointers, and tracer restarts (SIGINT, SIGTERM, SIGKILL in turn), for a
fixed time. Reports events, drops, peak RSS and errors (which must be 0).

Run as root from the repo: .venv/bin/python bench/soak.py --seconds 600
"""

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import uring  # noqa: E402

UW = [sys.executable, "-m", "uringwatch", "--json", "--cap", "256"]
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]


def families(ring, stop, made):
    """Valid calls across the opcode families, in a loop."""
    efd = os.eventfd(0)
    buf = ctypes.create_string_buffer(4096)
    iov = (uring.Iovec * 1)(uring.Iovec(ctypes.addressof(buf), 4096))
    rs = (uring.Restriction * 1)(uring.Restriction(opcode=1, value=22))
    calls = [(2, uring.ints(0, 1, -1), 3), (3, None, 0), (0, iov, 1), (1, None, 0),
             (4, uring.ints(efd), 1), (5, None, 0), (8, uring.Probe(), 64),
             (9, None, 0), (11, rs, 1), (19, (ctypes.c_uint32 * 2)(0, 0), 2),
             (29, uring.ClockRegister(clockid=1), 0)]
    while not stop.is_set():
        for op, arg, nr in calls:
            uring.register(ring, op, arg, nr)
            made[0] += 1


def racer(ring, stop, made):
    fds = (ctypes.c_int32 * 512)()

    def flip():
        i = 0
        while not stop.is_set():
            i += 1
            fds[511] = i & 1
    t = threading.Thread(target=flip, daemon=True)
    t.start()
    while not stop.is_set():
        uring.register(ring, 2, fds, 512)
        uring.register(ring, 3, None, 0)
        made[0] += 2


def flooder(ring, stop, made):
    while not stop.is_set():
        for _ in range(1000):
            uring.register(ring, 9999, None, 0)
        made[0] += 1000


def hostile(ring, stop, made):
    ptrs = [0, 0x10, 0xFFFFFFFF81000000]
    while not stop.is_set():
        for op in (0, 2, 6, 11, 13, 15, 24, 33, 35):
            for p in ptrs:
                uring.register(ring, op, p, 4)
                made[0] += 1
        time.sleep(0.001)


def run_tracer(seconds, sig):
    """One tracer lifetime: (counters dict or None if killed, peak RSS kB, errors)."""
    p = subprocess.Popen(UW, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert "tracing" in p.stderr.readline()
    time.sleep(seconds)
    hwm = int(next(line.split()[1] for line in open(f"/proc/{p.pid}/status")
                   if line.startswith("VmHWM")))
    p.send_signal(sig)
    err = p.communicate(timeout=30)[1]
    errors = err.count("Traceback") + (p.returncode not in (0, -signal.SIGKILL))
    if sig == signal.SIGKILL:
        return None, hwm, errors
    summary = err.strip().splitlines()[-1]
    shown = int(summary.split("uringwatch: ")[1].split()[0])
    counters = {k: int(v) for k, v in (kv.split("=") for kv in
                                        summary.split("; ")[1].split(", "))}
    counters["shown"] = shown
    errors += counters["decode_errors"]
    return counters, hwm, errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--restart-every", type=int, default=60)
    args = ap.parse_args()
    stop, made = threading.Event(), [0]
    ring = uring.setup()
    workers = [threading.Thread(target=f, args=(ring, stop, made), daemon=True)
               for f in (families, racer, flooder, hostile)]
    for w in workers:
        w.start()
    t0, runs, peak, errors = time.monotonic(), [], 0, 0
    i = 0
    while time.monotonic() - t0 < args.seconds:
        c, hwm, e = run_tracer(min(args.restart_every, args.seconds), SIGNALS[i % 3])
        runs.append(c)
        peak, errors = max(peak, hwm), errors + e
        i += 1
    stop.set()
    counted = [r for r in runs if r]
    shown = sum(r["shown"] for r in counted)
    drops = sum(r["ring_full"] + r["inflight_full"] for r in counted)
    print("| seconds | calls made | tracer runs (SIGINT/TERM/KILL) | events shown "
          "(runs that exit cleanly) | drops counted | peak RSS | errors |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {time.monotonic() - t0:.0f} | {made[0]} | {len(runs)} | {shown} | {drops} | "
          f"{peak / 1024:.1f} MB | {errors} |")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
