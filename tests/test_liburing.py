"""liburing's own test programs (ci/liburing.py builds them, ci/prepare
runs that) as the benign real client: traced with findings on, each
passes, every io_uring_register call it made is reported, counted
against strace's independent count of the same run, and no rule fires
(single-issuer's child drives a disabled ring it enabled itself, the
hand-off the kernel sanctions: no finding)."""

import collections
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from helpers import REPO, needs_root
from test_rings import submit_tracepoint_has_request

sys.path.insert(0, os.path.join(REPO, "ci"))
import liburing  # noqa: E402

pytest.importorskip("cel")
pytestmark = [needs_root,
              pytest.mark.skipif(not shutil.which("strace"),
                                 reason="strace is not installed (ci/setup installs it)")]

PASS, SKIP = 0, 77              # liburing's T_EXIT_PASS and T_EXIT_SKIP
# strace -e raw=io_uring_register: "PID io_uring_register(0x3, 0x2, ...) = 0",
# or split in two around another thread's call: "... <unfinished ...>",
# "PID <... io_uring_register resumed>...) = -1 EBADF (Bad file descriptor)"
CALL = re.compile(r"^(\d+)\s+io_uring_register\((0x[0-9a-f]+|-?\d+), (0x[0-9a-f]+|\d+),")
RESULT = re.compile(r"\) += (-1 E[A-Z0-9]+|0x[0-9a-f]+|\d+)(?: \([^()]*\))?$")


def programs():
    where = liburing.intact()
    if where is None:
        pytest.skip(f"liburing's test programs are not built in {liburing.CACHE} "
                    f"(ci/prepare builds them: ci/liburing.py build)")
    return where


def straced(cgroup, program, log) -> list[str]:
    """program in cgroup under strace, its io_uring_register calls to log."""
    return ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh",
            "strace", "-f", "-qq", "-e", "trace=io_uring_register",
            "-e", "raw=io_uring_register", "-e", "signal=none", "-o", str(log), str(program)]


def strace_calls(path) -> collections.Counter:
    """(tid, fd, opcode, ret) of each io_uring_register strace saw."""
    import errno
    calls, pending = collections.Counter(), {}
    for line in open(path):
        tid = int(line.split(None, 1)[0])
        if m := CALL.match(line):
            pending[tid] = (int(m[2], 0), int(m[3], 0) & 0x7fffffff)
        elif "io_uring_register resumed" not in line:
            continue
        if "<unfinished" in line:
            continue
        fd, opcode = pending.pop(tid)
        ret = RESULT.search(line.rstrip("\n"))[1]
        ret = -getattr(errno, ret.split()[1]) if ret.startswith("-1") else int(ret, 0)
        calls[(tid, fd - (1 << 32) if fd >= 1 << 31 else fd, opcode, ret)] += 1
    assert not pending, f"strace left calls unfinished: {pending}"
    return calls


def traced_calls(events) -> collections.Counter:
    """The same for the tracer's events, a repeat counting its calls."""
    calls = collections.Counter()
    for e in events:
        if type(e).__name__ in ("Event", "Repeat"):
            calls[(e.tid, e.fd, e.opcode, e.ret)] += getattr(e, "count", 1)
    return calls


def test_liburing_register_tests_are_reported_exactly_and_no_finding(tmp_path, cgroup):
    """All the programs in one cgroup under one tracer, one after another,
    each under strace; every call strace saw, the tracer reported."""
    from uringwatch import Filters, Tracer
    where = programs()
    results, expected = {}, collections.Counter()
    with Tracer(Filters(cgroups=frozenset([os.stat(cgroup).st_ino])), findings=True) as t:
        events = []
        for name in liburing.PROGRAMS:
            log = tmp_path / f"{name}.strace"
            out = tmp_path / f"{name}.out"
            with open(out, "w") as f:
                p = subprocess.Popen(straced(cgroup, where / name, log), cwd=tmp_path,
                                     stdout=f, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 300
            while p.poll() is None:         # read as it runs: the ring never fills
                events += t.poll(0.05)
                if time.monotonic() > deadline:
                    p.kill()
                    pytest.fail(f"{name} ran for more than 300 s")
            results[name] = p.returncode
            if p.returncode not in (PASS, SKIP):
                pytest.fail(f"{name} exited {p.returncode}:\n{out.read_text()[-3000:]}")
            expected += strace_calls(log)
        t.detach()
        while batch := t.poll(0.2):
            events += batch
        stats = t.stats()
        errors = t.findings.errors
    assert PASS in results.values()
    assert sum(expected.values()) > 0
    got = traced_calls(events)
    assert got == expected, (f"missed: {expected - got}, extra: {got - expected}, "
                             f"counters: { {k: v for k, v in stats.items() if v} }")
    found = [(f.rule, f.comm) for f in events if type(f).__name__ == "Finding"]
    assert found == [], found
    if submit_tracepoint_has_request() and results["single-issuer"] == PASS:
        # not vacuous: its child drove the ring its parent made
        assert any(type(e).__name__ == "Op" and e.comm == "single-issuer"
                   and e.creator_pid not in (None, e.pid) for e in events)
    assert errors == {}


def test_the_count_catches_calls_the_tracer_held_back(tmp_path, cgroup):
    """The comparison is not vacuous: with a budget of 16 records a process,
    eventfd-reg's 203 calls are not all reported, and the calls missing are
    exactly those the tracer counted as dropped for its cgroup."""
    from uringwatch import Filters, Tracer
    where = programs()
    log = tmp_path / "s"
    with Tracer(Filters(cgroups=frozenset([os.stat(cgroup).st_ino])), rate=1, burst=16) as t:
        subprocess.run(straced(cgroup, where / "eventfd-reg", log), cwd=tmp_path, check=True,
                       timeout=300, stdout=subprocess.DEVNULL)
        events = []
        t.detach()
        while batch := t.poll(0.2):
            events += batch
        aggregates = t.aggregates()     # the process ended: its aggregate's
    expected, got = strace_calls(log), traced_calls(events)
    assert not got - expected
    dropped = sum(a[cause] for a in aggregates
                  for cause in ("budget", "ring_full", "inflight_full", "reserve"))
    assert sum((expected - got).values()) == dropped > 0, aggregates
