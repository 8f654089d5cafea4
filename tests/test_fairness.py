"""Fairness: floods of junk io_uring_register calls, from other processes or
from the caller's own, from swarms of short-lived processes, threads or
uids, hide nobody's distinct calls; every call ends exactly once, as an
event, inside a repeat record's count, or as a drop counted for its
process or its aggregate (uid and cgroup)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import uring
from helpers import REPO, meson, needs_root, read_lines
from uringwatch import Event, Filters, Repeat, Tracer
from uringwatch.record.layout import DROPS, REC_DROPS

FLOOD_SECONDS = 4
VICTIM_REGISTRATIONS = 36

# Registers FILES with a different array each time (so no call repeats the
# one before), and unregisters, every 0.1 s; prints its calls made.
VICTIM = f"""
import os, sys, time
sys.path.insert(0, {os.path.join(REPO, "tests")!r})
import uring
print(os.getpid(), flush=True)
sys.stdin.readline()
ring = uring.setup()
calls = 0
for i in range({VICTIM_REGISTRATIONS}):
    assert uring.register(ring, 2, uring.ints(*[0] * (i + 1)), i + 1) == 0
    assert uring.register(ring, 3, None, 0) == 0
    calls += 2
    time.sleep(0.1)
print(calls, flush=True)
"""


@pytest.fixture(scope="session")      # test_ring_memory.py uses it too
def bench_build(tmp_path_factory):
    """bench/'s C load generators built: loadgen (a flooder that counts its
    own calls), swarm (floods from many processes, threads or uids) and
    ringgen (floods of rings)."""
    out = tmp_path_factory.mktemp("bench") / "build"
    # generous: a kernel guest under TCG (ci/kernels.py) takes minutes
    subprocess.run([meson(), "setup", str(out), os.path.join(REPO, "bench")], check=True,
                   capture_output=True, timeout=600)
    subprocess.run(["ninja", "-C", str(out), "loadgen", "swarm", "ringgen"], check=True,
                   capture_output=True, timeout=600)
    return out


@pytest.fixture(scope="module")
def loadgen(bench_build):
    return str(bench_build / "loadgen")


@pytest.fixture(scope="module")
def swarm(bench_build):
    return str(bench_build / "swarm")


def collect(tracer, procs) -> list:
    """Every event until the processes end."""
    events = []
    while any(p.poll() is None for p in procs):
        events += tracer.poll(0.05)
    return events


def drain(tracer, procs) -> list:
    """Every event until the processes end, then what is queued and the
    repeat runs still pending in the kernel."""
    events = collect(tracer, procs)
    tracer.detach()
    while batch := tracer.poll(0):
        events += batch
    return events


def accounted(events, procs: dict, pid: int) -> int:
    """Calls of pid that reached user space as events or repeat counts, plus
    the calls the kernel counted as dropped for it."""
    calls = sum(1 for e in events if isinstance(e, Event) and e.pid == pid)
    repeats = sum(e.count for e in events if isinstance(e, Repeat) and e.pid == pid)
    p = procs.get(pid, {})
    assert repeats == p.get("coalesced", 0)
    return calls + repeats + sum(p.get(k, 0) for k in DROPS)


def accounted_all(events, aggregates: list, pids: set | None = None) -> int:
    """Calls of pids (None: all) that reached user space as events or
    repeat counts, plus the calls the kernel counted as dropped for the
    aggregates, which hold the counts of processes that ended: for when
    those aggregates hold the calls of pids only."""
    mine = [e for e in events if pids is None or e.pid in pids]
    calls = sum(1 for e in mine if isinstance(e, Event))
    repeats = sum(e.count for e in mine if isinstance(e, Repeat))
    assert repeats == sum(a["coalesced"] for a in aggregates)
    return calls + repeats + sum(a[k] for a in aggregates for k in DROPS)


@needs_root
@pytest.mark.parametrize("round_", range(5))
def test_two_flooders_hide_no_distinct_call(loadgen, round_):
    """Two processes flood junk at full speed while a third makes distinct
    registrations over several seconds: all of the third's are reported,
    and every flooder call is accounted for, exactly."""
    flooders = [subprocess.Popen([loadgen, "-g", "-d", str(FLOOD_SECONDS), "flood", "1"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for _ in range(2)]
    victim = subprocess.Popen([sys.executable, "-c", VICTIM], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    victim_pid = int(victim.stdout.readline())
    with Tracer(Filters(pids=frozenset())) as t:
        for p in flooders:
            t.add_pid(p.pid)
        t.add_pid(victim_pid)
        for p in flooders + [victim]:
            p.stdin.write("go\n")
            p.stdin.close()
        events = drain(t, flooders + [victim])
        aggs = t.aggregates()
        stats = t.stats()
    made = {p.pid: json.loads(p.stdout.read())["register_calls"] for p in flooders}
    made[victim_pid] = int(victim.stdout.read())

    mine = [e for e in events if e.pid == victim_pid]
    assert [(e.opcode, e.nr_args) for e in mine] == \
        [(op, n) for i in range(VICTIM_REGISTRATIONS) for op, n in ((2, i + 1), (3, 0))]
    assert all(isinstance(e, Event) for e in mine)
    # the processes ended: their counts are their aggregate's (this test's)
    assert len(aggs) == 1 and aggs[0]["ended"] == 3
    assert accounted_all(events, aggs) == sum(made.values())
    assert aggs[0]["coalesced"] > sum(made.values()) // 2     # junk: folded, not sent
    print(f"flooders made {sorted(made.values())} calls in {FLOOD_SECONDS} s; "
          f"coalesced={stats['coalesced']} budget={stats['budget']}")


def flood_own(ring, calls: int, distinct: bool) -> int:
    """Junk calls of this process: identical, or each different from the
    one before (nr_args varies), which defeats coalescing but not budgets."""
    for i in range(calls):
        uring.register(ring, 9999, None, i % 7 if distinct else 0)
    return calls


@needs_root
@pytest.mark.parametrize("distinct", [False, True], ids=["identical", "distinct"])
@pytest.mark.parametrize("hidden", ["PERSONALITY", "FILES"])
def test_registration_hidden_in_own_flood_is_reported(hidden, distinct, tmp_path):
    """A flooder's one real registration among its own junk is reported."""
    secret = os.open(tmp_path / "secret", os.O_RDONLY | os.O_CREAT)
    ring = uring.setup()
    with Tracer(Filters(pids=frozenset([os.getpid()]))) as t:
        made = flood_own(ring, 100_000, distinct)
        if hidden == "PERSONALITY":
            want = uring.register(ring, 9, None, 0)
            assert want > 0
        else:
            assert uring.register(ring, 2, uring.ints(secret), 1) == 0
        made += 1 + flood_own(ring, 100_000, distinct)
        events = drain(t, [])
        procs = {p["pid"]: p for p in t.processes()}
    os.close(ring)
    os.close(secret)
    if hidden == "PERSONALITY":
        (ev,) = [e for e in events if isinstance(e, Event) and e.opcode == 9]
        assert ev.ret == want
    else:
        (ev,) = [e for e in events if isinstance(e, Event) and e.opcode == 2]
        assert ev.payload.fds == [secret]
    assert accounted(events, procs, os.getpid()) == made
    if distinct:
        # the budget held the junk back; past half the ring (nobody reads
        # meanwhile, and a slow machine refills the budget for longer) as `reserve`
        assert procs[os.getpid()]["budget"] + procs[os.getpid()]["reserve"] > 0
    else:
        assert procs[os.getpid()]["coalesced"] >= made - 10


@needs_root
def test_repeat_count_survives_a_full_ring():
    """Summaries lost to a full ring lose no count: it moves to the next
    summary or is read from the kernel at stop."""
    ring = uring.setup()
    with Tracer(Filters(pids=frozenset([os.getpid()])), ring_bytes=4096, rate=0) as t:
        made = 0
        for i in range(300):               # runs of 50 identical calls, 300 runs
            made += flood_own(ring, 50, False)
            made += 1
            uring.register(ring, 9998, None, i)
        events = drain(t, [])
        procs = {p["pid"]: p for p in t.processes()}
        s = t.stats()
    os.close(ring)
    assert procs[os.getpid()]["ring_full"] > 0
    assert s["ring_full"] == procs[os.getpid()]["ring_full"]
    assert accounted(events, procs, os.getpid()) == made


UW = [sys.executable, "-m", "uringwatch"]


@needs_root
def test_repeats_live_recorded_and_replayed_alike(tmp_path):
    """The CLI prints repeat lines, names the process at stop, records them
    (the pending run too), and replay prints and filters them the same."""
    path = str(tmp_path / "flood.uwd")
    p = subprocess.Popen(UW + ["--json", "-w", path, "-p", str(os.getpid())],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "fairness: repeats coalesced" in p.stderr.readline()
    ring = uring.setup()
    for n in (1000, 500):             # UNREGISTER_FILES with none: ENXIO each time
        uring.register(ring, 9, None, 0)
        for _ in range(n):
            uring.register(ring, 3, None, 0)
    os.close(ring)
    shown = read_lines(p.stdout, 5)       # the last run is pending until the stop
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    live = [json.loads(line) for line in shown + out.splitlines()]
    assert [(e["kind"], e["opcode"], e.get("count")) for e in live] == [
        ("call", 9, None), ("call", 3, None), ("repeat", 3, 999), ("call", 9, None),
        ("call", 3, None), ("repeat", 3, 499)]
    # the first run's record came when the call changed; the last was read at stop
    assert [e["at_stop"] for e in live if e["kind"] == "repeat"] == [False, True]
    comm, cgroup_id = live[0]["comm"], live[0]["cgroup_id"]
    assert f"pid {os.getpid()} ({comm}) coalesced=1498, dropped: budget=0" in err
    assert (f"uid {os.getuid()} cgroup {cgroup_id} (0 processes ended) coalesced=1498, "
            "dropped: budget=0") in err

    def replay(*args):
        r = subprocess.run(UW + ["replay", path, *args], capture_output=True, text=True,
                           check=True)
        return r.stdout
    assert [json.loads(line) for line in replay("--json").splitlines()] == live
    assert [json.loads(line)["kind"] for line in replay(
        "--json", "--opcode", "UNREGISTER_FILES", "-p", str(os.getpid())).splitlines()] == \
        ["call", "repeat", "call", "repeat"]
    assert [json.loads(line)["opcode"] for line in replay("--json", "--opcode", "PERSONALITY")
            .splitlines()] == [9, 9]
    assert replay("--json", "-c", "nobody") == ""
    stats = json.loads(replay("--stats", "--json"))
    key = f"{os.getpid()} {comm}"
    assert stats["events"] == 4 and stats["coalesced_by_process"] == {key: 1498}
    assert stats["drops_by_process"][key]["coalesced"] == 1498
    agg = f"{os.getuid()} {cgroup_id}"      # its uid and cgroup's, this process alone
    assert stats["drops_by_aggregate"] == {agg: {
        **dict.fromkeys(("ended", *DROPS, *REC_DROPS), 0), "coalesced": 1498}}
    (line,) = [x for x in replay("--stats").splitlines()
               if x.strip().startswith(f"uid {agg.replace(' ', ' cgroup ')}: ")]
    assert {"budget=0", "coalesced=1498", "ended=0"} <= set(line.split(": ", 1)[1].split(", "))
    assert "repeated 999x more" in replay()


@needs_root
@pytest.mark.parametrize("n", [1, 200], ids=["unrolled", "bpf_loop"])
def test_only_identical_bytes_coalesce(n):
    """A call is folded only when every captured byte matches: one element
    changed in place (same address, same count), or the same fd number now
    naming another file, makes it a call of its own. 200 fds put the data
    past what is hashed unrolled (the bpf_loop path, where a count cut to 32
    bits once hashed nothing; without bpf_loop such calls are never folded)."""
    ring = uring.setup()
    assert uring.register(ring, 2, uring.ints(-1), 1) == 0     # later ones: EBUSY
    arr = uring.ints(*([-1] * n))
    fd = os.open("/etc/passwd", os.O_RDONLY)
    with Tracer(Filters(pids=frozenset([os.getpid()])), cap=1024) as t:
        for value in (-1, -1, fd, fd, "reopen", fd):
            if value == "reopen":
                os.close(fd)
                assert os.open("/etc/hostname", os.O_RDONLY) == fd
                continue
            arr[0] = value
            uring.register(ring, 2, arr, n)
        events = drain(t, [])
    os.close(fd)
    os.close(ring)
    got = [(e.payload.fds[0], {f.role: f.path for f in e.files}.get("fds[0]"))
           if isinstance(e, Event) else e.count for e in events]
    if n > 1 and not t.features["bpf_loop"]:      # too big to hash unrolled: all sent
        assert got == [(-1, None)] * 2 + [(fd, "/etc/passwd")] * 2 + [(fd, "/etc/hostname")]
        return
    assert got == [(-1, None), 1, (fd, "/etc/passwd"), 1, (fd, "/etc/hostname")]


SWARM_SECONDS = 3
ROUNDS = 10
# A victim of a few opcodes: each round registers FILES (a longer array each
# time), unregisters them, registers a personality and unregisters it, every
# 0.25 s: distinct calls, none like the one before. Prints its calls made.
VICTIM_MIXED = f"""
import os, sys, time
sys.path.insert(0, {os.path.join(REPO, "tests")!r})
import uring
print(os.getpid(), flush=True)
sys.stdin.readline()
ring = uring.setup()
for i in range({ROUNDS}):
    assert uring.register(ring, 2, uring.ints(*[-1] * (i + 1)), i + 1) == 0
    assert uring.register(ring, 3, None, 0) == 0
    cred = uring.register(ring, 9, None, 0)
    assert cred > 0
    assert uring.register(ring, 10, None, cred) == 0
    time.sleep(0.25)
print({4 * ROUNDS}, flush=True)
"""


def in_cgroup(cgroup, argv: list[str]) -> subprocess.Popen:
    """argv started inside cgroup (entered before exec: all its children
    start there too), held until a line on stdin."""
    return subprocess.Popen(["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"',
                             "sh", *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def go(procs) -> None:
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.close()


def made_by(procs) -> int:
    return sum(json.loads(p.stdout.read())["register_calls"] for p in procs)


def victim_reported(events, victim, victim_pid: int) -> None:
    """Every call of the victim is an event of its own, in order."""
    assert int(victim.stdout.read()) == 4 * ROUNDS
    mine = [e for e in events if e.pid == victim_pid]
    assert all(isinstance(e, Event) for e in mine)
    assert [(e.opcode, e.nr_args if e.opcode != 10 else None) for e in mine] == \
        [(op, n) for i in range(ROUNDS) for op, n in ((2, i + 1), (3, 0), (9, 0), (10, None))]


def under_attack(cgroup, attackers: list[list[str]], before: list[list[str]] = (),
                 **options):
    """The victim and the attackers in one cgroup, traced by it (Tracer
    options): `before` run to their end first, then the attackers and the
    victim at once. Returns (events, stats, aggregates, calls made by the
    attackers)."""
    victim = in_cgroup(cgroup, [sys.executable, "-c", VICTIM_MIXED])
    victim_pid = int(victim.stdout.readline())
    first = [in_cgroup(cgroup, argv) for argv in before]
    procs = [in_cgroup(cgroup, argv) for argv in attackers]
    with Tracer(Filters(cgroups=frozenset([os.stat(cgroup).st_ino])), **options) as t:
        go(first)
        events = collect(t, first)
        go(procs + [victim])
        events += drain(t, procs + [victim])
        stats, aggs = t.stats(), t.aggregates()
    victim_reported(events, victim, victim_pid)
    made = made_by(first + procs)
    others = {e.pid for e in events} - {victim_pid}
    assert accounted_all(events, aggs, others) == made
    print(f"made {made}: " + ", ".join(f"{k}={stats[k]}" for k in (
        "emitted", "coalesced", "budget", "reserve", "ring_full", "light", "procs_full",
        "aggs_full", "procs_ended")))
    return events, stats, aggs, made


@needs_root
def test_swarm_of_processes_hides_no_distinct_call(swarm, cgroup):
    """Short-lived processes, 8 at a time, each with a fresh budget of its
    own and 5,000 distinct junk calls, in the victim's own uid and cgroup:
    their aggregate's budget holds them all, the victim's calls pass."""
    _, stats, aggs, made = under_attack(
        cgroup, [[swarm, "-g", "-d", str(SWARM_SECONDS), "-j", "8", "-n", "5000", "procs"]])
    assert stats["budget"] + stats["reserve"] > 0 and stats["procs_full"] == 0


@needs_root
def test_thousands_of_processes_leave_no_state_behind(swarm, loadgen, cgroup):
    """20,000 processes of one call each, then two processes flooding one
    identical call: states are freed as processes end, so the flood is
    coalesced and the victim's calls pass, as with no processes before."""
    events, stats, aggs, made = under_attack(
        cgroup, [[loadgen, "-g", "-d", "2", "flood", "1"]] * 2,
        before=[[swarm, "-g", "-j", "8", "-n", "20000", "once"]])
    assert stats["procs_full"] == 0 and stats["procs_ended"] >= 20_000
    assert stats["coalesced"] > made // 2


@needs_root
def test_swarm_of_threads_hides_no_distinct_call(swarm, cgroup):
    """Short-lived threads of one process, 8 at a time, 5,000 distinct junk
    calls each: they share their process's budget."""
    _, stats, aggs, made = under_attack(
        cgroup, [[swarm, "-g", "-d", str(SWARM_SECONDS), "-j", "8", "-n", "5000", "threads"]])
    assert stats["budget"] + stats["reserve"] > 0


@needs_root
def test_swarm_across_uids_hides_no_distinct_call(swarm, cgroup):
    """Root's short-lived children, each as a uid of its own (an aggregate
    with a full budget each, more of them than the map holds here): past
    half the ring only light senders pass, and the victim is one."""
    _, stats, aggs, made = under_attack(
        cgroup, [[swarm, "-g", "-d", str(SWARM_SECONDS), "-j", "8", "-n", "1000", "-u",
                  "100000", "procs"]], max_aggs=16)
    assert stats["aggs_full"] > 0


# Makes one call, says so, and lives on until its stdin closes.
HOLDER = f"""
import sys
sys.path.insert(0, {os.path.join(REPO, "tests")!r})
import uring
sys.stdin.readline()
uring.register(uring.setup(), 9999, None, 0)
print(1, flush=True)
sys.stdin.read()
"""


@needs_root
def test_full_map_falls_back_to_the_aggregate_budget(swarm, cgroup):
    """A process that finds no room for its state (here the one entry is
    taken) is held to its aggregate's budget: fairness is never off."""
    holder = in_cgroup(cgroup, [sys.executable, "-c", HOLDER])
    flood = in_cgroup(cgroup, [swarm, "-g", "-d", "1", "-j", "1", "-n", "100000", "threads"])
    with Tracer(Filters(cgroups=frozenset([os.stat(cgroup).st_ino])), max_procs=1) as t:
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "1\n"
        go([flood])
        events = collect(t, [flood])
        holder.stdin.close()
        events += drain(t, [holder])
        stats, aggs = t.stats(), t.aggregates()
    made = made_by([flood])
    assert stats["procs_full"] > 0 and stats["budget"] + stats["reserve"] > 0
    assert accounted_all(events, aggs) == made + 1


@pytest.fixture(scope="module")
def ringgen(bench_build):
    return str(bench_build / "ringgen")


# Rings each of two flooders makes (the attack is 50,000 each:
# UW_RING_FLOOD=50000), and the victim's rounds, 0.25 s apart: each a ring
# of its own with a NOP through it, and 4 distinct register calls on it.
RING_FLOOD = int(os.environ.get("UW_RING_FLOOD", "5000"))
RING_ROUNDS = 10
VICTIM_RINGS = f"""
import os, sys, time
sys.path.insert(0, {os.path.join(REPO, "tests")!r})
import uring
print(os.getpid(), flush=True)
sys.stdin.readline()
fds = []
for i in range({RING_ROUNDS}):
    r = uring.Ring(1)
    r.put(0, uring.OP_NOP)
    assert r.submit(1) == 0
    assert uring.register(r.fd, 2, uring.ints(*[-1] * (i + 1)), i + 1) == 0
    assert uring.register(r.fd, 3, None, 0) == 0
    cred = uring.register(r.fd, 9, None, 0)
    assert cred > 0
    assert uring.register(r.fd, 10, None, cred) == 0
    fds.append(r.fd)
    time.sleep(0.25)
print(" ".join(map(str, fds)), flush=True)
"""


def submit_has_request() -> bool:
    sys.path.insert(0, os.path.dirname(__file__))
    from test_rings import submit_tracepoint_has_request
    return submit_tracepoint_has_request()


@needs_root
def test_ring_creation_flood_hides_no_victim_event(ringgen):
    """Two processes make rings unpaced, a NOP through each, while a victim
    in their uid and cgroup (their aggregate) makes rings, operations and
    register calls: every one of the victim's rings, first uses and calls
    is reported, and every flooder ring and operation is a record or a
    drop counted for its process (folded into its aggregate as it ends)."""
    ops = submit_has_request()
    flooders = [subprocess.Popen([ringgen, "-g", str(RING_FLOOD)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
    victim = subprocess.Popen([sys.executable, "-c", VICTIM_RINGS], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    victim_pid = int(victim.stdout.readline())
    pids = {p.pid for p in flooders}
    with Tracer(Filters(pids=frozenset()), rings=True, count_interval=0.2) as t:
        for p in flooders + [victim]:
            t.add_pid(p.pid)
        go(flooders + [victim])
        events = drain(t, flooders + [victim])
        aggs, stats = t.aggregates(), t.stats()
    made = [json.loads(p.stdout.read()) for p in flooders]
    victim_fds = [int(f) for f in victim.stdout.read().split()]

    rings = [e for e in events if type(e).__name__ == "Ring"]
    firsts = [e for e in events if type(e).__name__ == "Op" and e.reason != "count"]
    mine = [e for e in rings if e.pid == victim_pid]
    assert [e.fd for e in mine] == victim_fds and len(set(e.ring_id for e in mine)) == RING_ROUNDS
    calls = [e for e in events if isinstance(e, Event) and e.pid == victim_pid]
    assert [(e.opcode, e.ring_id) for e in calls] == \
        [(op, r.ring_id) for r in mine for op in (2, 3, 9, 10)]
    if ops:
        assert [e.ring_id for e in firsts if e.pid == victim_pid] == [e.ring_id for e in mine]
    # the processes ended: their counts are their aggregate's (this test's)
    assert len(aggs) <= 1 and all(a["ended"] == 3 for a in aggs)
    dropped = {k: sum(a[k] for a in aggs) for k in ("rings_dropped", "ops_dropped")}
    assert sum(1 for e in rings if e.pid in pids) + dropped["rings_dropped"] == \
        sum(m["rings"] for m in made)
    if ops:
        assert sum(1 for e in firsts if e.pid in pids) + dropped["ops_dropped"] + \
            stats["ops_untracked"] == sum(m["ops"] for m in made)
    print(f"flooders made {sum(m['rings'] for m in made)} rings; shown "
          f"{sum(1 for e in rings if e.pid in pids)}, {dropped}, recs_held="
          f"{stats['recs_held']} ring_full={stats['ring_full']} "
          f"ops_untracked={stats['ops_untracked']}")


ACTION_FLOOD = f"""
import ctypes, json, os, sys, time
sys.path.insert(0, {os.path.join(REPO, "tests")!r})
import uring
r = uring.Ring(64)
name = ctypes.create_string_buffer(b"/nonexistent/uw-flood")
print(os.getpid(), flush=True)
sys.stdin.readline()
made, end = 0, time.monotonic() + 2
while time.monotonic() < end:
    for i in range(64):
        r.put(i, uring.OP_OPENAT, fd=uring.AT_FDCWD, addr=ctypes.addressof(name))
    r.submit(64)
    made += 64
print(json.dumps({{"actions": made}}), flush=True)
"""
VICTIM_ACTIONS = f"""
import ctypes, os, sys, time
sys.path.insert(0, {os.path.join(REPO, "tests")!r})
import uring
r = uring.Ring(1)
print(os.getpid(), flush=True)
sys.stdin.readline()
for i in range(20):
    name = ctypes.create_string_buffer(f"/proc/self/fd/{{i % 3}}/uw-victim-{{i}}".encode())
    r.do(uring.OP_OPENAT, fd=uring.AT_FDCWD, addr=ctypes.addressof(name))
    time.sleep(0.1)
"""


@needs_root
def test_an_action_flood_hides_no_victim_action():
    """Two processes open through their rings unpaced (64 at a time, each
    one an action record) beside a victim in their uid and cgroup opening
    20 distinct paths through its ring: every victim action is reported,
    and every flooder action is an event, counted in one (identical ones
    are folded) or a drop counted for it."""
    if not submit_has_request():
        pytest.skip("no typed submit tracepoint (5.x): no actions")
    procs = [subprocess.Popen([sys.executable, "-c", s], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
             for s in (ACTION_FLOOD, ACTION_FLOOD, VICTIM_ACTIONS)]
    pids = [int(p.stdout.readline()) for p in procs]
    with Tracer(Filters(pids=frozenset()), rings=True, count_interval=0.2) as t:
        for pid in pids:
            t.add_pid(pid)
        go(procs)
        events = drain(t, procs)
        aggs, stats = t.aggregates(), t.stats()
    made = sum(json.loads(p.stdout.read())["actions"] for p in procs[:2])
    actions = [e for e in events if type(e).__name__ == "Action"]
    assert sorted(e.target.path for e in actions if e.pid == pids[2]) == \
        sorted(f"/proc/self/fd/{i % 3}/uw-victim-{i}" for i in range(20))
    dropped = sum(a["actions_dropped"] for a in aggs)
    shown = sum(e.count for e in actions if e.pid in pids[:2])     # repeats folded: counts
    assert shown + dropped == made
    print(f"flooders made {made} actions; shown {shown}, actions_dropped {dropped}, "
          f"ring_full={stats['ring_full']}")
