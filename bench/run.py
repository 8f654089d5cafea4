#!/usr/bin/env python3
"""The benchmark suite: uringwatch against a native reference tracer, in one
run on one machine, generator and tracer pinned to separate CPUs.

Build the native parts first, then run as root with the venv's python:

    .venv/bin/meson setup build-bench bench && ninja -C build-bench
    .venv/bin/python bench/run.py            # full run, prints the table
    .venv/bin/python bench/run.py --write    # and writes docs/benchmark-results.md
    .venv/bin/python bench/run.py --quick    # tiny counts

Prints one Markdown table; only --write writes a file. Timings are medians over rounds; each round
starts every tracer afresh and runs every mode once, so slow drift on a
shared machine hits all tracers alike.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import processes as P

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
RESULTS = os.path.join(REPO, "docs", "benchmark-results.md")
BUILD_HINT = ".venv/bin/meson setup build-bench bench && ninja -C build-bench"
SECTION = "## Benchmark suite (bench/run.py)"

MODES = [("invalid",), ("files", "8"), ("files", "256"), ("buffers", "64")]
TARGET_MODES = {"invalid", "files 8"}
UNRELATED = ("getppid",)
# in the bpf_stats rows only
DIAGNOSTIC = ("uringwatch library, wakeups never forced (diagnostic)",)
BPFTRACE_SCRIPT = """
BEGIN { printf("bpftrace: attached\\n"); }
tracepoint:syscalls:sys_enter_io_uring_register { @start[tid] = nsecs; }
tracepoint:syscalls:sys_exit_io_uring_register /@start[tid]/ {
  @calls = count(); delete(@start[tid]);
}
"""


@dataclass
class Plan:
    rounds: int
    calls: int            # per timing run when > 0 ...
    seconds: float        # ... else its duration
    stats_calls: int      # per run with BPF run-time statistics on
    flood_threads: int
    flood_seconds: float


QUICK = Plan(rounds=1, calls=2000, seconds=0, stats_calls=2000, flood_threads=2,
             flood_seconds=1.0)
FULL = Plan(rounds=5, calls=0, seconds=1.0, stats_calls=200_000, flood_threads=4,
            flood_seconds=60.0)


def name(mode) -> str:
    return " ".join(mode)


def tracers(build: str) -> dict:
    """Tracer name -> how to start it (None: untraced). bpftrace only if
    installed."""
    py = sys.executable
    out = {
        "untraced": None,
        "reference": lambda pid=0: P.TracerProcess(
            [os.path.join(build, "reftracer")], "reftracer: attached"),
        "uringwatch": lambda pid=0: P.TracerProcess(
            [py, "-m", "uringwatch", "--json"] + (["-p", str(pid)] if pid else []),
            "uringwatch: tracing via", stdout=subprocess.DEVNULL),
        "library": lambda pid=0: P.TracerProcess(
            [py, os.path.join(BENCH, "consume.py")] + (["--pid", str(pid)] if pid else []),
            "consume: attached"),
    }
    # diagnostic: the threshold set past the ring's size, so no record
    # ever forces a wakeup and the consumer only drains every 50 ms
    out[DIAGNOSTIC[0]] = lambda pid=0: P.TracerProcess(
        [py, os.path.join(BENCH, "consume.py"), "--wakeup-bytes", str(1 << 40)],
        "consume: attached")
    if shutil.which("bpftrace"):
        out["bpftrace"] = lambda pid=0: P.TracerProcess(
            ["bpftrace", "-e", BPFTRACE_SCRIPT], "bpftrace: attached", merged=True)
    return out


def one_run(plan: Plan, build: str, mode) -> float:
    r = P.loadgen(build, list(mode), calls=plan.calls, seconds=plan.seconds)
    return r["ns_per_call"]


def time_modes(plan: Plan, build: str, starters: dict) -> tuple[dict, list]:
    """Median ns/call per tracer and mode, and the uringwatch CLI's
    start-to-attached times."""
    timed = {t: s for t, s in starters.items() if t not in DIAGNOSTIC}
    runs = {t: {name(m): [] for m in MODES + [UNRELATED]} for t in timed}
    attach = []
    for _ in range(plan.rounds):
        for tname, start in timed.items():
            tracer = start() if start else None
            try:
                for mode in MODES + [UNRELATED]:
                    if tracer:
                        tracer.wait_idle()   # every run starts with an empty ring
                    runs[tname][name(mode)].append(one_run(plan, build, mode))
            finally:
                if tracer:
                    tracer.stop()
            if tname == "uringwatch":
                attach.append(tracer.attach_s)
    med = {t: {m: statistics.median(v) for m, v in ms.items()} for t, ms in runs.items()}
    return med, attach


def bpf_run_time(plan: Plan, build: str, starters: dict) -> dict:
    """BPF program run time per traced call (enter + exit), from the kernel's
    own statistics: the kernel side without scheduling noise."""
    out = {}
    with P.BpfStats():
        for tname in ("reference", "uringwatch", *DIAGNOSTIC):
            tracer = starters[tname]()
            try:
                for mode in (("invalid",), ("files", "8")):
                    tracer.wait_idle()
                    before = P.bpf_prog_stats(tracer.pid)
                    P.loadgen(build, list(mode), calls=plan.stats_calls)
                    out[(tname, name(mode))] = P.per_run_ns(before,
                                                            P.bpf_prog_stats(tracer.pid))
            finally:
                tracer.stop()
    return out


STATS_RE = re.compile(r"(\d+) events shown, (\d+) records emitted; (.*)")


def cli_counters(stdout: str, stderr: str) -> dict:
    """The counters uringwatch prints on stderr at exit."""
    m = STATS_RE.search(stderr)
    if not m:
        raise RuntimeError(f"no counters in uringwatch's stderr: {stderr[-500:]}")
    out = {"received": int(m[1]), "emitted": int(m[2])}
    out.update((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m[3]))
    return out


def library_counters(stdout: str, stderr: str) -> dict:
    """consume.py's JSON line."""
    return json.loads(stdout.strip().splitlines()[-1])


RSS_CAP_KIB = 1 << 20   # 1 GiB: this machine is shared; see watch_rss


def watch_rss(gen: P.Gated, tracer: P.TracerProcess) -> float | None:
    """Ends the flood early if the tracer's RSS passes RSS_CAP_KIB (a
    consumer that holds events it can't keep up with grows without bound).
    Returns the seconds into the flood when that happened, else None."""
    t0 = time.monotonic()
    while gen.proc.poll() is None:
        if tracer.status_kib("VmRSS") > RSS_CAP_KIB:
            gen.interrupt()
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def flood(plan: Plan, build: str, start, counters) -> dict:
    """A flood of invalid calls from T threads, traced for this generator's
    process only (other processes on a shared machine make calls too)."""
    gen = P.Gated(build, ["flood", str(plan.flood_threads)], plan.flood_seconds)
    try:
        tracer = start(gen.pid)
    except Exception:
        gen.proc.kill()
        raise
    gen.go()
    capped_at = watch_rss(gen, tracer)
    made = gen.result()
    tracer.wait_idle()   # a signal mid-batch could cut the batch short
    rss_kib = tracer.status_kib("VmHWM")
    cpu = tracer.cpu_seconds() - tracer.cpu_at_attach
    out, err = tracer.stop()
    c = counters(out, err)
    c.update(calls=made["register_calls"], rss_kib=rss_kib, cpu_s=c.get("cpu_s", cpu),
             attach_s=tracer.attach_s, capped_at=capped_at)
    # every call ends once: received, or dropped for one cause (inflight_full
    # calls are also counted as no_enter at their exit, so not added again)
    c["drops"] = sum(c.get(k, 0) for k in ("ring_full", "no_enter", "no_exit",
                                           "decode_errors"))
    c["gap"] = c["received"] + c["drops"] - c["calls"]
    return c


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def timing_rows(med: dict) -> list[tuple]:
    rows = []
    base = med["untraced"]
    for mode in MODES:
        m = name(mode)
        rows.append((f"{m}: untraced ns/call", f"{base[m]:.0f}", "", ""))
        added = {t: med[t][m] - base[m] for t in med if t != "untraced"}
        for t, label in (("reference", "reference tracer (C, libbpf)"),
                         ("uringwatch", "uringwatch --json > /dev/null"),
                         ("library", "uringwatch library consumer (decode only)"),
                         ("bpftrace", "bpftrace (count only)")):
            value = f"{added[t]:+.0f} ns" if t in added else "not measured: bpftrace not installed"
            rows.append((f"{m}: added by {label}", value, "", ""))
        ratio = added["uringwatch"] / added["reference"] if added["reference"] > 0 else float("inf")
        target = "≤ 1.2×" if m in TARGET_MODES else ""
        rows.append((f"{m}: **uringwatch ÷ reference added cost**", f"{ratio:.2f}×", target,
                     verdict(ratio <= 1.2) if target else ""))
    return rows


def bpf_rows(bpf: dict) -> list[tuple]:
    rows = []
    for (t, m), progs in sorted(bpf.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        parts = " + ".join(f"{ns:.0f}" for ns in progs.values())
        rows.append((f"{m}: BPF run time per call, {t} (enter + exit, bpf_stats)",
                     f"{sum(progs.values()):.0f} ns ({parts})", "", ""))
    return rows


def unrelated_rows(med: dict) -> list[tuple]:
    m = name(UNRELATED)
    base = med["untraced"][m]
    uw = med["uringwatch"][m] - base
    return [(f"{m}: untraced ns/call", f"{base:.0f}", "", ""),
            (f"{m}: added with reference attached", f"{med['reference'][m] - base:+.0f} ns",
             "", ""),
            (f"{m}: added with uringwatch attached", f"{uw:+.0f} ns", "≤ 20 ns",
             verdict(uw <= 20))]


def flood_rows(plan: Plan, fl: dict, attach: list) -> list[tuple]:
    cli, lib = fl["uringwatch"], fl["library"]
    t = f"flood {plan.flood_threads} threads × {plan.flood_seconds:g} s"
    rows = []
    for label, c in (("uringwatch --json", cli), ("library consumer", lib)):
        causes = ", ".join(f"{k}={c.get(k, 0)}" for k in
                           ("ring_full", "no_enter", "no_exit", "decode_errors",
                            "inflight_full"))
        made = str(c["calls"])
        if c["capped_at"] is not None:
            made += f" (stopped {c['capped_at']:.1f} s in: RSS safety cap)"
        rows += [(f"{t}, {label}: calls made", made, "", ""),
                 (f"{t}, {label}: events received", str(c["received"]), "", ""),
                 (f"{t}, {label}: drops by cause", causes, "", ""),
                 (f"{t}, {label}: received + drops − calls", str(c["gap"]), "0",
                  verdict(c["gap"] == 0))]
    lib_rate = lib["received"] / lib["cpu_s"] if lib["cpu_s"] else 0
    cli_rate = cli["received"] / cli["cpu_s"] if cli["cpu_s"] else 0
    attach_med = statistics.median(attach)
    rss_mb = cli["rss_kib"] * 1024 / 1e6
    rss = f"{rss_mb:.1f} MB"
    if cli["capped_at"] is not None:
        rss = (f"≥ {rss_mb:.0f} MB (flood stopped {cli['capped_at']:.1f} s in, when RSS "
               f"passed the {RSS_CAP_KIB >> 20} GiB safety cap; it grew on while draining)")
    return rows + [
        ("consumer: events decoded per CPU-second (library)", f"{lib_rate:,.0f}", "≥ 1,000,000",
         verdict(lib_rate >= 1e6)),
        ("consumer: JSON Lines written per CPU-second (uringwatch --json)", f"{cli_rate:,.0f}",
         "≥ 1,000,000", verdict(cli_rate >= 1e6)),
        (f"start to attached, uringwatch (median of {len(attach)}, max {max(attach):.2f} s)",
         f"{attach_med:.2f} s", "≤ 0.3 s", verdict(attach_med <= 0.3)),
        (f"peak RSS of uringwatch --json during the {t} (VmHWM)", rss, "≤ 60 MB",
         verdict(rss_mb <= 60)),
    ] + replay_rows(plan)


def replay_rows(plan) -> list[tuple]:
    """bench/replay_bench.py, on this process's CPU."""
    import replay_bench
    n, structs, jsonl = replay_bench.measure(2000 if plan is QUICK else 300_000)
    return [
        (f"replay: records/s into Structs ({n} records, one core)", f"{structs:,.0f}",
         "≥ 2,000,000", verdict(structs >= 2e6)),
        (f"replay: records/s to JSON Lines ({n} records, one core)", f"{jsonl:,.0f}",
         "≥ 1,000,000", verdict(jsonl >= 1e6)),
    ]


def markdown(rows: list[tuple]) -> str:
    lines = ["| measurement | measured | target | result |", "| --- | ---: | --- | --- |"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                  if ln.startswith("model name")), "unknown")
    mem = next(int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))
    return (f"{os.cpu_count()} CPUs (`nproc`), {model}, {mem / 2**20:.1f} GiB, "
            f"Linux {os.uname().release}")


def section(table: str, plan: Plan, foreign: list[int]) -> str:
    date = datetime.date.today().isoformat()
    others = (f" Other processes had BPF on `io_uring_register` during the run "
              f"(pids {', '.join(map(str, foreign))}): their programs run on "
              f"every call, untraced ones included." if foreign else "")
    how = (f"{plan.rounds} rounds, medians; each timing run "
           + (f"{plan.calls} calls" if plan.calls else f"{plan.seconds:g} s"))
    return (f"{SECTION}\n\n"
            f"`.venv/bin/python bench/run.py` (root; build first: `{BUILD_HINT}`). Generator `bench/loadgen` pinned to CPU "
            f"{P.GEN_CPU}, tracer to CPU {P.TRACER_CPU}; {how}. \"Added\" is ns/call "
            f"traced minus untraced. Measured {date} on {machine()}.{others}\n\n{table}\n")


def write_results(path: str, text: str) -> None:
    """The whole results file: generated, so a run never edits the
    hand-written docs/BENCHMARKS.md that links to it."""
    with open(path, "w") as f:
        f.write("# Benchmark results\n\nWritten by `bench/run.py --write` "
                "(the analysis is in BENCHMARKS.md).\n\n" + text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny counts")
    ap.add_argument("--build", default=os.path.join(REPO, "build-bench"),
                    help="meson build directory of bench/ (default: build-bench)")
    ap.add_argument("--write", nargs="?", const=RESULTS, metavar="FILE",
                    help="also write the results as Markdown to FILE "
                    "(default: docs/benchmark-results.md)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run.py: needs root (loads BPF)", file=sys.stderr)
        return 77
    for exe in ("loadgen", "reftracer"):
        if not os.access(os.path.join(args.build, exe), os.X_OK):
            print(f"run.py: no {exe} in {args.build}; build first: {BUILD_HINT}",
                  file=sys.stderr)
            return 1
    plan = QUICK if args.quick else FULL
    os.sched_setaffinity(0, {P.TRACER_CPU})   # keep the generator's CPU to itself
    starters = tracers(args.build)
    foreign = P.foreign_uring_hooks({os.getpid()})
    med, attach = time_modes(plan, args.build, starters)
    bpf = bpf_run_time(plan, args.build, starters)
    fl = {t: flood(plan, args.build, starters[t], counters)
          for t, counters in (("uringwatch", cli_counters), ("library", library_counters))}
    attach.append(fl["uringwatch"]["attach_s"])
    table = markdown(timing_rows(med) + bpf_rows(bpf) + unrelated_rows(med)
                     + flood_rows(plan, fl, attach))
    print(table)
    if args.write:
        write_results(args.write, section(table, plan, foreign))
    return 0


if __name__ == "__main__":
    sys.exit(main())
