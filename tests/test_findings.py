"""Findings: each shipped rule fires on a real workload that does what it
names, and stays silent on a real benign client (fio over io_uring with
registered files and buffers) and on the benign twin of each workload."""

import ctypes
import errno
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import time
import uuid

import pytest

import uring
from helpers import needs_root
from test_rings import _child, _wait, needs_ops, submit_tracepoint_has_request  # noqa: F401

pytest.importorskip("cel")
pytestmark = needs_root


def engine(*rules_files):
    from uringwatch.analysis.findings import Engine, Ruleset
    return Engine(Ruleset(rules_files))


def rules_of(found):
    return sorted({f.rule for f in found})


def live(**kw):
    """A findings tracer of this process (and the pids a test adds)."""
    from uringwatch import Filters, Tracer
    return Tracer(Filters(pids=frozenset([os.getpid()])), findings=True,
                  count_interval=0.2, **kw)


def collect(tracer, until, timeout=30.0):
    events, deadline = [], time.monotonic() + timeout
    while not until(events) and time.monotonic() < deadline:
        events += tracer.poll(0.05)
    tracer.detach()
    while batch := tracer.poll(0):
        events += batch
    return events


def findings(events):
    return [e for e in events if type(e).__name__ == "Finding"]


# -- single calls, seen by the session's tracer ----------------------------

def test_buffers_mapping_one_page_repeatedly(tracer, ring):
    """CVE-2023-2598's set-up: eight iovecs over one page. Eight distinct
    pages registered the same way are no finding."""
    page = ctypes.create_string_buffer(4096 * 9)
    base = (ctypes.addressof(page) + 4095) & ~4095
    same = (uring.Iovec * 8)(*[uring.Iovec(base, 4096)] * 8)
    assert uring.register(ring, uring.REGISTER_BUFFERS, same, 8) == 0
    bad = tracer.one(opcode=uring.REGISTER_BUFFERS)
    uring.register(ring, uring.UNREGISTER_BUFFERS, None, 0)
    distinct = (uring.Iovec * 8)(*[uring.Iovec(base + 4096 * i, 4096) for i in range(8)])
    assert uring.register(ring, uring.REGISTER_BUFFERS, distinct, 8) == 0
    good = tracer.one(opcode=uring.REGISTER_BUFFERS)
    e = engine()
    (f,) = e.feed([bad])
    assert f.rule == "buffers-same-page" and f.severity == "high" and f.technique == "T1068"
    assert [(v.ts, v.tid, v.opcode_name) for v in f.evidence] == \
        [(bad.ts, bad.tid, "REGISTER_BUFFERS")]
    assert f.ring_id == bad.ring_id
    assert e.feed([good]) == []


PBUF_RING_MMAP, OFF_PBUF_RING = 1, 0x80000000


def _pbuf_ring(ring: int, bgid: int) -> mmap.mmap:
    """A buffer ring the kernel allocates, mapped as liburing maps it."""
    reg = uring.BufReg(ring_entries=8, bgid=bgid, flags=PBUF_RING_MMAP)
    ret = uring.register(ring, uring.REGISTER_PBUF_RING, reg, 1)
    if ret == -errno.EINVAL:
        pytest.skip("this kernel has no IOU_PBUF_RING_MMAP (6.4+)")
    assert ret == 0
    return mmap.mmap(ring, 4096, offset=OFF_PBUF_RING | bgid << 16)


def _unregister_pbuf(ring: int, bgid: int) -> None:
    assert uring.register(ring, uring.UNREGISTER_PBUF_RING, uring.BufReg(bgid=bgid), 1) == 0


def test_pbuf_ring_unregistered_while_mapped(tracer, ring):
    """CVE-2024-0582's set-up: two kernel-allocated buffer rings mapped,
    both unregistered with the first still mapped. The benign twins are no
    finding: liburing's io_uring_free_buf_ring (unregister, then unmap right
    away), and a ring unregistered after unmapping."""
    if "tracepoint/syscalls/sys_enter_mmap" not in tracer.tracer.features["rings"]:
        pytest.skip("this kernel gives no mmap tracepoints or bpf_find_vma (bpf/pbuf.h)")
    first, second = _pbuf_ring(ring, 1), _pbuf_ring(ring, 2)
    _unregister_pbuf(ring, 1)
    _unregister_pbuf(ring, 2)           # the first's pages are still mapped
    first.close()
    second.close()
    bad = tracer.mine(4)
    assert [e.pbuf_mapped for e in bad] == \
        [None, None, ["at_unregister"], ["at_unregister", "after_unregister"]]
    for bgid in (3, 4):                 # liburing's order
        m = _pbuf_ring(ring, bgid)
        _unregister_pbuf(ring, bgid)
        m.close()
    _pbuf_ring(ring, 5).close()         # unmapped first
    _unregister_pbuf(ring, 5)
    good = tracer.mine(6)
    assert [e.pbuf_mapped for e in good] == [None, ["at_unregister"], None, ["at_unregister"],
                                             None, None]
    e = engine()
    (f,) = e.feed(bad)
    assert f.rule == "pbuf-ring-unregistered-mapped" and f.severity == "high"
    assert [(v.ts, v.opcode_name) for v in f.evidence] == \
        [(bad[0].ts, "REGISTER_PBUF_RING"), (bad[2].ts, "UNREGISTER_PBUF_RING"),
         (bad[3].ts, "UNREGISTER_PBUF_RING")]
    assert f.ring_id == bad[0].ring_id
    assert e.feed(good) == []


def test_personality_churn(tracer, ring):
    """100 register/unregister pairs fire once per 64 calls; one pair is no finding."""
    calls = []
    for _ in range(100):
        pid = uring.register(ring, uring.REGISTER_PERSONALITY, None, 0)
        assert pid > 0
        assert uring.register(ring, uring.UNREGISTER_PERSONALITY, None, pid) == 0
    calls = tracer.mine(200)
    e = engine()
    assert e.feed(calls[:2]) == []
    found = e.feed(calls[2:])
    assert rules_of(found) == ["personality-churn"] and len(found) == 3
    assert len(found[0].evidence) == 16 and found[0].evidence[-1].ts == calls[63].ts


def resizable_ring() -> int:
    """RESIZE_RINGS takes DEFER_TASKRUN rings (which need SINGLE_ISSUER)."""
    p = (ctypes.c_uint32 * 30)()
    p[2] = 1 << 12 | 1 << 13
    fd = uring.syscall(uring.SYS_io_uring_setup, ctypes.c_uint32(8), p)
    if fd == -errno.EINVAL:
        pytest.skip("this kernel has no DEFER_TASKRUN rings (6.1+)")
    assert fd >= 0, os.strerror(-fd)
    return fd


def test_resize_churn(tracer):
    """40 resizes in a loop fire once; two are no finding."""
    fd = resizable_ring()
    params = (ctypes.c_uint32 * 30)()
    results = []
    for i in range(42):
        params[0], params[1] = 16 << (i % 2), 32 << (i % 2)
        results.append(uring.register(fd, uring.REGISTER_RESIZE_RINGS, params, 1))
    os.close(fd)
    if results[0] == -errno.EINVAL:
        pytest.skip("this kernel has no REGISTER_RESIZE_RINGS (6.13+)")
    assert results == [0] * 42
    calls = tracer.mine(42)
    e = engine()
    assert e.feed(calls[:2]) == []
    found = e.feed(calls[2:])
    assert rules_of(found) == ["resize-churn"] and len(found) == 1


def test_toctou_race_on_files_is_a_finding(tracer):
    """test_toctou's racing writer: the call it changed is a finding; the
    same calls without the writer are none."""
    import threading
    import test_toctou
    if not tracer.tracer.features["bpf_loop"]:
        pytest.skip("no TOCTOU re-read on this kernel")
    fds = (ctypes.c_int32 * test_toctou.CALL)()
    assert engine().feed(test_toctou.register_many(tracer, fds, 3)) == []
    stop, mine = threading.Event(), os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})

    def writer():
        os.sched_setaffinity(0, {1})
        i = 0
        while not stop.is_set():
            i += 1
            fds[test_toctou.N - 1] = i % 2
    t = threading.Thread(target=writer)
    t.start()
    try:
        events = test_toctou.register_many(tracer, fds, test_toctou.TRIES)
    finally:
        stop.set()
        t.join()
        os.sched_setaffinity(0, mine)
    changed = [e for e in events if e.toctou.changed]
    assert changed
    found = engine().feed(events)
    assert rules_of(found) == ["toctou-argument-change"]
    assert [f.evidence[0].ts for f in found] == [e.ts for e in changed]


def test_toctou_rule_matches_a_changed_call(tracer, ring):
    """The rule on a real REGISTER_FILES event, its toctou replaced by a
    change (the race itself is test_toctou's): fires; unchanged: silent."""
    import msgspec
    assert uring.register(ring, uring.REGISTER_FILES, uring.ints(0, 1), 2) == 0
    ev = tracer.one(opcode=uring.REGISTER_FILES)
    changed = msgspec.structs.replace(
        ev, toctou=msgspec.structs.replace(ev.toctou, changed=True, changes=["fds[1]"]))
    e = engine()
    assert e.feed([ev]) == []
    assert rules_of(e.feed([changed])) == ["toctou-argument-change"]


# -- rings, live through Tracer(findings=True) --------------------------------

def test_root_personality_used_after_a_privilege_drop(needs_ops):
    """Registered as root, used by a child that dropped to nobody: the
    single-event rule and the two-step sequence both fire, once each."""
    with live() as t:
        r = uring.Ring(8)
        pers = uring.register(r.fd, uring.REGISTER_PERSONALITY, None, 0)
        go_r, go_w = os.pipe()

        def dropped():
            os.read(go_r, 1)
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            ring = uring.Ring.attach(r.fd, r)
            for _ in range(3):
                ring.put(0, uring.OP_NOP, personality=pers)
                assert ring.submit(1) == 0

        child = _child(dropped)
        t.add_pid(child)
        os.write(go_w, b"x")
        _wait(child)
        events = collect(t, lambda ev: len(findings(ev)) >= 3)
        r.close()
    found = findings(events)
    assert rules_of(found) == ["credential-override", "ring-driven-by-another-process",
                               "root-personality-after-drop"]
    assert len(found) == 3
    (seq,) = [f for f in found if f.rule == "root-personality-after-drop"]
    assert [v.kind for v in seq.evidence] == ["call", "op"] and seq.pid == child


def test_root_personality_after_seteuid_alone_is_no_credential_finding(needs_ops):
    """The twin of the drop above, as liburing's personality test does it:
    seteuid alone keeps root as the real uid, which can take root back, so
    the root personality lends nothing; only the hand-off to the child fires."""
    with live() as t:
        r = uring.Ring(8)
        pers = uring.register(r.fd, uring.REGISTER_PERSONALITY, None, 0)
        go_r, go_w = os.pipe()

        def effective_only():
            os.read(go_r, 1)
            os.seteuid(65534)
            ring = uring.Ring.attach(r.fd, r)
            for _ in range(3):
                ring.put(0, uring.OP_NOP, personality=pers)
                assert ring.submit(1) == 0

        child = _child(effective_only)
        t.add_pid(child)
        os.write(go_w, b"x")
        _wait(child)
        events = collect(t, lambda ev: len(findings(ev)) >= 1)
        r.close()
    ran = [e for e in events if type(e).__name__ == "Op" and e.pid == child]
    assert any(e.creds_differ and e.task_cred.euid == 65534 for e in ran)
    assert rules_of(findings(events)) == ["ring-driven-by-another-process"]

SETUP_R_DISABLED, SETUP_SINGLE_ISSUER = 1 << 6, 1 << 12
SYS_pidfd_open, SYS_pidfd_getfd = 434, 438


def enter(ring: uring.Ring, n: int) -> int:
    """io_uring_enter of the n SQEs put: its return, an error as -errno."""
    tail = struct.unpack_from("<I", ring._sq, ring._sq_tail)[0]
    struct.pack_into("<I", ring._sq, ring._sq_tail, (tail + n) & 0xFFFFFFFF)
    return uring.syscall(uring.SYS_io_uring_enter, ctypes.c_uint32(ring.fd), ctypes.c_uint32(n),
                         ctypes.c_uint32(n), ctypes.c_uint32(uring.ENTER_GETEVENTS), None,
                         ctypes.c_size_t(0))


def enable(r: uring.Ring) -> None:
    assert uring.register(r.fd, uring.REGISTER_ENABLE_RINGS, None, 0) == 0


def nops(ring: uring.Ring, n: int = 3) -> None:
    for _ in range(n):
        ring.put(0, uring.OP_NOP)
        assert ring.submit(1) == 0


def test_the_enabler_of_a_disabled_single_issuer_ring_drives_it_unseen(needs_ops):
    """liburing's single-issuer hand-off: a child enables the disabled
    SINGLE_ISSUER ring its parent made, so the kernel makes it the ring's
    submitter, and drives it; the parent's and another child's
    submissions are refused (-EEXIST: no op). No finding."""
    with live() as t:
        r = uring.Ring(8, flags=SETUP_R_DISABLED | SETUP_SINGLE_ISSUER)
        go_r, go_w = os.pipe()

        def enabler():
            os.read(go_r, 1)
            enable(r)
            nops(uring.Ring.attach(r.fd, r))

        def refused():
            os.read(go_r, 1)
            ring = uring.Ring.attach(r.fd, r)
            ring.put(0, uring.OP_NOP)
            assert enter(ring, 1) == -errno.EEXIST

        child = _child(enabler)
        t.add_pid(child)
        os.write(go_w, b"x")
        _wait(child)
        other = _child(refused)
        t.add_pid(other)
        os.write(go_w, b"x")
        _wait(other)
        r.put(0, uring.OP_NOP)
        assert enter(r, 1) == -errno.EEXIST
        events = collect(t, lambda ev: any(type(e).__name__ == "Op" and e.pid == child
                                           for e in ev))
        r.close()
    ops = [e for e in events if type(e).__name__ == "Op"]
    assert {e.pid for e in ops} == {child}
    assert ops[0].creator_pid == os.getpid()
    assert findings(events) == []


def test_a_child_driving_a_disabled_ring_it_did_not_enable_fires(needs_ops):
    """The adversarial twin: two rings made disabled; the child enables
    one and drives both. The ring its parent enabled is a hand-off; the
    one it enabled is not."""
    with live() as t:
        mine = uring.Ring(8, flags=SETUP_R_DISABLED)
        theirs = uring.Ring(8, flags=SETUP_R_DISABLED)
        enable(mine)
        go_r, go_w = os.pipe()

        def driver():
            os.read(go_r, 1)
            enable(theirs)
            nops(uring.Ring.attach(mine.fd, mine))
            nops(uring.Ring.attach(theirs.fd, theirs))

        child = _child(driver)
        t.add_pid(child)
        os.write(go_w, b"x")
        _wait(child)
        events = collect(t, lambda ev: len({e.ring_id for e in ev if type(e).__name__ == "Op"
                                             and e.pid == child}) >= 2)
        rings = {e.fd: e.ring_id for e in events if type(e).__name__ == "Ring"}
        mine.close()
        theirs.close()
    found = findings(events)
    assert [(f.rule, f.ring_id, f.pid) for f in found] == [
        ("ring-driven-by-another-process", rings[mine.fd], child)]


def test_a_ring_taken_with_pidfd_getfd_and_driven_fires(needs_ops):
    """A process takes a ring's fd from its creator with pidfd_getfd and
    drives it: the hand-off the rule names, even after enabling another
    ring of its own."""
    with live() as t:
        r = uring.Ring(8)
        go_r, go_w = os.pipe()

        def taker():
            os.read(go_r, 1)
            enable(uring.Ring(8, flags=SETUP_R_DISABLED))
            pidfd = uring.syscall(SYS_pidfd_open, ctypes.c_int(os.getppid()), ctypes.c_uint(0))
            fd = uring.syscall(SYS_pidfd_getfd, ctypes.c_int(pidfd), ctypes.c_int(r.fd),
                               ctypes.c_uint(0))
            assert fd >= 0, os.strerror(-fd)
            nops(uring.Ring.attach(fd, r))

        other = _child(taker)
        t.add_pid(other)
        os.write(go_w, b"x")
        _wait(other)
        events = collect(t, lambda ev: len(findings(ev)) >= 1)
        r.close()
    assert [(f.rule, f.pid) for f in findings(events)] == [
        ("ring-driven-by-another-process", other)]


UNLESS_RULE = """
[[rule]]
id = "nop-after-personality"
title = "t"
severity = "info"
technique = "T1068"
explanation = "e."
kinds = ["call", "op"]
opcodes = ["REGISTER_PERSONALITY"]
sequence = [
  { kinds = ["call"], when = "event.ret > 0" },
  { kinds = ["op"], when = "event.opcode_name == 'NOP'" },
]
unless = [{ kinds = ["call"], opcodes = ["REGISTER_ENABLE_RINGS"], same = ["pid"] }]
"""


def test_an_unless_cancels_a_sequence_before_or_after_it_began(tmp_path, needs_ops):
    """The engine's `unless`, on a user's rule: a sequence (a personality
    registered, then a NOP) is cancelled by the process's ENABLE_RINGS,
    whether that came between the steps or before the first; without it
    the sequence fires."""
    with live() as t:
        r = uring.Ring(8, flags=SETUP_R_DISABLED)
        assert uring.register(r.fd, uring.REGISTER_PERSONALITY, None, 0) > 0
        enable(r)
        nops(r, 1)
        events = collect(t, lambda ev: any(type(e).__name__ == "Op" for e in ev))
        r.close()
    rules = tmp_path / "unless.toml"
    rules.write_text(UNLESS_RULE)
    (en,) = [e for e in events if getattr(e, "opcode_name", None) == "REGISTER_ENABLE_RINGS"]
    rest = [e for e in events if e is not en]

    def fired(evs):
        return [f for f in engine(rules).feed(evs) if f.rule == "nop-after-personality"]
    assert [v.kind for v in fired(rest)[0].evidence] == ["call", "op"]
    assert fired(events) == []
    assert fired([en] + rest) == []
    bad = tmp_path / "bad.toml"
    bad.write_text(UNLESS_RULE.replace('same = ["pid"]', "same = []"))
    from uringwatch.analysis.findings import RulesError
    with pytest.raises(RulesError, match="same"):
        engine(bad)


def fixed_reads(lengths_at, record=None) -> tuple[list, list, int]:
    """A ring with one registered buffer over /dev/zero's reads: a
    READ_FIXED of each (length, offset into the buffer); the events, the
    results and the buffer's base. `record`: a path to record them to."""
    from uringwatch.recordings.recorder import Recorder
    buf = ctypes.create_string_buffer(4096)
    base = ctypes.addressof(buf)
    f = os.open("/dev/zero", os.O_RDONLY)
    with live() as t:
        rec = Recorder(str(record), t) if record else None
        r = uring.Ring(8)
        assert uring.register(r.fd, uring.REGISTER_BUFFERS,
                              uring.Iovec(base, len(buf)), 1) == 0
        results = []
        for length, at in lengths_at:
            r.put(0, uring.OP_READ_FIXED, fd=f, addr=base + at, length=length, buf_index=0)
            results.append(r.submit(1))
        events = collect(t, lambda ev: sum(type(e).__name__ == "Op" for e in ev) >= 1
                         and sum(type(e).__name__ == "Action" for e in ev)
                         >= sum(n == 0 for n, _ in lengths_at))
        r.close()
        if rec:
            rec.close()
    os.close(f)
    return events, results, base


def test_a_zero_length_fixed_read_at_its_buffers_end_fires(needs_ops, tmp_path):
    """A READ_FIXED of length 0 at one past the registered buffer's last
    byte: the kernel accepts it (a read of nothing: 0) and reports it as
    an action with its address, which the buffer table places at the end.
    One beyond the end the kernel refuses (-EFAULT): the same rule, which
    fires once per ring and process. Over the recording, the same."""
    events, results, base = fixed_reads([(0, 4096), (0, 8192)], tmp_path / "cap.uwd")
    assert results == [0, -errno.EFAULT]
    act, beyond = [e for e in events if type(e).__name__ == "Action"]
    t = act.target
    assert (act.opcode_name, t.addr, t.len, t.buffer_index) == ("READ_FIXED", base + 4096, 0, 0)
    assert (t.buffer.base, t.buffer.len, t.buffer_at) == (base, 4096, "end")
    assert act.result == 0
    assert (beyond.target.buffer_at, beyond.result) == ("outside", -errno.EFAULT)
    (f,) = findings(events)
    assert (f.rule, f.pid, f.ring_id) == ("fixed-buffer-zero-length-at-end", os.getpid(),
                                          act.ring_id)
    out = subprocess.run([sys.executable, "-m", "uringwatch", "findings", "--json",
                          str(tmp_path / "cap.uwd")], capture_output=True, text=True, check=True)
    assert [(x["rule"], x["evidence"][0]["ts"]) for x in map(json.loads, out.stdout.splitlines())] \
        == [(f.rule, act.ts)]


def test_fixed_reads_with_a_length_or_inside_their_buffer_are_no_finding(needs_ops):
    """The benign twin: fixed reads with a length (no actions: counted
    as operations) and one of length 0 at the buffer's start."""
    events, results, base = fixed_reads([(64, 0), (64, 4096 - 64), (0, 0)])
    assert results == [64, 64, 0]
    acts = [e for e in events if type(e).__name__ == "Action"]
    assert [(a.target.addr, a.target.buffer_at) for a in acts] == [(base, "start")]
    assert findings(events) == []


def test_own_ring_and_own_personality_are_no_finding(needs_ops):
    """The benign twin: a ring used by its creator, a personality used by
    the identity that saved it."""
    with live() as t:
        r = uring.Ring(8)
        pers = uring.register(r.fd, uring.REGISTER_PERSONALITY, None, 0)
        for _ in range(3):
            r.put(0, uring.OP_NOP, personality=pers)
            assert r.submit(1) == 0
        events = collect(t, lambda ev: any(type(e).__name__ == "Op" for e in ev))
        r.close()
    assert any(type(e).__name__ == "Op" for e in events)
    assert findings(events) == []


# -- containers: a cgroup named as Podman names a container's -------------------

CONTAINER = "sh -c 'echo $$ > {cg}/cgroup.procs && exec \"$@\"' sh"
SQPOLL_RING = ("import sys; sys.path.insert(0, {tests!r}); import uring; "
               "r = uring.Ring(8, flags=uring.SETUP_SQPOLL, sq_thread_idle=10); r.close()")


def test_sqpoll_ring_in_a_container(cgroup):
    from uringwatch import Filters, Tracer
    cid = uuid.uuid4().hex * 2
    cg = cgroup / f"libpod-{cid}.scope"
    cg.mkdir()
    code = SQPOLL_RING.format(tests=os.path.dirname(__file__))
    with Tracer(Filters(cgroups=frozenset([os.stat(cg).st_ino])), findings=True) as t:
        subprocess.run(["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh",
                        sys.executable, "-c", code], check=True, timeout=60)
        events = collect(t, lambda ev: len(findings(ev)) >= 2)
    found = findings(events)
    assert rules_of(found) == ["io-uring-in-container", "sqpoll-in-container"]
    assert {f.container_id for f in found} == {cid}


def test_a_ring_outside_containers_is_no_finding(cgroup):
    from uringwatch import Filters, Tracer
    code = SQPOLL_RING.format(tests=os.path.dirname(__file__))
    with Tracer(Filters(cgroups=frozenset([os.stat(cgroup).st_ino])), findings=True) as t:
        subprocess.run(["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh",
                        sys.executable, "-c", code], check=True, timeout=60)
        events = collect(t, lambda ev: any(type(e).__name__ == "Ring" for e in ev))
    assert any(type(e).__name__ == "Ring" for e in events)
    assert findings(events) == []


# -- the benign real client --------------------------------------------------------

@pytest.mark.skipif(not shutil.which("fio"), reason="fio is not installed (ci/setup installs it)")
@pytest.mark.parametrize("extra", [[], ["--sqthread_poll=1"]])
def test_fio_with_registered_files_and_buffers_is_no_finding(tmp_path, cgroup, extra):
    """fio in a cgroup of its own (another fio on the machine is not ours)."""
    from uringwatch import Filters, Tracer
    with Tracer(Filters(cgroups=frozenset([os.stat(cgroup).st_ino])), findings=True) as t:
        subprocess.run(["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh",
                        "fio", "--name=benign", "--ioengine=io_uring", "--registerfiles=1",
                        "--fixedbufs=1", "--rw=randrw", "--bs=4k", "--size=1M",
                        "--iodepth=8", "--numjobs=2", f"--directory={tmp_path}",
                        "--output-format=terse", *extra],
                       check=True, timeout=120, stdout=subprocess.DEVNULL)
        events = collect(t, lambda ev: sum(type(e).__name__ == "Event" for e in ev) >= 4)
    kinds = {type(e).__name__ for e in events}
    assert "Event" in kinds and ("Op" in kinds or not submit_tracepoint_has_request())
    assert [(f.rule, f.pid, f.ring_id) for f in findings(events)] == []
    assert t.findings.errors == {}


# -- rules as data ------------------------------------------------------------------

def test_users_disable_allowlist_and_extend(tmp_path, tracer, ring):
    page = ctypes.create_string_buffer(8192)
    base = (ctypes.addressof(page) + 4095) & ~4095
    same = (uring.Iovec * 4)(*[uring.Iovec(base, 4096)] * 4)
    assert uring.register(ring, uring.REGISTER_BUFFERS, same, 4) == 0
    ev = tracer.one(opcode=uring.REGISTER_BUFFERS)
    disable = tmp_path / "disable.toml"
    disable.write_text('disable = ["buffers-same-page"]\n')
    allow = tmp_path / "allow.toml"
    allow.write_text(f'[allow]\nuid = [{os.getuid()}]\n')
    mine = tmp_path / "mine.toml"
    mine.write_text('[[rule]]\nid = "any-buffers"\ntitle = "t"\nseverity = "info"\n'
                    'technique = "T1068"\nexplanation = "e."\nkinds = ["call"]\n'
                    'opcodes = ["REGISTER_BUFFERS"]\nwhen = "size(event.payload.iovecs) == 4"\n')
    assert rules_of(engine().feed([ev])) == ["buffers-same-page"]
    assert engine(disable).feed([ev]) == []
    assert engine(allow).feed([ev]) == []
    assert rules_of(engine(mine).feed([ev])) == ["any-buffers", "buffers-same-page"]


@pytest.mark.parametrize("text,says", [
    ('[[rule]]\nid = "x"\n', "rule"),
    ('disable = ["no-such-rule"]\n', "no-such-rule"),
    ('[[rule]]\nid = "x"\ntitle = "t"\nseverity = "high"\ntechnique = "T1"\n'
     'explanation = "e"\nkinds = ["call"]\nwhen = "event.ret >>> 1"\n', "rule x"),
    ('bogus = 1\n', "bogus"),
])
def test_a_bad_rules_file_is_one_line(tmp_path, text, says):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    out = subprocess.run([sys.executable, "-m", "uringwatch", "findings", "--rules", str(bad),
                          "/dev/null"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("uringwatch:")]
    assert says in line


def test_findings_over_a_recording_and_in_metrics(tmp_path, tracer, ring):
    """`uringwatch findings RECORDING --json` finds what the engine finds
    live; the metric counts it by rule."""
    from uringwatch.recordings.recorder import Recorder
    from uringwatch.outputs.metrics import Metrics
    rec = Recorder(str(tmp_path / "cap.uwd"), tracer.tracer)
    try:
        page = ctypes.create_string_buffer(8192)
        base = (ctypes.addressof(page) + 4095) & ~4095
        same = (uring.Iovec * 4)(*[uring.Iovec(base, 4096)] * 4)
        assert uring.register(ring, uring.REGISTER_BUFFERS, same, 4) == 0
        ev = tracer.one(opcode=uring.REGISTER_BUFFERS)
    finally:
        rec.close()
    out = subprocess.run([sys.executable, "-m", "uringwatch", "findings", "--json",
                          str(tmp_path / "cap.uwd")], capture_output=True, text=True, check=True)
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [(x["kind"], x["rule"], x["evidence"][0]["ts"]) for x in lines] == \
        [("finding", "buffers-same-page", ev.ts)]
    m = Metrics(tracer.tracer)
    m.observe(engine().feed([ev]))
    from prometheus_client import generate_latest
    assert b'uringwatch_findings_total{rule="buffers-same-page"} 1.0' in generate_latest(m.registry)


def test_a_shadow_read_and_a_connect_through_a_ring(needs_ops, tmp_path):
    """Opened and connected only through the ring: /etc/shadow is a
    finding, the connection one for its process; a plain file is none."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    plain = tmp_path / "plain"
    plain.write_text("x")
    with live() as t:
        r = uring.Ring(8)
        for path in (b"/etc/shadow", str(plain).encode()):
            name = ctypes.create_string_buffer(path)
            os.close(r.do(uring.OP_OPENAT, fd=uring.AT_FDCWD, addr=ctypes.addressof(name)))
        for _ in range(2):
            s = r.do(uring.OP_SOCKET, fd=socket.AF_INET, off=socket.SOCK_STREAM)
            sa = uring.sockaddr_in(listener.getsockname()[1])
            assert r.do(uring.OP_CONNECT, fd=s, addr=ctypes.addressof(sa), off=16) == 0
            os.close(s)
        events = collect(t, lambda ev: len(findings(ev)) >= 2)
        r.close()
    listener.close()
    found = findings(events)
    assert rules_of(found) == ["connect-through-ring", "sensitive-file-through-ring"]
    assert len(found) == 2 and all(f.pid == os.getpid() for f in found)
    (shadow,) = [f for f in found if f.rule == "sensitive-file-through-ring"]
    assert [(v.kind, v.opcode_name) for v in shadow.evidence] == [("action", "OPENAT")]


def test_shipped_rules_are_printed_and_each_is_fired_here():
    """`findings --print-rules` is the shipped file; every rule in it is
    named by an assertion of this file (a checklist: a new rule needs its
    workload)."""
    tomllib = pytest.importorskip("tomllib")      # 3.11+
    out = subprocess.run([sys.executable, "-m", "uringwatch", "findings", "--print-rules"],
                         capture_output=True, text=True, check=True)
    rules = tomllib.loads(out.stdout)
    assert rules["version"] >= 1
    here = open(__file__).read().split("def test_shipped_rules_are_printed")[0]
    missing = [r["id"] for r in rules["rule"] if f'"{r["id"]}"' not in here]
    assert missing == []

