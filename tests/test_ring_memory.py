"""The tracer's own memory under many rings: what user space keeps per ring
(the ledger's registrations, the operations' counts) is bounded, and let go
of once the rings close; its RSS stays under the DaemonSet's limit.
bench/ring_memory.py measures the issue's 100,000 rings."""

import os
import re
import subprocess
import sys

from helpers import REPO, needs_root, wait_for
from test_fairness import bench_build, ringgen  # noqa: F401 (fixtures)

pytestmark = needs_root

# Rings held open at once (UW_RING_HOLD=100000 for the attack).
RINGS = int(os.environ.get("UW_RING_HOLD", "10000"))


def daemonset_limit_mib() -> int:
    text = open(os.path.join(REPO, "deploy", "daemonset.yaml")).read()
    return int(re.search(r"limits: \{memory: (\d+)Mi\}", text).group(1))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def fresh_tracer_mib() -> float:
    """The RSS of a process that only opened a tracer like the test's: what
    an agent starts from (this test's own process carries what earlier
    tests imported: pyarrow, duckdb, ...)."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from uringwatch import Filters, Tracer\n"
            "from test_ring_memory import rss_mib\n"
            "with Tracer(Filters(comm='ringgen'), rings=True, fair=False):\n"
            "    print(rss_mib())\n") % os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    return float(out.stdout.split()[-1])


def test_rings_held_open_leave_the_tracer_bounded(ringgen):  # noqa: F811
    """RINGS rings held open, each with a NOP and a personality (so each
    is in the ledger and the summary), unfiltered by fairness (its worst
    case: every record reaches user space): a fresh tracer's RSS plus what
    this process grew by stays under the DaemonSet's limit; once they close, the
    summary lets go of every key, the ledger of every ring where the kernel
    shows rings freed (else it keeps its bound), and the RSS is no higher
    than while they were held."""
    from uringwatch import Filters, Tracer
    from uringwatch.record.rings import Ledger
    events, peak = 0, 0.0

    def poll(t) -> int:
        nonlocal peak
        peak = max(peak, rss_mib())
        return len(t.poll(0.05))

    with Tracer(Filters(comm="ringgen"), rings=True, fair=False, count_interval=0.2) as t:
        before = rss_mib()
        gen = subprocess.Popen([ringgen, "-k", "-r", str(RINGS)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        os.set_blocking(gen.stdout.fileno(), False)
        held = ""
        while not held.startswith("held"):
            events += poll(t)
            held += gen.stdout.readline() or ""
            assert gen.poll() is None, "ringgen ended early"
        reader = t._reader
        wait_for(lambda: poll(t) == 0 and poll(t) == 0, "the held rings' records read")
        assert 0 < reader.ledger.held <= Ledger.MAX_RINGS
        held_peak = peak
        gen.stdin.write("x\n")
        gen.stdin.close()
        assert gen.wait(timeout=300) == 0
        sees_frees = any(a.endswith("/io_ring_exit_work") for a in t.features["rings"])
        if reader._uses:                    # where the kernel gives operations
            wait_for(lambda: poll(t) >= 0 and reader._uses.held == 0,
                     "the summary's keys let go of", timeout=120)
        if sees_frees:
            wait_for(lambda: poll(t) >= 0 and reader.ledger.held == 0,
                     "the ledger's rings let go of", timeout=120)
        after, stats = rss_mib(), t.stats()
    assert events > 0 and fresh_tracer_mib() + peak - before < daemonset_limit_mib()
    assert after <= held_peak + 2      # MiB: no higher than held, but for the allocator
    assert reader.ledger.held <= Ledger.MAX_RINGS
    if sees_frees:
        assert stats["ledger_freed"] + stats["ledger_evicted"] >= RINGS - stats["frees_lost"]
    print(f"{RINGS} rings: RSS {before:.0f} MiB before, {held_peak:.0f} held (peak), "
          f"{after:.0f} after; "
          f"{events} events, ledger_freed={stats['ledger_freed']} "
          f"ledger_evicted={stats['ledger_evicted']} frees_lost={stats['frees_lost']}")
