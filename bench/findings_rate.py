"""Findings' cost over a recording: replay events/s without and with the
rules engine, and CEL's cost per candidate event (docs/BENCHMARKS.md).

    .venv/bin/python bench/findings_rate.py RECORDING [RECORDING...]"""

import sys
import time

from uringwatch.findings import Engine
from uringwatch.replay import Reader


def rate(paths, engine):
    n, found, t = 0, 0, time.perf_counter()
    for batch in Reader(paths).batches():
        n += len(batch)
        if engine:
            found += len(engine.feed(batch))
    return n, found, time.perf_counter() - t


def main(paths):
    n, _, plain = rate(paths, None)
    _, found, with_rules = rate(paths, Engine())
    print(f"events {n}: replay {n / plain:,.0f}/s; with findings {n / with_rules:,.0f}/s "
          f"({found} findings)")


if __name__ == "__main__":
    main(sys.argv[1:])
