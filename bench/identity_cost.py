#!/usr/bin/env python3
"""The BPF run time that resolving identities adds to a REGISTER_FILES call.

For each resolution path this kernel offers, loads the tracer (only this
process traced, cap 256) and makes REGISTER_FILES calls of 1, 8 and 63
fds (with the ring's own, 2, 9 and 64 entries: the resolver's bound), each
fd a regular file /tmp/<dir>/file-N, on a ring that already has files, so
the kernel refuses every call (EBUSY) after the tracer has read it: each
call is one enter and one exit of the same work. The cost per resolved fd
is the slope between the 8 and 63 rows, fixed per-call costs cancelled;
--same makes every fd of a call the same file (one fd repeated). Run time per call
(enter + exit) comes from bpf_stats (kernel.bpf_stats_enabled,
run_time_ns / run_cnt via bpftool), other processes' runs of the same
programs taken out (their cost per run measured in an idle window just
before); `off` is the baseline.

--buffers: REGISTER_BUFFERS of 1 and of 16 buffers of 4 KiB (a memfd's
pages, MAP_SHARED) that succeed, each followed by UNREGISTER_BUFFERS: the
buffers' check at exit reads what the ring pinned only after a success.
Run time per pair of calls.

    .venv/bin/python bench/identity_cost.py [--buffers] [--same] [--paths off,btf]
                                            [--calls N] [--rounds R]

Prints a Markdown table, median over rounds; docs/BENCHMARKS.md quotes it.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import processes as P  # noqa: E402
import uring  # noqa: E402
from uringwatch import Filters, Tracer
from uringwatch.probe import hooks
from uringwatch.record import layout  # noqa: E402

SIZES = (1, 8, 63)
BUFFER_SIZES = (1, 16)


def ours(idle: tuple, busy: tuple, k: int) -> float:
    """ns our k io_uring_register calls took in the register programs, from
    (before, after) bpf_prog_stats of a window with none of our calls
    (idle) and one with them (busy). Other processes' calls run the
    programs too (filtered out at once, but they dilute an average: on a
    shared machine other tests call io_uring_register thousands of times
    a second); their cost per run is the idle window's."""
    total = 0.0
    for prog, (cnt, ns) in busy[1].items():
        if "io_uring_register" not in prog:
            continue
        cnt0, ns0 = busy[0].get(prog, (0, 0))
        i1, i0 = idle[1].get(prog, (0, 0)), idle[0].get(prog, (0, 0))
        other = (i1[1] - i0[1]) / (i1[0] - i0[0]) if i1[0] > i0[0] else 0.0
        total += (ns - ns0) - max(cnt - cnt0 - k, 0) * other
    return total


def run(resolve: str, one, calls: int) -> float:
    """ns of BPF run time per one() (enter + exit of its calls) with this path."""
    with Tracer(Filters(pids=frozenset([os.getpid()])), cap=256, resolve=resolve) as t:
        idle = (P.bpf_prog_stats(os.getpid()),)
        time.sleep(0.3)
        idle += (P.bpf_prog_stats(os.getpid()),)
        before = P.bpf_prog_stats(os.getpid())
        for _ in range(calls):
            one()
        after = P.bpf_prog_stats(os.getpid())
        events = t.poll(0.2)
        while more := t.poll(0):
            events += more
    assert events, "the tracer saw no calls"
    ev = events[-1]
    if resolve != "off":
        assert ev.resolve.path == resolve and (ev.files or ev.memory), ev.resolve
    return ours(idle, (before, after), calls * (2 if one.pair else 1)) / calls


def files_calls(ring: int, tmp: str, sizes: tuple, same: bool):
    """{n: one REGISTER_FILES of n fds (all one fd with `same`), refused}
    and the files to close."""
    files = [os.open(os.path.join(tmp, f"file-{i}"), os.O_RDONLY | os.O_CREAT, 0o600)
             for i in range(1 if same else max(sizes))]
    assert uring.register(ring, 2, uring.ints(files[0]), 1) == 0   # later calls: EBUSY
    calls = {}
    for n in sizes:
        fds = uring.ints(*([files[0]] * n if same else files[:n]))
        calls[n] = lambda fds=fds: uring.register(ring, 2, fds, len(fds))
        calls[n].pair = False
    return calls, files


def buffers_calls(ring: int):
    """{n: one REGISTER_BUFFERS of n memfd pages, then UNREGISTER_BUFFERS}."""
    mfd = os.memfd_create("bench-buffers")
    os.ftruncate(mfd, 4096 * max(BUFFER_SIZES))
    mem = mmap.mmap(mfd, 4096 * max(BUFFER_SIZES), flags=mmap.MAP_SHARED)
    os.close(mfd)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    calls = {}
    for n in BUFFER_SIZES:
        iov = (uring.Iovec * n)(*(uring.Iovec(base + 4096 * i, 4096) for i in range(n)))

        def one(iov=iov, n=n):
            assert uring.register(ring, uring.REGISTER_BUFFERS, iov, n) == 0
            assert uring.register(ring, uring.UNREGISTER_BUFFERS, None, 0) == 0
        one.pair = True
        calls[n] = one
    return calls, mem


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--buffers", action="store_true",
                    help="REGISTER_BUFFERS + UNREGISTER_BUFFERS pairs that succeed")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)),
                    help="fds per REGISTER_FILES call; the last two give the slope")
    ap.add_argument("--same", action="store_true",
                    help="every fd of a REGISTER_FILES call the same file")
    ap.add_argument("--paths", default="off,proc,probe_read,btf",
                    help="resolution paths to measure, where this kernel has them")
    args = ap.parse_args()
    sizes = tuple(int(n) for n in args.sizes.split(","))
    want = args.paths.split(",")
    paths = ["off"] + [p for p in ("proc", "probe_read", "btf")
                       if p in want and hooks.resolve_paths()[p]]
    ring = uring.setup()
    if args.buffers:
        calls, keep = buffers_calls(ring)
        what, unit = "REGISTER_BUFFERS (+ UNREGISTER) of", "pair of calls"
    else:
        calls, keep = files_calls(ring, tempfile.mkdtemp(prefix="uringwatch-bench-"),
                                  sizes, args.same)
        what = "REGISTER_FILES of" + (" one fd ×" if args.same else "")
        unit = "call"
    ns: dict[tuple[str, int], list[float]] = {}
    with P.BpfStats():
        for _ in range(args.rounds):
            for n, one in calls.items():
                for path in paths:
                    ns.setdefault((path, n), []).append(run(path, one, args.calls))
    med = {k: statistics.median(v) for k, v in ns.items()}
    print(f"| {what} | path | BPF ns per {unit} (enter + exit) | added by resolution |")
    print("| ---: | --- | ---: | ---: |")
    for n in calls:
        for path in paths:
            added = med[(path, n)] - med[("off", n)]
            resolved = (f"{min(n, layout.MEMS_MAX)} buffers" if args.buffers
                        else f"{min(n + 1, layout.FILES_MAX)} fds")    # the ring fd too
            note = "" if path in ("off", "proc") else f" ({resolved} resolved)"
            print(f"| {n} | {path} | {med[(path, n)]:.0f} | "
                  f"{'—' if path == 'off' else f'{added:+.0f} ns'}{note} |")
    if not args.buffers:
        lo, hi = sizes[-2], sizes[-1]
        for path in paths[1:]:
            slope = ((med[(path, hi)] - med[("off", hi)]) -
                     (med[(path, lo)] - med[("off", lo)])) / (hi - lo)
            print(f"\n{path}: {slope:.1f} ns per resolved fd (slope {lo} to {hi} fds)", end="")
        print()
    load = os.getloadavg()
    print(f"\n{args.rounds} rounds × {args.calls} calls, median; kernel {os.uname().release}; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if not args.buffers:
        for fd in keep:
            os.close(fd)
    os.close(ring)
    return 0


if __name__ == "__main__":
    sys.exit(main())
