"""Findings' cost: replay events/s without and with the shipped rules over
recordings, or live (root): the consumer's CPU per event while fio drives
io_uring with every operation traced (--ops all), without and with
findings (docs/BENCHMARKS.md, Findings).

    .venv/bin/python bench/findings_rate.py RECORDING [RECORDING...]
    .venv/bin/python bench/findings_rate.py --live [--size 64M]"""

import argparse
import subprocess
import tempfile
import threading
import time

from uringwatch.analysis.findings import Engine
from uringwatch.recordings.replay import Reader


def replay_rate(paths, engine):
    n, found, t = 0, 0, time.perf_counter()
    for batch in Reader(paths).batches():
        n += len(batch)
        if engine:
            found += len(engine.feed(batch))
    return n, found, time.perf_counter() - t


def replay(paths):
    n, _, plain = replay_rate(paths, None)
    _, found, with_rules = replay_rate(paths, Engine())
    print(f"replay, {n} events: {n / plain:,.0f}/s; with findings {n / with_rules:,.0f}/s "
          f"({found} findings)")


def live_run(findings: bool, size: str) -> tuple[int, int, float, float]:
    """(events, findings, consumer CPU s, wall s) of one fio run."""
    from uringwatch import Filters, Tracer
    with tempfile.TemporaryDirectory() as d, \
            Tracer(Filters(comm="fio"), ops_all=True, fair=False, findings=findings) as t:
        done = threading.Event()

        def fio():
            subprocess.run(["fio", "--name=bench", "--ioengine=io_uring", "--registerfiles=1",
                            "--fixedbufs=1", "--rw=randread", "--bs=4k", f"--size={size}",
                            "--iodepth=16", "--numjobs=1", f"--directory={d}",
                            "--output-format=terse"], check=True, stdout=subprocess.DEVNULL)
            done.set()
        threading.Thread(target=fio).start()
        events = found = 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        while not done.is_set():
            batch = t.poll(0.05)
            events += len(batch)
            found += sum(type(e).__name__ == "Finding" for e in batch)
        t.detach()
        while batch := t.poll(0):
            events += len(batch)
        return events, found, time.process_time() - cpu0, time.monotonic() - wall0


def live(size: str):
    for findings in (False, True):
        n, found, cpu, wall = live_run(findings, size)
        print(f"live, findings {'on' if findings else 'off'}: {n} events in {wall:.1f} s, "
              f"consumer {cpu:.2f} CPU s = {n / cpu:,.0f} events per CPU s ({found} findings)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("recordings", nargs="*")
    ap.add_argument("--live", action="store_true")
    ap.add_argument("--size", default="64M", help="fio's file size (--live)")
    args = ap.parse_args()
    if args.live:
        live(args.size)
    if args.recordings:
        replay(args.recordings)


if __name__ == "__main__":
    main()
