"""A ring's whole life, end to end: its creation, every process that
drives it, and its operations joined to what they use."""

import ctypes
import os
import time

import pytest

import uring
from helpers import needs_root

pytestmark = needs_root

SYS_pidfd_open, SYS_pidfd_getfd = 434, 438


def submit_tracepoint_has_request() -> bool:
    """Asked of tracefs, independently of uringwatch: whether the kernel's
    submit tracepoint is the one that takes the request first (6.0+: it
    prints `op_str`), not the ring (5.x, whose fields may still list a
    request: Debian's 5.10 carries 5.15's io_uring)."""
    from uringwatch.system.host import tracefs
    root = tracefs()                     # mounted if it is not yet
    for name in ("io_uring_submit_req", "io_uring_submit_sqe"):
        fmt = os.path.join(root, "events/io_uring", name, "format")
        if os.path.exists(fmt):
            text = open(fmt).read()
            return "field:void * req;" in text and (name == "io_uring_submit_req"
                                                    or "op_str" in text)
    return False


@pytest.fixture
def needs_ops():
    if not submit_tracepoint_has_request():
        pytest.skip("this kernel's submit tracepoint has no request")


def test_operations_are_traced_where_the_kernel_gives_the_request(ring_tracer):
    """Where the kernel can't give operations, the tracer says so and the
    rest of a ring's life is still traced."""
    attached = ring_tracer.features["rings"]
    has_ops = any(a.startswith("tp_btf/io_uring_submit_") for a in attached)
    assert has_ops == submit_tracepoint_has_request()
    assert "tracepoint/io_uring/io_uring_register" in attached
    assert "tracepoint/io_uring/io_uring_create" in attached
    # where the kernel has kprobes, rings are seen freed (a kprobe is all
    # this needs: every guest kernel of ci/kernels.py has them)
    from uringwatch.system.host import tracefs
    if os.path.exists(os.path.join(tracefs(), "kprobe_events")):
        assert "kprobe/io_ring_exit_work" in attached


@pytest.fixture
def ring_tracer():
    """A tracer of this process and the ones a test adds."""
    from uringwatch import Filters, Tracer
    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True,
                count_interval=0.2) as t:
        yield t


def collect(tracer, until, timeout=30.0):
    """Events until until(events) holds; then detach and take the rest."""
    events, deadline = [], time.monotonic() + timeout
    while not until(events) and time.monotonic() < deadline:
        events += tracer.poll(0.05)
    tracer.detach()
    while batch := tracer.poll(0):
        events += batch
    return events


def kinds(events, kind):
    return [e for e in events if type(e).__name__ == kind]


def test_ring_creation_and_its_register_calls_share_one_id(ring_tracer):
    r = uring.Ring(16)
    f = os.open("/etc/hostname", os.O_RDONLY)
    assert uring.register(r.fd, uring.REGISTER_FILES, uring.ints(f), 1) == 0
    events = collect(ring_tracer, lambda ev: len(kinds(ev, "Event")) >= 1)
    (ring,) = [e for e in kinds(events, "Ring") if e.fd == r.fd]
    (call,) = [e for e in kinds(events, "Event") if e.fd == r.fd]
    assert ring.ring_id and call.ring_id == ring.ring_id
    assert ring.pid == os.getpid() and ring.entries == 16 and ring.sq_entries == 16
    assert "SINGLE_MMAP" in ring.feature_names and ring.flag_names == []
    assert len(ring.ring_id) == 16 and int(ring.ring_id, 16) != 0
    r.close()
    os.close(f)


def test_refused_setup_is_reported_without_a_ring(ring_tracer):
    bad = (ctypes.c_uint32 * 30)()
    bad[2] = 1 << 31                      # an unknown setup flag
    ret = uring.syscall(uring.SYS_io_uring_setup, ctypes.c_uint32(4), bad)
    assert ret < 0
    events = collect(ring_tracer, lambda ev: any(e.ret == ret for e in kinds(ev, "Ring")))
    (ring,) = [e for e in kinds(events, "Ring") if e.ret == ret]
    assert ring.ring_id is None and ring.fd is None and ring.error == "EINVAL"


def _child(fn) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    return pid


def _wait(pid):
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_another_process_drives_the_ring_with_its_registrations(ring_tracer, needs_ops):
    """Created here; a forked child and a process that took it with
    pidfd_getfd use it: the same ring id everywhere, each operation joined
    to the file slot and buffer registered here."""
    r = uring.Ring(16)
    path = "/etc/hostname"
    f = os.open(path, os.O_RDONLY)
    buf = ctypes.create_string_buffer(4096)
    assert uring.register(r.fd, uring.REGISTER_FILES, uring.ints(f), 1) == 0
    iov = uring.Iovec(ctypes.addressof(buf), 4096)
    assert uring.register(r.fd, uring.REGISTER_BUFFERS, iov, 1) == 0
    os.close(f)                          # the ring keeps its own reference

    def read_fixed(ring_fd):
        ring = uring.Ring.attach(ring_fd, r)
        ring.put(0, uring.OP_READ_FIXED, fd=0, addr=ctypes.addressof(buf), length=64,
                 flags=uring.SQE_FIXED_FILE, buf_index=0)
        assert ring.submit(1) > 0

    go_r, go_w = os.pipe()

    def forked():
        os.read(go_r, 1)
        read_fixed(r.fd)

    child = _child(forked)
    ring_tracer.add_pid(child)
    os.write(go_w, b"x")
    _wait(child)

    def taker():
        os.read(go_r, 1)
        pidfd = uring.syscall(SYS_pidfd_open, ctypes.c_int(os.getppid()), ctypes.c_uint(0))
        assert pidfd >= 0
        fd = uring.syscall(SYS_pidfd_getfd, ctypes.c_int(pidfd), ctypes.c_int(r.fd),
                           ctypes.c_uint(0))
        assert fd >= 0, os.strerror(-fd)
        read_fixed(fd)

    other = _child(taker)
    ring_tracer.add_pid(other)
    os.write(go_w, b"x")
    _wait(other)
    events = collect(ring_tracer, lambda ev: {e.pid for e in kinds(ev, "Op")} >= {child, other})
    (made,) = [e for e in kinds(events, "Ring") if e.fd == r.fd]
    uses = [e for e in kinds(events, "Op") if e.reason == "first_use"]
    by_pid = {e.pid: e for e in uses}
    for pid in (child, other):
        op = by_pid[pid]
        assert op.ring_id == made.ring_id
        assert op.creator_pid == os.getpid() != op.pid
        assert op.opcode_name == "READ_FIXED" and op.fixed_file == 0 and op.buffer_index == 0
        assert op.uses.file["fd"] == uring_fd_of(events, made.ring_id)
        assert op.uses.buffer == {"index": 0, "base": ctypes.addressof(buf), "len": 4096}
    r.close()


def uring_fd_of(events, ring_id):
    (files,) = [e for e in kinds(events, "Event")
                if e.ring_id == ring_id and e.opcode_name == "REGISTER_FILES"]
    return files.payload.fds[0]


def test_personality_used_after_dropping_privileges(ring_tracer, needs_ops):
    """Registered as root; a child drops to nobody and submits under it:
    reported, with both identities."""
    r = uring.Ring(8)
    pers = uring.register(r.fd, uring.REGISTER_PERSONALITY, None, 0)
    assert pers > 0
    go_r, go_w = os.pipe()

    def dropped():
        os.read(go_r, 1)
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        ring = uring.Ring.attach(r.fd, r)
        ring.put(0, uring.OP_NOP, personality=pers)
        assert ring.submit(1) == 0

    child = _child(dropped)
    ring_tracer.add_pid(child)
    os.write(go_w, b"x")
    _wait(child)
    events = collect(ring_tracer, lambda ev: any(e.pid == child for e in kinds(ev, "Op")))
    (reg,) = [e for e in kinds(events, "Event") if e.opcode_name == "REGISTER_PERSONALITY"]
    (op,) = [e for e in kinds(events, "Op") if e.pid == child and e.reason == "first_use"]
    assert op.creds_differ and op.uses.personality == pers
    assert op.personality_cred.id == reg.cred_id and op.personality_cred.euid == 0
    assert op.task_cred.euid == 65534 and op.task_cred.uid == 65534
    assert op.personality_cred.cap_effective != 0 and op.task_cred.cap_effective == 0
    r.close()


def test_sqpoll_operations_are_attributed_to_the_creator(ring_tracer, needs_ops):
    r = uring.Ring(8, flags=uring.SETUP_SQPOLL, sq_thread_idle=50)
    for i in range(4):
        r.put(i, uring.OP_NOP)
    r.submit(4)
    events = collect(ring_tracer, lambda ev: sum(e.count for e in kinds(ev, "Op")
                                                 if e.reason == "count") >= 4)
    (made,) = [e for e in kinds(events, "Ring") if e.fd == r.fd]
    assert "SQPOLL" in made.flag_names and made.sq_thread_idle == 50
    ops = [e for e in kinds(events, "Op") if e.ring_id == made.ring_id]
    assert ops and all(e.sq_thread and e.pid == os.getpid() for e in ops)
    # one key: a recycled request's stale creds pointer is no personality
    # (6.12 reported one before REQ_F_CREDS was checked)
    assert [e.creator_pid for e in ops if e.reason == "first_use"] == [os.getpid()]
    assert sum(e.count for e in ops if e.reason == "count") == 4
    r.close()


def test_a_million_nops_give_few_records_and_exact_counts(ring_tracer, needs_ops):
    r = uring.Ring(4096)
    for i in range(4096):
        r.put(i, uring.OP_NOP)
    total = 0
    while total < 1_000_000:
        n = min(4096, 1_000_000 - total)
        r.submit(n)
        total += n
    events = collect(ring_tracer, lambda ev: False, timeout=0.5)
    (made,) = [e for e in kinds(events, "Ring") if e.fd == r.fd]
    ops = [e for e in kinds(events, "Op") if e.ring_id == made.ring_id]
    assert sum(e.count for e in ops if e.reason == "count") == 1_000_000
    assert len([e for e in ops if e.reason == "first_use"]) == 1
    assert len(ops) < 100
    assert ring_tracer.stats()["ops_untracked"] == 0
    r.close()


def test_ops_all_reports_every_operation(needs_ops):
    from uringwatch import Filters, Tracer
    with Tracer(Filters(pids=frozenset([os.getpid()])), ops_all=True) as t:
        r = uring.Ring(64)
        for i in range(50):
            r.put(i, uring.OP_NOP, user_data=i)
        r.submit(50)
        events = collect(t, lambda ev: len(kinds(ev, "Op")) >= 50)
    each = [e for e in kinds(events, "Op") if e.reason == "each"]
    assert len(each) == 50
    r.close()


def test_every_ring_gets_an_id_of_its_own():
    """The kernel hands a freed ring's address to the next ring at once:
    2,000 rings made and closed one after the other still have 2,000 ids,
    and a ring made before tracing began has one too."""
    from uringwatch import Filters, Tracer
    before, f = uring.setup(4), os.open("/etc/hostname", os.O_RDONLY)
    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True) as t:
        for _ in range(2000):
            os.close(uring.setup(1))
        assert uring.register(before, uring.REGISTER_FILES, uring.ints(f), 1) == 0
        events = collect(t, lambda ev: len(kinds(ev, "Ring")) >= 2000
                         and kinds(ev, "Event"))
    ids = [e.ring_id for e in kinds(events, "Ring")]
    (old,) = [e.ring_id for e in kinds(events, "Event") if e.fd == before]
    assert len(ids) == 2000 and None not in ids
    assert len(set(ids) | {old}) == 2001 and old
    os.close(before)
    os.close(f)


def _drop_to_nobody():
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)


def _sqpoll_child(before_ring=lambda: None, before_nops=lambda: None):
    """A child that, when told to, calls before_ring(), makes an SQPOLL
    ring, calls before_nops(), then submits 4 NOPs through its SQ thread."""
    go_r, go_w = os.pipe()

    def run():
        os.read(go_r, 1)
        before_ring()
        ring = uring.Ring(8, flags=uring.SETUP_SQPOLL, sq_thread_idle=50)
        before_nops()
        for i in range(4):
            ring.put(i, uring.OP_NOP)
        ring.submit(4)
        ring.close()

    return _child(run), go_w


def test_sqpoll_ops_after_setuid_run_with_the_creators_creds(ring_tracer, needs_ops):
    """An SQPOLL ring made as root keeps root's creds in its SQ thread after
    its process drops to nobody: flagged, with both."""
    child, go = _sqpoll_child(before_nops=_drop_to_nobody)
    ring_tracer.add_pid(child)
    os.write(go, b"x")
    _wait(child)
    events = collect(ring_tracer, lambda ev: any(e.pid == child for e in kinds(ev, "Op")))
    (op,) = [e for e in kinds(events, "Op") if e.pid == child and e.reason == "first_use"]
    assert op.sq_thread and op.creds_differ and op.personality_cred is None
    assert (op.uid, op.euid) == (65534, 65534) and op.creator_pid == child
    assert (op.task_cred.uid, op.task_cred.euid, op.task_cred.cap_effective) == (65534, 65534, 0)
    assert (op.sq_thread_cred.uid, op.sq_thread_cred.euid) == (0, 0)
    assert op.sq_thread_cred.cap_effective != 0


def _ops_kept(filters, child, go, submitter=None):
    """The child's ring's operations a tracer with these filters keeps,
    once the count says all 4 were seen."""
    from uringwatch import Tracer
    with Tracer(filters, rings=True, count_interval=0.2) as t:
        os.write(go, b"x")
        _wait(child)
        events = collect(t, lambda ev: sum(e.count for e in kinds(ev, "Op")
                                           if e.reason == "count") >= 4, timeout=5)
    return [e for e in kinds(events, "Op") if e.pid == (submitter or child)]


def test_comm_filter_keeps_the_sqpoll_ops_of_its_process(needs_ops):
    """-c NAME: the SQ thread is named iou-sqp-PID; its process is NAME."""
    from uringwatch import Filters
    name = b"uw-sqp-comm"
    child, go = _sqpoll_child(
        before_ring=lambda: ctypes.CDLL(None).prctl(15, name, 0, 0, 0))   # PR_SET_NAME
    ops = _ops_kept(Filters(comm=name.decode()), child, go)
    assert ops and all(e.sq_thread for e in ops)
    assert sum(e.count for e in ops if e.reason == "count") == 4


def test_uid_filter_keeps_the_sqpoll_ops_after_setuid(needs_ops):
    """-u 65534: the SQ thread still has root's ids; its process has not."""
    from uringwatch import Filters
    child, go = _sqpoll_child(before_nops=_drop_to_nobody)
    ops = _ops_kept(Filters(uid=65534), child, go)
    assert ops and all(e.sq_thread and e.uid == 65534 for e in ops)
    assert sum(e.count for e in ops if e.reason == "count") == 4


def test_pid_filter_keeps_ops_others_submit_on_its_ring(needs_ops):
    """-p PARENT: a forked child, not itself traced, submits on the ring
    the parent made."""
    from uringwatch import Filters, Tracer
    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True, count_interval=0.2) as t:
        r = uring.Ring(8)

        def nops():
            for i in range(4):
                r.put(i, uring.OP_NOP)
            assert r.submit(4) == 0

        _wait(_child(nops))
        events = collect(t, lambda ev: sum(e.count for e in kinds(ev, "Op")
                                           if e.reason == "count") >= 4, timeout=5)
    ops = [e for e in kinds(events, "Op") if e.pid != os.getpid()]
    assert [e.creator_pid for e in ops if e.reason == "first_use"] == [os.getpid()]
    assert sum(e.count for e in ops if e.reason == "count") == 4
    r.close()


@pytest.mark.parametrize("keys", [512, 256])
def test_a_full_summary_still_reports_creds_that_differ(needs_ops, keys):
    """600 rings with a NOP each, more than the summary has keys (none read
    out: the interval is an hour; 17,000 rings fill the default 16,384 the
    same way, in 9 s here). A personality used after dropping privileges is
    still reported: a first use counted by process, ring and opcode when
    the summary is full (512 keys, and as many to spill into), reported
    alone when the spill is full too (256), and only counted anonymously."""
    from uringwatch import Filters, Tracer
    events, rings = [], 600
    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True, count_interval=3600,
                max_uses=keys) as t:
        for n in range(rings):
            ring = uring.Ring(1)
            ring.put(0, uring.OP_NOP)
            ring.submit(1)
            ring.close()
            if n % 100 == 0:
                events += t.poll(0)
        r = uring.Ring(8)
        pers = uring.register(r.fd, uring.REGISTER_PERSONALITY, None, 0)

        def dropped():
            _drop_to_nobody()
            ring = uring.Ring.attach(r.fd, r)
            ring.put(0, uring.OP_NOP, personality=pers)
            assert ring.submit(1) == 0

        child = _child(dropped)     # kept as the ring's creator is traced
        _wait(child)
        events += collect(t, lambda ev: any(e.pid == child for e in kinds(ev, "Op")))
        stats = t.stats()
    ops = kinds(events, "Op")
    (op,) = [e for e in ops if e.pid == child and e.reason != "count"]
    assert op.creds_differ and op.personality_cred.euid == 0 and op.task_cred.euid == 65534
    counted = min(rings + 1, 2 * keys)
    assert op.reason == ("first_use" if counted == rings + 1 else "each")
    assert sum(e.count for e in ops if e.reason == "count") == counted
    assert len([e for e in ops if e.reason == "first_use"]) == counted
    assert stats["ops_untracked"] == rings + 1 - counted and stats["ring_full"] == 0
    r.close()


def test_the_ledger_keeps_a_bounded_number_of_rings(monkeypatch):
    """The least recently used ring's registrations go first, counted."""
    from uringwatch import Filters, Tracer
    from uringwatch.record.rings import Ledger
    monkeypatch.setattr(Ledger, "MAX_RINGS", 2)
    f = os.open("/etc/hostname", os.O_RDONLY)
    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True) as t:
        rings = [uring.setup(1) for _ in range(3)]
        for r in rings:
            assert uring.register(r, uring.REGISTER_FILES, uring.ints(f), 1) == 0
        collect(t, lambda ev: len(kinds(ev, "Event")) >= 3)
        assert t.stats()["ledger_evicted"] == 1
    for fd in (*rings, f):
        os.close(fd)


def _rings_made_by(tracer, pid: int) -> int:
    """Rings of `pid` the kernel side keeps an id for (bpf/rings.h's
    ring_states: id, creator's cgroup, tgid, uid, comm)."""
    from uringwatch.system import libbpf
    lib, fd = libbpf.lib(), tracer._obj.map_fd("ring_states")
    key, nxt = ctypes.c_uint64(), ctypes.c_uint64()
    val = ctypes.create_string_buffer(48)       # struct ring_state
    n, prev = 0, None
    while lib.bpf_map_get_next_key(fd, prev, ctypes.byref(nxt)) == 0:
        key.value = nxt.value
        prev = ctypes.byref(key)
        if lib.bpf_map_lookup_elem(fd, prev, val) == 0:
            n += int.from_bytes(val.raw[16:20], "little") == pid
    return n


def test_a_freed_ring_is_forgotten(ring_tracer):
    """Where the kernel shows rings freed, their ids are not kept."""
    if not any(a.endswith("/io_ring_exit_work") for a in ring_tracer.features["rings"]):
        pytest.skip("this kernel does not show rings freed to a kprobe or fentry")
    rings = [uring.setup(1) for _ in range(50)]
    assert _rings_made_by(ring_tracer, os.getpid()) == 50
    for fd in rings:
        os.close(fd)
    deadline = time.monotonic() + 30
    while _rings_made_by(ring_tracer, os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _rings_made_by(ring_tracer, os.getpid()) == 0


def _uses_of(tracer, pid: int) -> int:
    """Keys of `pid` in the operations' summary (uw_op_key: uw_use_key.pid at 28)."""
    from uringwatch.system import libbpf
    from uringwatch.record.layout import OP_KEY
    lib, fd = libbpf.lib(), tracer._obj.map_fd("uses")
    prev, n = None, 0
    while True:
        nxt = ctypes.create_string_buffer(OP_KEY.size)
        if lib.bpf_map_get_next_key(fd, prev, nxt) != 0:
            return n
        n += int.from_bytes(nxt.raw[28:32], "little") == pid
        prev = nxt


def test_the_summary_lets_go_of_what_is_no_longer_used(ring_tracer, needs_ops):
    """Keys unused for a whole interval are counted out and taken out of
    the map: 50 closed rings leave nothing behind, and no count is lost."""
    for _ in range(50):
        r = uring.Ring(1)
        r.put(0, uring.OP_NOP)
        r.submit(1)
        r.close()
    events, deadline = [], time.monotonic() + 30
    while _uses_of(ring_tracer, os.getpid()) and time.monotonic() < deadline:
        events += ring_tracer.poll(0.1)
    assert _uses_of(ring_tracer, os.getpid()) == 0
    events = collect(ring_tracer, lambda ev: True) + events
    ops = kinds(events, "Op")
    assert sum(e.count for e in ops if e.reason == "count") == 50
    assert len([e for e in ops if e.reason == "first_use"]) == 50


def test_replay_keeps_an_op_for_its_rings_creator():
    """-p in replay: the submitter or the ring's creator, as live; with
    other filters too, the submitter alone (a record lacks the creator's)."""
    import msgspec
    from uringwatch import Filters
    from uringwatch.record.events import Op
    op = Op(0, 0, 1, "first_use", "ab", 0, "NOP", 20, 20, "child", 0, 0, 1, 10, False,
            None, None, None, None, None, False)
    assert Filters(pids=frozenset([10])).matches(op)
    assert Filters(pids=frozenset([20])).matches(op)
    assert not Filters(pids=frozenset([30])).matches(op)
    assert not Filters(pids=frozenset([10]), comm="parent").matches(op)
    assert not Filters(pids=frozenset([10])).matches(
        msgspec.structs.replace(op, creator_pid=None))


SETUP_R_DISABLED, RESTRICTION_SQE_OP = 1 << 6, 1


def test_ops_the_rings_restrictions_refuse_are_reported_denied(ring_tracer, needs_ops):
    """A ring restricted to NOP (REGISTER_RESTRICTIONS, 5.10+; 7.0's BPF
    filters refuse the same way, tests/test_policy_kernel.py): two READs are
    refused at submission with -EACCES and reported as denied ops, counted
    apart from the NOP that ran; an SQE refused for another reason (an
    unknown opcode, -EINVAL) is no denied op."""
    from uringwatch.outputs.output import row
    if "tp_btf/io_uring_req_failed" not in ring_tracer.features["rings"]:
        pytest.skip("this kernel's io_uring_req_failed has no request (6.0+)")
    r = uring.Ring(8, flags=SETUP_R_DISABLED)
    only_nop = (uring.Restriction * 1)(uring.Restriction(RESTRICTION_SQE_OP, uring.OP_NOP))
    assert uring.register(r.fd, uring.REGISTER_RESTRICTIONS, only_nop, 1) == 0
    assert uring.register(r.fd, uring.REGISTER_ENABLE_RINGS, None, 0) == 0
    buf = ctypes.create_string_buffer(8)
    r.put(0, uring.OP_NOP)
    assert r.submit(1) == 0
    for _ in range(2):
        r.put(0, uring.OP_READ, fd=-1, addr=ctypes.addressof(buf), length=8)
        assert r.submit(1) == -13           # EACCES
    free = uring.Ring(8)
    free.put(0, 255)                        # no such opcode
    assert free.submit(1) == -22            # EINVAL

    def ops_of(events):
        return [e for e in kinds(events, "Op") if e.pid == os.getpid()]
    events = collect(ring_tracer, lambda ev: sum(o.count for o in ops_of(ev)
                                                 if o.denied and o.reason == "count") >= 2)
    ops = ops_of(events)
    denied = [o for o in ops if o.denied]
    assert {o.opcode_name for o in denied} == {"READ"}
    assert sum(o.count for o in denied if o.reason == "count") == 2
    assert [o.reason for o in denied].count("first_use") == 1
    assert len({o.ring_id for o in denied}) == 1
    nops = [o for o in ops if o.opcode_name == "NOP" and o.ring_id == denied[0].ring_id]
    assert nops and not any(o.denied for o in nops)
    assert not [o for o in ops if o.opcode == 255]
    assert " DENIED " in row(denied[0])
    r.close()
    free.close()
