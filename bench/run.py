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
FAIR_SECTION = "## Fairness (bench/run.py --fairness)"
# the record rows' file: the full writing path, without filling the disk
# at ~150 MB/s of records
RECORD_FILE = os.devnull

MODES = [("invalid",), ("files", "8"), ("files", "256"), ("buffers", "64")]
# syscalls of processes that never touch io_uring: the buffer-ring
# tracking (bpf/pbuf.h) runs a program at each mmap's entry and exit
UNRELATED = [("getppid",), ("mmap",)]
# in the bpf_stats rows only
DIAGNOSTIC = ("uringwatch library, wakeups never forced (diagnostic)",)
# the cost of fairness: every distinct call still sent, with no budget
# (--rate 0: the budgets and the ring's fill never looked at), with a budget
# never spent (its whole path: both buckets, the aggregate's lookup, the
# fill), against none of it; in the bpf_stats rows only
FAIR_ON, FAIR_OFF = "uringwatch library, fairness with no budget", "uringwatch library, --no-fair"
FAIR_BUDGET = "uringwatch library, fairness with a budget never spent"
FAIR_TRACERS = (FAIR_OFF, FAIR_ON, FAIR_BUDGET)
UNSPENT_RATE = "100000000"      # records per second: 10 ns of budget a call
# --baseline: the same three with another build of the package
BASELINE = "baseline: "
# the CLI without identity resolution: the capture alone, like the reference's work
NO_IDS = "uringwatch --resolve off"
# added cost ÷ the reference's, at most (issue #26); bench/floors.py says
# what the promises alone cost against the same reference
RATIO_TARGETS = {("invalid", "uringwatch"): 1.2, ("invalid", NO_IDS): 1.2,
                 ("files 8", "uringwatch"): 1.5, ("files 8", NO_IDS): 1.2}
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
    swarm_seconds: float  # each swarm attack's, and its victim's
    swarm_once: int       # one-call processes before the two-process flood


QUICK = Plan(rounds=1, calls=2000, seconds=0, stats_calls=2000, flood_threads=2,
             flood_seconds=1.0, swarm_seconds=1.0, swarm_once=200)
FULL = Plan(rounds=5, calls=0, seconds=1.0, stats_calls=200_000, flood_threads=4,
            flood_seconds=60.0, swarm_seconds=8.0, swarm_once=20_000)


def name(mode) -> str:
    return " ".join(mode)


def _pids(flag: str, pids) -> list[str]:
    return [flag, ",".join(map(str, pids))] if pids else []


def ensure_bpftrace() -> None:
    """Install bpftrace (Debian's package) for the comparison row, once;
    the rows say "not measured" if that fails."""
    if shutil.which("bpftrace") or not shutil.which("apt-get"):
        return
    print("run.py: installing bpftrace (apt) for the comparison", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "bpftrace"], env=env,
                       capture_output=True, text=True)
    if r.returncode:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "bpftrace"], env=env,
                           capture_output=True, text=True)
    if r.returncode:
        print(f"run.py: could not install bpftrace: {r.stderr.strip()[-300:]}",
              file=sys.stderr)


def cli(*args: str, stdout=subprocess.DEVNULL):
    """How to start `uringwatch ARGS` for these pids (none: all)."""
    return lambda *pids: P.TracerProcess(
        [sys.executable, "-m", "uringwatch", *args] + _pids("-p", pids),
        "uringwatch: tracing via", stdout=stdout)


def consumer(*args: str, package: str | None = None):
    """How to start the library consumer (bench/consume.py ARGS) for these
    pids (none: all), with the uringwatch package found in directory
    `package` if given (pip install --target)."""
    env = dict(os.environ, PYTHONPATH=package) if package else None
    return lambda *pids: P.TracerProcess(
        [sys.executable, os.path.join(BENCH, "consume.py"), *args] + _pids("--pid", pids),
        "consume: attached", env=env)


def fair_tracers(package: str | None = None) -> dict:
    """FAIR_TRACERS' names -> how to start each (BASELINE's with package)."""
    prefix = BASELINE if package else ""
    return {prefix + FAIR_OFF: consumer("--no-fair", package=package),
            prefix + FAIR_ON: consumer("--rate", "0", package=package),
            prefix + FAIR_BUDGET: consumer("--rate", UNSPENT_RATE, package=package)}


def tracers(build: str, baseline: str | None = None) -> dict:
    """Tracer name -> how to start it, for these pids (none: all), None:
    untraced. bpftrace only if installed; the baseline's fairness tracers
    only with a baseline package directory."""
    out = {
        "untraced": None,
        "reference": lambda *pids: P.TracerProcess(
            [os.path.join(build, "reftracer")], "reftracer: attached"),
        "uringwatch": cli("--json"),
        "library": consumer(),
        NO_IDS: cli("--json", "--resolve", "off"),
        **fair_tracers(),
        **(fair_tracers(baseline) if baseline else {}),
        # diagnostic: the threshold set past the ring's size, so no record
        # ever forces a wakeup and the consumer only drains every 50 ms
        DIAGNOSTIC[0]: consumer("--wakeup-bytes", str(1 << 40)),
    }
    if shutil.which("bpftrace"):
        out["bpftrace"] = lambda *pids: P.TracerProcess(
            ["bpftrace", "-e", BPFTRACE_SCRIPT], "bpftrace: attached", merged=True)
    return out


def flood_tracers(starters: dict) -> dict:
    """The floods' tracers and how to read their counters: the throughput
    floods with fairness off (folded, a flood of one call would cost
    nothing to read), then the library consumer with fairness on and a
    victim beside the flood."""
    return {"uringwatch": (cli("--json", "--no-fair"), cli_counters),
            "library": (consumer("--no-fair"), library_counters),
            "record": (cli("record", "--no-fair", "-w", RECORD_FILE, stdout=subprocess.PIPE),
                       record_counters),
            "fair": (starters["library"], library_counters)}


def one_run(plan: Plan, build: str, mode) -> float:
    r = P.loadgen(build, list(mode), calls=plan.calls, seconds=plan.seconds)
    return r["ns_per_call"]


def time_modes(plan: Plan, build: str, starters: dict) -> tuple[dict, list]:
    """Median ns/call per tracer and mode, and the uringwatch CLI's
    start-to-attached times."""
    timed = {t: s for t, s in starters.items()
             if t not in DIAGNOSTIC + FAIR_TRACERS and not t.startswith(BASELINE)}
    runs = {t: {name(m): [] for m in MODES + UNRELATED} for t in timed}
    attach = []
    for _ in range(plan.rounds):
        for tname, start in timed.items():
            tracer = start() if start else None
            try:
                for mode in MODES + UNRELATED:
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


def bpf_run_time(plan: Plan, build: str, starters: dict, names) -> dict:
    """BPF program run time per traced call (enter + exit), from the kernel's
    own statistics: the kernel side without scheduling noise. Rounds
    interleave the tracers, so a shared machine's drift hits all alike:
    (tracer, mode) -> one {program: ns} per round."""
    out: dict = {}
    with P.BpfStats():
        for _ in range(plan.rounds):
            for tname in names:
                tracer = starters[tname]()
                try:
                    for mode in (("invalid",), ("files", "8")):
                        tracer.wait_idle()
                        before = P.bpf_prog_stats(tracer.pid)
                        P.loadgen(build, list(mode), calls=plan.stats_calls)
                        out.setdefault((tname, name(mode)), []).append(P.per_run_ns(
                            before, P.bpf_prog_stats(tracer.pid), plan.stats_calls // 2))
                finally:
                    tracer.stop()
    return out


BPF_TRACERS = ("reference", "uringwatch", NO_IDS, *DIAGNOSTIC, *FAIR_TRACERS)


STATS_RE = re.compile(r"(\d+) events (?:shown|recorded), (\d+) records emitted; (.*)")


def cli_counters(stdout: str, stderr: str) -> dict:
    """The counters uringwatch prints on stderr at exit."""
    m = STATS_RE.search(stderr)
    if not m:
        raise RuntimeError(f"no counters in uringwatch's stderr: {stderr[-500:]}")
    out = {"emitted": int(m[2])}
    out.update((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m[3]))
    out["received"] = int(m[1]) - out.get("repeat_events", 0)     # call events
    return out


def record_counters(stdout: str, stderr: str) -> dict:
    """`record`'s counters: it decodes nothing, so the repeat records among
    those it wrote are the kernel's (`repeats`) and those read at stop."""
    out = cli_counters(stdout, stderr)
    out["received"] -= out.get("repeats", 0)
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


def flood(plan: Plan, build: str, start, counters, with_victim: bool) -> dict:
    """A flood of invalid calls from T threads, traced for this generator's
    process only (other processes on a shared machine make calls too), and
    with_victim for a victim process's too, which makes distinct calls
    meanwhile (bench/victim.py)."""
    gen = P.Gated(build, ["flood", str(plan.flood_threads)], plan.flood_seconds)
    victim = P.Victim(plan.flood_seconds) if with_victim else None
    try:
        tracer = start(gen.pid, *([victim.pid] if victim else []))
    except Exception:
        gen.proc.kill()
        if victim:
            victim.proc.kill()
        raise
    gen.go()
    if victim:
        victim.go()
    capped_at = watch_rss(gen, tracer)
    if capped_at is not None and victim:
        victim.interrupt()
    made = gen.result()
    victim_made = victim.result()["register_calls"] if victim else 0
    tracer.wait_idle()   # a signal mid-batch could cut the batch short
    rss_kib = tracer.status_kib("VmHWM")
    cpu = tracer.cpu_seconds() - tracer.cpu_at_attach
    out, err = tracer.stop()
    c = counters(out, err)
    c.update(calls=made["register_calls"] + victim_made, rss_kib=rss_kib,
             cpu_s=c.get("cpu_s", cpu), attach_s=tracer.attach_s, capped_at=capped_at)
    if victim:
        c.update(victim_calls=victim_made,
                 victim_received=int(c.get("by_pid", {}).get(str(victim.pid), 0)))
    return accounted(c)


def accounted(c: dict) -> dict:
    """Every call ends once: received, coalesced into a repeat record, or
    dropped for one cause (inflight_full calls are also counted as
    no_enter at their exit, so not added again). c with its drops and its
    gap (received + coalesced + drops - calls made)."""
    c["drops"] = sum(c.get(k, 0) for k in ("budget", "reserve", "ring_full", "no_enter",
                                           "no_exit", "decode_errors"))
    c["gap"] = c["received"] + c.get("coalesced", 0) + c["drops"] - c["calls"]
    return c


def swarm_attacks(plan: Plan) -> list[tuple[str, list, list]]:
    """The attacks on fairness (bench/swarm, bench/loadgen): (what, run to
    their end first, then run beside the victim), each an executable of
    bench/ and its arguments."""
    d = f"{plan.swarm_seconds:g}"
    return [
        (f"processes, 8 at a time for {d} s, 5,000 distinct calls each", [],
         [("swarm", ["-d", d, "-j", "8", "-n", "5000", "procs"])]),
        (f"{plan.swarm_once:,} one-call processes, then 2 processes flooding one call "
         f"for {d} s", [("swarm", ["-j", "8", "-n", str(plan.swarm_once), "once"])],
         [("loadgen", ["-d", d, "flood", "1"])] * 2),
        (f"threads of one process, 8 at a time for {d} s, 5,000 each", [],
         [("swarm", ["-d", d, "-j", "8", "-n", "5000", "threads"])]),
        (f"root's processes, each as a uid of its own, 8 at a time for {d} s, 1,000 each",
         [], [("swarm", ["-d", d, "-j", "8", "-n", "1000", "-u", "100000", "procs"])]),
    ]


def swarm_run(plan: Plan, build: str, before: list, attack: list) -> dict:
    """One attack in a fresh cgroup with bench/victim.py (the same cgroup
    and uid as the attackers, root's), traced by that cgroup with the
    library consumer's defaults: its counters, calls made, the victim's."""
    def started(gens, cgroup):
        return [P.Gated(build, argv, 0, exe, cgroup) for exe, argv in gens]

    with P.Cgroup() as cgroup:
        victim = P.Victim(plan.swarm_seconds, cgroup)
        first, gens = started(before, cgroup), started(attack, cgroup)
        tracer = P.TracerProcess([sys.executable, os.path.join(BENCH, "consume.py"),
                                  "--cgroup", cgroup], "consume: attached")
        try:
            for g in first:
                g.go()
            made = sum(g.result()["register_calls"] for g in first)
            for g in gens + [victim]:
                g.go()
            made += sum(g.result()["register_calls"] for g in gens)
            victim_made = victim.result()["register_calls"]
            tracer.wait_idle()
        finally:
            out, err = tracer.stop()
    c = library_counters(out, err)
    c.update(calls=made + victim_made, victim_calls=victim_made,
             victim_received=int(c["by_pid"].get(str(victim.pid), 0)))
    return accounted(c)


def swarm_rows(plan: Plan, build: str) -> list[tuple]:
    """Per attack, over plan.rounds rounds: the victim's calls reported and
    made, and the accounting's gap, in every round; the attackers' calls
    and where they went, in the median round by calls made."""
    rows = []
    for what, before, attack in swarm_attacks(plan):
        runs = [swarm_run(plan, build, before, attack) for _ in range(plan.rounds)]
        got = ", ".join(f"{r['victim_received']}/{r['victim_calls']}" for r in runs)
        gaps = ", ".join(str(r["gap"]) for r in runs)
        mid = sorted(runs, key=lambda r: r["calls"])[len(runs) // 2]
        where = ", ".join(f"{k}={mid.get(k, 0):,}" for k in (
            "received", "coalesced", "budget", "reserve", "ring_full", "light", "procs_ended",
            "procs_full", "aggs_full"))
        rows += [(f"swarm, {what}: victim's distinct calls reported / made, each round",
                  got, "all", verdict(all(r["victim_received"] == r["victim_calls"]
                                           for r in runs))),
                 (f"swarm, {what}: received + coalesced + drops − calls, each round", gaps,
                  "0", verdict(all(r["gap"] == 0 for r in runs))),
                 (f"swarm, {what}: calls made and where they went (median round)",
                  f"{mid['calls']:,}: {where}", "", "")]
    return rows


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
                         (NO_IDS, "uringwatch --json --resolve off > /dev/null"),
                         ("library", "uringwatch library consumer (decode only)"),
                         ("bpftrace", "bpftrace (count only)")):
            value = f"{added[t]:+.0f} ns" if t in added else "not measured: bpftrace not installed"
            rows.append((f"{m}: added by {label}", value, "", ""))
        for t, label in (("uringwatch", "uringwatch"), (NO_IDS, "uringwatch --resolve off")):
            ratio = added[t] / added["reference"] if added["reference"] > 0 else float("inf")
            limit = RATIO_TARGETS.get((m, t))
            rows.append((f"{m}: **{label} ÷ reference added cost**", f"{ratio:.2f}×",
                         f"≤ {limit}×" if limit else "", verdict(ratio <= limit) if limit else ""))
    return rows


def _spread(values: list[float]) -> str:
    """The median, and the range when there are several rounds."""
    med = statistics.median(values)
    if len(values) < 2:
        return f"{med:.0f} ns"
    return f"{med:.0f} ns (range {min(values):.0f}–{max(values):.0f}, {len(values)} rounds)"


def _totals(rounds: list[dict]) -> list[float]:
    return [sum(progs.values()) for progs in rounds]


def bpf_rows(bpf: dict) -> list[tuple]:
    """Median run time per call of each tracer, its spread over rounds, and
    each program's median."""
    rows = []
    for (t, m), rounds in sorted(bpf.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        parts = " + ".join(f"{statistics.median(r[p] for r in rounds):.0f}"
                           for p in rounds[0])
        rows.append((f"{m}: BPF run time per call, {t} (enter + exit, bpf_stats)",
                     f"{_spread(_totals(rounds))}; parts {parts}", "", ""))
    return rows


def _added(bpf: dict, on: str, off: str, m: str) -> tuple[list[float], float]:
    """Per round, on's run time minus off's (the same round: interleaved),
    and off's median."""
    on_r, off_r = _totals(bpf[(on, m)]), _totals(bpf[(off, m)])
    return [a - b for a, b in zip(on_r, off_r)], statistics.median(off_r)


def fairness_rows(bpf: dict) -> list[tuple]:
    """What fairness adds to a call that is still sent, from the kernel's
    run-time stats: with no budget (every distinct call goes to the ring),
    and with a budget never spent (the whole path a distinct call takes
    when nobody floods). An identical repeat ("invalid" makes only those)
    is coalesced instead. With a baseline, the same for it, and the
    difference between the two fairnesses' added costs."""
    rows = []
    prefixes = [""] + ([BASELINE] if any(t.startswith(BASELINE) for t, _ in bpf) else [])
    for m in ("invalid", "files 8"):
        added = {}
        for prefix in prefixes:
            for on, label in ((FAIR_ON, "no budget"), (FAIR_BUDGET, "budget never spent")):
                diffs, off = _added(bpf, prefix + on, prefix + FAIR_OFF, m)
                added[prefix, on] = diffs
                med = statistics.median(diffs)
                target = "≤ +10%" if m == "files 8" and not prefix else ""
                rows.append((f"{m}: **{prefix}fairness added per call** (BPF run time, "
                             f"{label} vs --no-fair)",
                             f"{med:+.0f} ns ({100 * med / off:+.1f}% of {off:.0f} ns; "
                             f"rounds {min(diffs):+.0f} to {max(diffs):+.0f})",
                             target, verdict(med <= 0.1 * off) if target else ""))
        if len(prefixes) > 1:
            for on in (FAIR_ON, FAIR_BUDGET):
                d = [a - b for a, b in zip(added["", on], added[BASELINE, on])]
                base = statistics.median(_totals(bpf[(BASELINE + on, m)]))
                med = statistics.median(d)
                rows.append((f"{m}: fairness's added cost, this build − baseline "
                             f"({'no budget' if on == FAIR_ON else 'budget never spent'})",
                             f"{med:+.0f} ns ({100 * med / base:+.1f}% of the baseline's "
                             f"{base:.0f} ns; rounds {min(d):+.0f} to {max(d):+.0f})",
                             "≤ +10%", verdict(med <= 0.1 * base)))
    return rows


def unrelated_rows(med: dict) -> list[tuple]:
    rows = []
    for mode in UNRELATED:
        m = name(mode)
        base = med["untraced"][m]
        uw = med["uringwatch"][m] - base
        target = mode == ("getppid",)      # the target is for a syscall no program sees
        rows += [(f"{m}: untraced ns/call", f"{base:.0f}", "", ""),
                 (f"{m}: added with reference attached",
                  f"{med['reference'][m] - base:+.0f} ns", "", ""),
                 (f"{m}: added with uringwatch attached", f"{uw:+.0f} ns",
                  "≤ 20 ns" if target else "", verdict(uw <= 20) if target else "")]
    return rows


def flood_rows(plan: Plan, fl: dict, attach: list) -> list[tuple]:
    cli, lib, fair = fl["uringwatch"], fl["library"], fl["fair"]
    t = f"flood {plan.flood_threads} threads × {plan.flood_seconds:g} s"
    rows = []
    for label, c in (("uringwatch --json --no-fair", cli), ("library consumer, --no-fair", lib),
                     ("library consumer, fairness on, with a victim", fair)):
        causes = ", ".join(f"{k}={c.get(k, 0)}" for k in
                           ("budget", "ring_full", "no_enter", "no_exit", "decode_errors",
                            "inflight_full"))
        made = str(c["calls"])
        if c["capped_at"] is not None:
            made += f" (stopped {c['capped_at']:.1f} s in: RSS safety cap)"
        rows += [(f"{t}, {label}: calls made", made, "", ""),
                 (f"{t}, {label}: call events received", str(c["received"]), "", ""),
                 (f"{t}, {label}: calls coalesced into repeat records",
                  str(c.get("coalesced", 0)), "", ""),
                 (f"{t}, {label}: drops by cause", causes, "", ""),
                 (f"{t}, {label}: received + coalesced + drops − calls", str(c["gap"]), "0",
                  verdict(c["gap"] == 0))]
    rows.append((f"{t}: victim's distinct calls reported / made (bench/victim.py)",
                 f"{fair['victim_received']} / {fair['victim_calls']}", "all",
                 verdict(fair["victim_received"] == fair["victim_calls"])))
    rec = fl["record"]
    w = f"{t}, uringwatch record --no-fair -w /dev/null"
    rec_causes = ", ".join(f"{k}={rec.get(k, 0)}"
                           for k in ("ring_full", "no_enter", "no_exit", "inflight_full"))
    rows += [(f"{w}: calls made at full speed", str(rec["calls"]), "", ""),
             (f"{w}: records written", str(rec["received"]), "", ""),
             (f"{w}: drops by cause", rec_causes, "", ""),
             (f"{w}: written + coalesced + drops − calls", str(rec["gap"]), "0", verdict(rec["gap"] == 0))]
    rec_rate = rec["received"] / rec["cpu_s"] if rec["cpu_s"] else 0
    lib_rate = lib["received"] / lib["cpu_s"] if lib["cpu_s"] else 0
    cli_rate = cli["received"] / cli["cpu_s"] if cli["cpu_s"] else 0
    attach_med = statistics.median(attach)
    rss_mb = cli["rss_kib"] * 1024 / 1e6
    rss = f"{rss_mb:.1f} MB"
    if cli["capped_at"] is not None:
        rss = (f"≥ {rss_mb:.0f} MB (flood stopped {cli['capped_at']:.1f} s in, when RSS "
               f"passed the {RSS_CAP_KIB >> 20} GiB safety cap; it grew on while draining)")
    return rows + [
        ("record: records written per CPU-second (uringwatch record --no-fair -w, never decodes)",
         f"{rec_rate:,.0f}", "≥ 1,000,000", short_of(rec_rate, 1e6)),
        ("consumer: events decoded per CPU-second (library, --no-fair)", f"{lib_rate:,.0f}",
         "≥ 1,000,000",
         short_of(lib_rate, 1e6)),
        ("consumer: JSON Lines written per CPU-second (uringwatch --json --no-fair)",
         f"{cli_rate:,.0f}",
         "≥ 500,000", short_of(cli_rate, 5e5)),
        (f"start to attached, uringwatch (median of {len(attach)}, max {max(attach):.2f} s)",
         f"{attach_med:.2f} s", "≤ 0.3 s", verdict(attach_med <= 0.3)),
        (f"peak RSS of uringwatch --json --no-fair during the {t} (VmHWM)", rss, "≤ 60 MB",
         verdict(rss_mb <= 60)),
    ] + replay_rows(plan)


def short_of(value: float, target: float) -> str:
    """met, or not met and by what factor."""
    return "met" if value >= target else f"**not met** ({target / max(value, 1):.1f}× short)"


def replay_rows(plan) -> list[tuple]:
    """bench/replay_bench.py, on this process's CPU: records per CPU-second,
    for each of its dumps."""
    import replay_bench
    rows, keep = [], replay_bench.KEEP_EVERY
    for which in replay_bench.DUMPS:
        r = replay_bench.measure(2000 if plan is QUICK else 300_000, which=which)
        n = f"{which} dump, {r['records']} records"
        rows += [
            (f"replay: records per CPU-second into Structs ({n}, one core)",
             f"{r['structs']:,.0f}", "≥ 1,000,000", short_of(r["structs"], 1e6)),
            (f"replay: records per CPU-second to JSON Lines ({n}, one core)",
             f"{r['jsonl']:,.0f}", "", ""),
            (f"replay: records per CPU-second, filtered (-p, 1 in {keep} kept; {n})",
             f"{r['filtered']:,.0f}", "≥ 2,000,000", short_of(r["filtered"], 2e6)),
            (f"replay: records per CPU-second, replay --stats ({n})", f"{r['stats']:,.0f}",
             "≥ 2,000,000", short_of(r["stats"], 2e6)),
        ]
    return rows


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
    ap.add_argument("--fairness", action="store_true",
                    help="only the fairness rows")
    ap.add_argument("--bpf", action="store_true",
                    help="only the BPF run time per call of the library consumer, with "
                    "and without fairness (with --baseline: beside DIR's)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also measure fairness's cost with the uringwatch package in DIR "
                    "(another version: pip install --no-deps --target DIR TREE)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run.py: needs root (loads BPF)", file=sys.stderr)
        return 77
    for exe in ("loadgen", "swarm", "reftracer"):
        if not os.access(os.path.join(args.build, exe), os.X_OK):
            print(f"run.py: no {exe} in {args.build}; build first: {BUILD_HINT}",
                  file=sys.stderr)
            return 1
    plan = QUICK if args.quick else FULL
    ensure_bpftrace()
    os.sched_setaffinity(0, {P.TRACER_CPU})   # keep the generator's CPU to itself
    starters = tracers(args.build, args.baseline)
    foreign = P.foreign_uring_hooks({os.getpid()})
    if args.fairness:
        return fairness_only(plan, args, starters, foreign)
    if args.bpf:
        print(markdown(bpf_rows(bpf_run_time(plan, args.build, starters,
                                             FAIR_TRACERS + baseline_tracers(args)))))
        return 0
    med, attach = time_modes(plan, args.build, starters)
    bpf = bpf_run_time(plan, args.build, starters, BPF_TRACERS + baseline_tracers(args))
    fl = {t: flood(plan, args.build, start, counters, t == "fair")
          for t, (start, counters) in flood_tracers(starters).items()}
    attach.append(fl["uringwatch"]["attach_s"])
    table = markdown(timing_rows(med) + bpf_rows(bpf) + fairness_rows(bpf)
                     + unrelated_rows(med) + flood_rows(plan, fl, attach)
                     + swarm_rows(plan, args.build))
    print(table)
    if args.write:
        write_results(args.write, section(table, plan, foreign))
    return 0


def baseline_tracers(args) -> tuple[str, ...]:
    return tuple(BASELINE + t for t in FAIR_TRACERS) if args.baseline else ()


def fairness_only(plan: Plan, args, starters: dict, foreign: list[int]) -> int:
    """--fairness: what fairness costs a call that is still sent, and what
    a victim keeps under the library consumer's flood and the swarms."""
    bpf = bpf_run_time(plan, args.build, starters, FAIR_TRACERS + baseline_tracers(args))
    lib = flood(plan, args.build, starters["library"], library_counters, True)
    t = f"flood {plan.flood_threads} threads × {plan.flood_seconds:g} s"
    rows = bpf_rows(bpf) + fairness_rows(bpf) + [
        (f"{t}: calls made (flooder + victim)", str(lib["calls"]), "", ""),
        (f"{t}: call events received", str(lib["received"]), "", ""),
        (f"{t}: calls coalesced into repeat records", str(lib.get("coalesced", 0)), "", ""),
        (f"{t}: calls dropped over budget", str(lib.get("budget", 0)), "", ""),
        (f"{t}: received + coalesced + drops − calls", str(lib["gap"]), "0",
         verdict(lib["gap"] == 0)),
        (f"{t}: victim's distinct calls reported / made (bench/victim.py)",
         f"{lib['victim_received']} / {lib['victim_calls']}", "all",
         verdict(lib["victim_received"] == lib["victim_calls"]))] + swarm_rows(plan, args.build)
    table = markdown(rows)
    print(table)
    if args.write:
        date = datetime.date.today().isoformat()
        others = (f" Other processes had BPF on `io_uring_register` during the run "
                  f"(pids {', '.join(map(str, foreign))})." if foreign else "")
        write_results(args.write, f"{FAIR_SECTION}\n\n`.venv/bin/python bench/run.py --fairness` "
                      f"(root; build first as above). Run time per call from bpf_stats over "
                      f"{plan.stats_calls} calls per mode, the library consumer (bench/consume.py) "
                      f"with fairness and no budget (`--rate 0`: every distinct call is still "
                      f"sent) and with a budget never spent (`--rate {UNSPENT_RATE}`) against "
                      f"`--no-fair`, {plan.rounds} rounds interleaved, medians; then the {t} of "
                      f"invalid calls with bench/victim.py making distinct registrations every "
                      f"0.1 s, both traced, default budget; then the swarms, each in a cgroup of "
                      f"its own with bench/victim.py, traced by cgroup, default options. "
                      f"Measured {date} on {machine()}.{others}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
