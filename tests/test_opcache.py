"""The operations' per-CPU fast path (bpf/opcache.h): an operation like
the CPU's last is only added to a pending count, which user space adds to
the summary's. Everything here runs on one CPU, so that the processes'
operations meet in the one CPU's slot: counts must stay exact whether the
fingerprint misses at every operation or hits for thousands."""

import collections
import os
import time

import pytest

import uring
from helpers import needs_root
from test_rings import _child, _wait, collect, kinds, needs_ops  # noqa: F401 (fixture)

pytestmark = needs_root

ROUNDS = 150
MIXED = 64          # ring A: plain and personality NOPs, one after the other
SAME = 1024         # ring B: one key, a long run


@pytest.fixture
def one_cpu():
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    yield
    os.sched_setaffinity(0, before)


@pytest.fixture
def tracer():
    from uringwatch import Filters, Tracer
    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True,
                count_interval=0.2) as t:
        yield t


def _counts(events, pids):
    """(pid, ring id, under a personality) -> operations counted."""
    out = collections.Counter()
    for e in kinds(events, "Op"):
        if e.pid in pids and e.reason == "count":
            out[e.pid, e.ring_id, e.personality_cred is not None] += e.count
    return out


def _skipped(tracer) -> int:
    """Runs of the submit program the kernel skipped on this tracer: where
    programs run preemptible (7.2, PREEMPT_LAZY), one preempted inside it
    makes the kernel skip the next on its CPU (recursion_misses)."""
    return sum(n for name, n in (tracer._obj.runs_skipped() or {}).items()
               if name.startswith("tp_btf__io_uring_submit_"))


def _worker(go_r, rings_w):
    """Two rings; A alternates plain NOPs and NOPs under a personality (a
    miss every operation), B submits SAME alike (hits)."""
    a, b = uring.Ring(MIXED), uring.Ring(SAME)
    pers = uring.register(a.fd, uring.REGISTER_PERSONALITY, None, 0)
    assert pers > 0
    for i in range(MIXED):
        a.put(i, uring.OP_NOP, personality=pers if i % 2 else 0)
    for i in range(SAME):
        b.put(i, uring.OP_NOP)
    os.write(rings_w, b"r")
    os.read(go_r, 1)
    for _ in range(ROUNDS):
        a.submit(MIXED)     # every slot refilled alike: no put needed again
        b.submit(SAME)
    a.close()
    b.close()


def test_counts_stay_exact_on_one_cpu_whether_the_fast_path_hits_or_misses(
        tracer, needs_ops, one_cpu):
    go_r, go_w = os.pipe()
    rings_r, rings_w = os.pipe()
    kids = [_child(lambda: _worker(go_r, rings_w)) for _ in range(2)]
    for pid in kids:
        tracer.add_pid(pid)
    os.read(rings_r, 1)
    os.read(rings_r, 1)
    events = tracer.poll(0)
    os.write(go_w, b"gg")
    # read live while they run: counts read mid-flight must not add twice
    running = set(kids)
    while running:
        events += tracer.poll(0.05)
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0
                running.discard(pid)
    events += collect(tracer, lambda ev: True, timeout=0)
    counts = _counts(events, set(kids))
    per_pid = collections.defaultdict(dict)
    for (pid, ring, pers), n in counts.items():
        per_pid[pid][ring, pers] = n
    want = sorted([ROUNDS * MIXED // 2, ROUNDS * MIXED // 2, ROUNDS * SAME])
    skipped = _skipped(tracer)
    for pid in kids:
        got = sorted(per_pid[pid].values())
        first = [e for e in kinds(events, "Op") if e.pid == pid and e.reason == "first_use"]
        assert len(first) == 3
        if not skipped:
            assert got == want, pid
        assert all(g <= w for g, w in zip(got, want)), pid
    # every operation the program ran for is counted once: none lost, none
    # twice (skipped runs may also be other processes' operations)
    assert sum(counts.values()) <= 2 * sum(want) <= sum(counts.values()) + skipped
    assert tracer.stats()["ops_untracked"] == 0


def test_a_ring_at_a_freed_rings_address_counts_from_nothing(tracer, needs_ops, one_cpu):
    """A ring made once the last is freed often gets the address of the one
    before it (rings 1, 3, 5, ... at one address, 2, 4, ... at another:
    io_ring_exit_work frees them later). Operations on every other ring
    only: the CPU's last counted operation is then on a freed ring at the
    new ring's address, from the same task, with the same opcode; yet each
    ring's operations are its own."""
    made, per = 60, 7
    for n in range(made):
        r = uring.Ring(8)
        if n % 2 == 0:
            for i in range(per):
                r.put(i, uring.OP_NOP)
            r.submit(per)
        r.close()
        time.sleep(0.01)    # freed meanwhile, mostly
    events = collect(tracer, lambda ev: False, timeout=1.0)
    rings = [e for e in kinds(events, "Ring") if e.pid == os.getpid()]
    assert len({e.ring_id for e in rings}) == made
    counts = collections.Counter()
    for e in kinds(events, "Op"):
        if e.reason == "count":
            counts[e.ring_id] += e.count
    assert sorted(counts[e.ring_id] for e in rings) == [0] * (made // 2) + [per] * (made // 2)


def test_a_pid_taken_out_of_the_filter_is_no_longer_counted(tracer, needs_ops, one_cpu):
    """The filter's verdict is part of what the fast path remembers: taking
    the pid out makes it miss, and the process's next operations, alike
    its last, go uncounted."""
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()

    def work():
        r = uring.Ring(64)
        for i in range(64):
            r.put(i, uring.OP_NOP)
        for _ in range(2):
            os.read(go_r, 1)
            r.submit(64)
            r.submit(64)
            os.write(done_w, b"d")

    kid = _child(work)
    tracer.add_pid(kid)
    os.write(go_w, b"g")
    os.read(done_r, 1)
    tracer.remove_pid(kid)
    os.write(go_w, b"g")
    os.read(done_r, 1)
    _wait(kid)
    events = collect(tracer, lambda ev: False, timeout=0.5)
    assert sum(_counts(events, {kid}).values()) == 128


def test_zero_length_fixed_reads_after_one_with_a_length_are_each_an_action(needs_ops, one_cpu):
    """Adversarial: a READ_FIXED with a length (counted, remembered by the
    fast path), then two of length 0 alike in all that fingerprint holds
    (ring, task, opcode, buffer): each is still an action, so the fast
    path can't hide them."""
    from test_findings import fixed_reads
    events, results, base = fixed_reads([(64, 0), (0, 4096), (0, 0)])
    assert results == [64, 0, 0]
    acts = [e for e in events if type(e).__name__ == "Action"]
    assert sorted((a.target.addr, a.target.len) for a in acts) == [(base, 0), (base + 4096, 0)]
