"""The file behind an operation's fd, read in the kernel at submission
(a plain fd's in the submitter's fd table, a fixed file's in the ring's
table at its slot): each (ring, op, file) is a first use of its own
carrying the file's identity (path, dev/ino, socket addresses), counted
exactly, also when the fd's number is closed and reused, raced by dup2,
the slot updated, or names no file."""

import ctypes
import errno
import os
import socket
import threading

import pytest

import uring
from helpers import needs_root
from test_rings import collect, kinds, needs_ops, ring_tracer  # noqa: F401 (fixtures)

pytestmark = needs_root


def ops_of(events, ring):
    return [e for e in kinds(events, "Op") if e.ring_id == ring]


def ring_of(events, r) -> str:
    (made,) = [e for e in kinds(events, "Ring") if e.fd == r.fd]
    return made.ring_id


def counted(ops) -> dict:
    """Operations counted per (opcode, file id)."""
    out: dict = {}
    for e in ops:
        if e.reason == "count":
            out[e.opcode_name, e.file_id] = out.get((e.opcode_name, e.file_id), 0) + e.count
    return out


def firsts(ops) -> dict:
    """Each file id's first use: its target."""
    return {e.file_id: e for e in ops if e.reason == "first_use"}


def read(r, fd: int, buf, n: int = 1) -> None:
    for i in range(n):
        r.put(i, uring.OP_READ, fd=fd, addr=ctypes.addressof(buf), length=16, off=0)
    r.submit(n)


def test_reads_and_sends_carry_their_file_and_socket(ring_tracer, needs_ops, tmp_path):
    f = tmp_path / "hostname"
    f.write_bytes(b"uringwatch-host\n")
    fd = os.open(f, os.O_RDONLY)
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    peer, _ = srv.accept()
    r, buf = uring.Ring(16), ctypes.create_string_buffer(64)
    read(r, fd, buf, 3)
    for i in range(2):
        r.put(i, uring.OP_SEND, fd=cli.fileno(), addr=ctypes.addressof(buf), length=4)
    assert r.submit(2) == 4
    events = collect(ring_tracer, lambda ev: sum(counted(ops_of(ev, ring_of(ev, r))).values()) >= 5
                     if kinds(ev, "Ring") else False)
    ops = ops_of(events, ring_of(events, r))
    first = firsts(ops)
    reads = [e for e in first.values() if e.opcode_name == "READ"]
    sends = [e for e in first.values() if e.opcode_name == "SEND"]
    assert len(reads) == len(sends) == 1
    st = os.stat(f)
    t = reads[0].target
    # dev is the superblock's the file's inode is on: under an overlay (the
    # guests' /tmp) not the st_dev stat gives
    assert dict(path=t.path, ino=t.ino, kind=t.kind, role=t.role, fd=t.fd) == \
        dict(path=str(f), ino=st.st_ino, kind="file", role="fd", fd=fd)
    s = sends[0].target.socket
    assert (s.family, s.type, s.protocol) == ("inet", "stream", 6)
    assert s.peer == f"127.0.0.1:{port}" and s.local == f"127.0.0.1:{cli.getsockname()[1]}"
    assert counted(ops) == {("READ", reads[0].file_id): 3, ("SEND", sends[0].file_id): 2}
    # every count of a key is joined to its first use's identity
    assert all(e.target == first[e.file_id].target for e in ops if e.file_id)
    from uringwatch.outputs.output import _op_row
    assert str(f) in _op_row(reads[0]) and f"tcp 127.0.0.1:{port}" in _op_row(sends[0])
    for x in (cli, peer, srv):
        x.close()
    os.close(fd)
    r.close()


def test_a_reused_fd_number_is_another_target(ring_tracer, needs_ops, tmp_path):
    """Closed and reopened on another file at the same number (the kernel
    may give the new file the freed one's struct file), then an fd that
    names no file: two keys with their paths, counts exact, and an EBADF
    target with no path."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a" * 16)
    b.write_bytes(b"b" * 16)
    r, buf = uring.Ring(16), ctypes.create_string_buffer(64)
    fd = os.open(a, os.O_RDONLY)
    read(r, fd, buf, 1)
    os.close(fd)
    assert os.open(b, os.O_RDONLY) == fd
    read(r, fd, buf, 2)
    os.close(fd)
    assert r.do(uring.OP_READ, fd=fd, addr=ctypes.addressof(buf), length=16) == -9  # EBADF
    events = collect(ring_tracer, lambda ev: kinds(ev, "Ring") and
                     sum(counted(ops_of(ev, ring_of(ev, r))).values()) >= 4)
    ops = ops_of(events, ring_of(events, r))
    first = firsts(ops)
    paths = {e.target.path: k for k, e in first.items() if k}
    assert set(paths) == {str(a), str(b)}
    c = counted(ops)
    assert (c["READ", paths[str(a)]], c["READ", paths[str(b)]], c["READ", None]) == (1, 2, 1)
    (bad,) = [e for e in ops if e.reason == "first_use" and e.file_id is None]
    assert bad.target.path is None and bad.target.error.startswith("EBADF")
    r.close()


def test_a_racing_dup2_gives_one_of_the_two_files(ring_tracer, needs_ops, tmp_path):
    """dup2 swaps the fd between two files while READs on it are submitted:
    each key's identity is one of the two files, never a mix, and every
    operation is counted."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a" * 16)
    b.write_bytes(b"b" * 16)
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    fd = os.dup(fa)
    stop = threading.Event()

    def swap():
        while not stop.is_set():
            os.dup2(fb, fd)
            os.dup2(fa, fd)
    r, buf = uring.Ring(64), ctypes.create_string_buffer(64)
    t = threading.Thread(target=swap)
    t.start()
    try:
        for _ in range(40):
            read(r, fd, buf, 50)
    finally:
        stop.set()
        t.join()
    events = collect(ring_tracer, lambda ev: kinds(ev, "Ring") and
                     sum(counted(ops_of(ev, ring_of(ev, r))).values()) >= 2000)
    ops = ops_of(events, ring_of(events, r))
    assert sum(counted(ops).values()) == 2000
    ids = {os.stat(p).st_ino: str(p) for p in (a, b)}
    for e in ops:
        assert e.file_id is not None and e.target is not None
        assert ids.get(e.target.ino) == e.target.path
    for x in (fa, fb, fd):
        os.close(x)
    r.close()


def test_sqpoll_reads_name_the_creators_file(ring_tracer, needs_ops, tmp_path):
    """An SQPOLL thread looks the fd up in the table it shares with its
    creator."""
    f = tmp_path / "polled"
    f.write_bytes(b"p" * 16)
    fd = os.open(f, os.O_RDONLY)
    r, buf = uring.Ring(8, flags=uring.SETUP_SQPOLL, sq_thread_idle=50), \
        ctypes.create_string_buffer(64)
    read(r, fd, buf, 2)
    events = collect(ring_tracer, lambda ev: kinds(ev, "Ring") and
                     sum(counted(ops_of(ev, ring_of(ev, r))).values()) >= 2)
    ops = ops_of(events, ring_of(events, r))
    (first,) = firsts(ops).values()
    assert first.sq_thread and first.target.path == str(f)
    assert counted(ops) == {("READ", first.file_id): 2}
    os.close(fd)
    r.close()


def update_slot(r, slot: int, fd: int) -> None:
    """FILES_UPDATE of one slot of r's table (fd -1 empties it)."""
    fds = uring.ints(fd)
    upd = uring.RsrcUpdate(offset=slot, data=uring.addr(fds))
    assert uring.register(r.fd, uring.REGISTER_FILES_UPDATE, upd, 1) == 1


def read_slot(r, slot: int, buf, n: int) -> None:
    for i in range(n):
        r.put(i, uring.OP_READ, fd=slot, addr=ctypes.addressof(buf), length=16,
              flags=uring.SQE_FIXED_FILE)
    r.submit(n)


def test_a_fixed_slot_is_keyed_by_the_file_in_it_at_submission(ring_tracer, needs_ops,
                                                                  tmp_path):
    """Adversarial: slot 0 registered with file A, read, then FILES_UPDATEd
    to file B and read again, then emptied and read (EBADF); slot 1,
    registered empty, filled by an OPENAT into it (no registration names
    what is there) and read. Each file in a slot is a first use of its own
    with the path the kernel's table held, counts exact."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for f in (a, b, c):
        f.write_bytes(f.name.encode() * 16)
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    r, buf, name = uring.Ring(16), ctypes.create_string_buffer(64), \
        ctypes.create_string_buffer(str(c).encode())
    assert uring.register(r.fd, uring.REGISTER_FILES, uring.ints(fa, -1), 2) == 0
    read_slot(r, 0, buf, 2)
    update_slot(r, 0, fb)
    read_slot(r, 0, buf, 3)
    update_slot(r, 0, -1)
    assert r.do(uring.OP_READ, fd=0, addr=ctypes.addressof(buf), length=16,
                flags=uring.SQE_FIXED_FILE) == -9                   # EBADF
    assert r.do(uring.OP_OPENAT, fd=uring.AT_FDCWD, addr=ctypes.addressof(name),
                file_index=2) == 0                                  # into slot 1
    read_slot(r, 1, buf, 4)
    events = collect(ring_tracer, lambda ev: kinds(ev, "Ring") and
                     sum(counted(ops_of(ev, ring_of(ev, r))).values()) >= 10)
    ops = [e for e in ops_of(events, ring_of(events, r)) if e.opcode_name == "READ"]
    first = firsts(ops)
    paths = {e.target.path: k for k, e in first.items() if k}
    assert set(paths) == {str(a), str(b), str(c)}
    c_ = counted(ops)
    assert [c_["READ", paths[str(p)]] for p in (a, b, c)] + [c_["READ", None]] == [2, 3, 4, 1]
    for p, slot in ((a, 0), (b, 0), (c, 1)):
        e = first[paths[str(p)]]
        assert (e.fixed_file, e.target.role, e.target.fd, e.target.ino) == \
            (slot, "slot", slot, os.stat(p).st_ino)
    (empty,) = [e for e in ops if e.reason == "first_use" and e.file_id is None]
    assert (empty.fixed_file, empty.target.role, empty.target.path) == (0, "slot", None)
    assert empty.target.error.startswith("EBADF")
    # every count of a key is joined to its first use's identity
    assert all(e.target == first[e.file_id].target for e in ops if e.file_id)
    from uringwatch.outputs.output import _op_row
    assert f"file[0]={b}" in _op_row(first[paths[str(b)]])
    assert f"file[1]={c}" in _op_row(first[paths[str(c)]])
    for x in (fa, fb):
        os.close(x)
    r.close()


def test_a_splice_names_the_file_it_reads_from(ring_tracer, needs_ops, tmp_path):
    """SPLICE from file A through its plain fd into a pipe, then from file B
    through fixed slot 0 (SPLICE_F_FD_IN_FIXED) into the same pipe: the
    output (the pipe) is the same file, the inputs are two keys, each first
    use with both identities, counts exact."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a" * 64)
    b.write_bytes(b"b" * 64)
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    rd, wr = os.pipe()
    r = uring.Ring(16)
    assert uring.register(r.fd, uring.REGISTER_FILES, uring.ints(fb), 1) == 0

    def splice(fd_in: int, n: int, flags: int = 0) -> None:
        for i in range(n):
            r.put(i, uring.OP_SPLICE, fd=wr, off=2**64 - 1, addr=0, length=8,
                  op_flags=flags, file_index=fd_in)
        assert r.submit(n) == 8
        os.read(rd, 8 * n)
    splice(fa, 2)
    splice(0, 3, uring.SPLICE_F_FD_IN_FIXED)
    events = collect(ring_tracer, lambda ev: kinds(ev, "Ring") and sum(
        e.count for e in ops_of(ev, ring_of(ev, r)) if e.reason == "count") >= 5)
    ops = [e for e in ops_of(events, ring_of(events, r)) if e.opcode_name == "SPLICE"]
    first = {e.target_in.path: e for e in ops if e.reason == "first_use"}
    assert set(first) == {str(a), str(b)}
    assert (first[str(a)].target_in.role, first[str(a)].target_in.fd) == ("fd", fa)
    assert (first[str(b)].target_in.role, first[str(b)].target_in.fd) == ("slot", 0)
    assert first[str(a)].file_id == first[str(b)].file_id          # the pipe
    assert first[str(a)].target.kind == "pipe"
    by_in: dict = {}
    for e in ops:
        if e.reason == "count":
            by_in[e.file_in_id] = by_in.get(e.file_in_id, 0) + e.count
            assert e.target_in == first[e.target_in.path].target_in     # joined
    assert by_in == {first[str(a)].file_in_id: 2, first[str(b)].file_in_id: 3}
    from uringwatch.outputs.output import _op_row
    assert f"from={b}" in _op_row(first[str(b)])
    for x in (fa, fb, rd, wr):
        os.close(x)
    r.close()


def test_a_msg_ring_names_the_ring_it_sends_to(ring_tracer, needs_ops):
    """Ring A sends MSG_RING to ring B through B's fd: it names B by the id
    of B's ring event. Adversarial: to a pipe, to an eventfd (an anon inode
    file, as a ring's is) and to the pipe through A's fixed slot 0 (a slot
    can't hold a ring: the kernel refuses to register one) the kernel
    refuses it (EBADFD) and none names a ring. Counts exact."""
    a, b = uring.Ring(16), uring.Ring(16)
    rd, wr = os.pipe()
    efd = os.eventfd(0)
    assert uring.register(a.fd, uring.REGISTER_FILES, uring.ints(wr), 1) == 0
    for _ in range(3):
        assert a.do(uring.OP_MSG_RING, fd=b.fd, length=1) == 0
    for fd in (wr, efd):
        assert a.do(uring.OP_MSG_RING, fd=fd, length=3) == -errno.EBADFD
    for _ in range(2):
        assert a.do(uring.OP_MSG_RING, fd=0, flags=uring.SQE_FIXED_FILE,
                    length=2) == -errno.EBADFD
    events = collect(ring_tracer, lambda ev: len(kinds(ev, "Ring")) >= 2 and sum(
        e.count for e in ops_of(ev, ring_of(ev, a)) if e.reason == "count") >= 7)
    ring_b = ring_of(events, b)

    def key(e) -> str:
        return "slot" if e.fixed_file is not None else e.target.kind
    ops = [e for e in ops_of(events, ring_of(events, a)) if e.opcode_name == "MSG_RING"]
    first = {key(e): e for e in ops if e.reason == "first_use"}
    assert set(first) == {"io_uring", "pipe", "eventfd", "slot"}
    assert (first["io_uring"].target_ring, first["io_uring"].target_ring_error) == \
        (ring_b, None)
    for k in ("pipe", "eventfd", "slot"):
        assert (first[k].target_ring, first[k].target_ring_error) == \
            (None, "EBADFD: the file is not a ring's")
    by_key: dict = {}
    for e in ops:
        if e.reason == "count":         # each key's count names its ring, or none
            assert (e.target_ring, e.target_ring_error) == \
                (first[key(e)].target_ring, first[key(e)].target_ring_error)
            by_key[key(e)] = by_key.get(key(e), 0) + e.count
    assert by_key == {"io_uring": 3, "pipe": 1, "eventfd": 1, "slot": 2}
    from uringwatch.outputs.output import _op_row
    assert _op_row(first["io_uring"]).endswith(f"-> ring={ring_b}")
    assert _op_row(first["slot"]).endswith("-> not a ring")
    for x in (rd, wr, efd):
        os.close(x)
    a.close()
    b.close()


def test_an_op_recorded_before_splice_inputs_decodes_as_it_did():
    """A 408-byte op record (a key with a target, before SPLICE's input
    was appended) is read with no input."""
    from test_decode import uw_file
    from uringwatch.record import layout
    from uringwatch.record.decode import decode
    raw = _op_record(layout.OPT_FD, uw_file(fd=5, role=layout.ROLE_FD))
    ev = decode(raw + b"\xff" * 64, 0, layout.OP_TARGET, 0)
    assert (ev.target.path, ev.file_in_id, ev.target_in) == ("/etc/shadow", None, None)


def _op_record(target=0, file=b"", reason=None, file_id=0x1234):
    """A uw_op of a READ: the short record of a key with no target (as every
    op was recorded before targets), or the one of a key with no input (as
    the kernel sends it for all but SPLICE and TEE)."""
    from uringwatch.record import layout
    size = layout.OP_TARGET if target else layout.OP_SHORT
    key = (0xabc, 0, -1, -1, 0, 10, uring.OP_READ, 0, 0, 0)
    whole = layout.OP.pack(hdr=(layout.KIND_OP, layout.ABI_VERSION, size), key=key,
                           count=1, pid=10, tid=10, reason=reason or layout.OP_FIRST,
                           comm=b"reader", file_id=file_id if target else 0,
                           target=target, file=layout.FILE.struct.unpack(file) if file else None)
    return whole[:size]


@pytest.mark.parametrize("tail", [b"", b"\xff" * 64])
def test_an_op_recorded_before_targets_decodes_as_it_did(tail):
    from uringwatch.record.decode import decode
    from uringwatch.record import layout
    raw = _op_record() + tail      # a following record's bytes are not read
    ev = decode(raw, 0, layout.OP_SHORT, 0)
    assert (ev.opcode_name, ev.pid, ev.file_id, ev.target, ev.cmd_op) == \
        ("READ", 10, None, None, None)


def test_a_first_use_carries_its_file_and_a_count_is_joined_to_it():
    from test_decode import uw_file
    from uringwatch.record import layout
    from uringwatch.record.decode import decode
    from uringwatch.record.rings import Ledger, _count_record
    f = uw_file(fd=5, role=layout.ROLE_FD)
    first = decode(_op_record(layout.OPT_FD, f), 0, layout.OP_TARGET, 0)
    assert (first.file_id, first.target.path, first.target.fd, first.target.role) == \
        ("0000000000001234", "/etc/shadow", 5, "fd")
    # a count built from the map's key and value: the id alone, then joined
    key = layout.OP_KEY.pack(use=(0xabc, 0, -1, -1, 0, 10, uring.OP_READ, 0, 0, 0),
                             file_id=0x1234, target=layout.OPT_FD)
    val = layout.USE.pack(count=7, pid=10, tid=10, comm=b"reader")
    rec = _count_record(key, val, 1)
    count = decode(rec, 0, len(rec), 0)
    assert (count.reason, count.count, count.file_id, count.target) == \
        ("count", 6, "0000000000001234", None)
    ledger = Ledger()
    ledger.feed(first)
    assert ledger.feed(count).target == first.target
    # a key with no target makes the record as before
    plain = layout.OP_KEY.pack(use=(0xabc, 0, -1, -1, 0, 10, uring.OP_NOP, 0, 0, 0))
    assert len(_count_record(plain, val, 0)) == layout.OP_SHORT
    bad = layout.OP_KEY.pack(use=(0xabc, 0, -1, -1, 0, 10, uring.OP_READ, 0, 0, 0),
                             target=layout.OPT_FD | layout.OPT_BADF)
    ev = decode(_count_record(bad, val, 0), 0, layout.OP_TARGET, 0)
    assert ev.file_id is None and ev.target.error.startswith("EBADF")


class Msghdr(ctypes.Structure):
    """struct user_msghdr, as SENDMSG takes it."""
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


def send_to(r, fd: int, buf, *addrs) -> int:
    """One SEND of 4 bytes to each sockaddr (addr2, addr_len), in one
    submission: the first's result."""
    for i, sa in enumerate(addrs):
        r.put(i, uring.OP_SEND, fd=fd, addr=ctypes.addressof(buf), length=4,
              off=ctypes.addressof(sa), file_index=ctypes.sizeof(sa))
    return r.submit(len(addrs))


def test_an_unconnected_udp_send_names_each_destination(ring_tracer, needs_ops):
    """One unconnected UDP socket sends through the ring to two loopback
    receivers: SEND with addr2 to A, A, B, A (the last with garbage in
    sin_zero, which the kernel ignores), back to back so that the per-CPU
    fast path sees a new destination under the same opcode and fd, then
    SENDMSG with msg_name to B 5 times; each (op, destination) is a first
    use of its own with its address, counts exact. A SENDMSG whose msg_name
    is unreadable: where the address is read from the caller's memory
    (before 6.10), an EFAULT destination of its own. A connected TCP
    socket's SEND names none: no destination, its peer in its target.
    Where this kernel's SEND takes no addr2 (before 6.1) or its requests
    give no destination, `uringwatch probe` says so."""
    from uringwatch.probe.hooks import send_destinations
    have = {d.split("(")[0] for d in send_destinations()}
    a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    for x in (a, b):
        x.bind(("127.0.0.1", 0))
    pa, pb = a.getsockname()[1], b.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r, buf = uring.Ring(16), ctypes.create_string_buffer(b"ping", 64)
    sa, sb = uring.sockaddr_in(pa), uring.sockaddr_in(pb)
    junk = ctypes.create_string_buffer(bytes(sa)[:8] + b"\xa5" * 8, 16)
    sent_a = send_to(r, udp.fileno(), buf, sa, sa, sb, junk)
    iov = uring.Iovec(ctypes.addressof(buf), 4)
    msg = Msghdr(ctypes.addressof(sb), 16, ctypes.addressof(iov), 1)
    for i in range(5):
        r.put(i, uring.OP_SENDMSG, fd=udp.fileno(), addr=ctypes.addressof(msg), length=1)
    assert r.submit(5) == 4
    # a msg_name the caller can't read: the kernel refuses it (EFAULT) at
    # prep from 6.10, no operation; before, at issue, and the address read
    # at submission faults
    bad = Msghdr(0x10, 16, ctypes.addressof(iov), 1)
    assert r.do(uring.OP_SENDMSG, fd=udp.fileno(), addr=ctypes.addressof(bad), length=1) == -14
    user = "SENDMSG(user)" in send_destinations()
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    peer, _ = srv.accept()
    assert r.do(uring.OP_SEND, fd=cli.fileno(), addr=ctypes.addressof(buf), length=4) == 4
    if sent_a == -22:           # EINVAL: this kernel's SEND takes no addr2
        assert "SEND" not in have
    else:
        assert sent_a == 4
    events = collect(ring_tracer, lambda ev: kinds(ev, "Ring") and sum(
        e.count for e in ops_of(ev, ring_of(ev, r)) if e.reason == "count") >= 10 + user)
    ops = ops_of(events, ring_of(events, r))
    (tcp,) = [e for e in ops if e.reason == "first_use" and e.target.socket.protocol == 6]
    assert (tcp.destination, tcp.destination_id, tcp.target.socket.peer) == \
        (None, None, f"127.0.0.1:{port}")
    first = {(e.opcode_name, e.destination): e for e in ops
             if e.reason == "first_use" and e.destination_id}
    counts: dict = {}
    for e in ops:
        if e.reason == "count" and e.destination_id:
            k = (e.opcode_name, e.destination)                              # joined
            counts[k] = counts.get(k, 0) + e.count
    da, db = f"udp 127.0.0.1:{pa}", f"udp 127.0.0.1:{pb}"
    want = {("SEND", da): 3, ("SEND", db): 1} if "SEND" in have and sent_a == 4 else {}
    if "SENDMSG" in have:
        want["SENDMSG", db] = 5
    assert counts == want and set(first) == set(want)
    faults = [e for e in ops if e.destination_error]
    assert [(e.opcode_name, e.reason, e.count, e.destination_id, e.destination_from)
            for e in faults] == ([("SENDMSG", "first_use", 1, None, "user"),
                                  ("SENDMSG", "count", 1, None, "user")] if user else [])
    # the id is the address's: one per destination, whichever op sent to it
    assert len({e.destination_id for e in first.values()}) == len({d for _, d in want})
    for (_, d), e in first.items():
        assert e.destination_from == ("user" if "SENDMSG(user)" in send_destinations()
                                      else "kernel")
        assert e.target.socket.peer is None and e.target.socket.protocol == 17
    from uringwatch.outputs.output import _op_row
    for (_, d), e in first.items():
        assert "-> " + d.split(" ")[1] in _op_row(e)
    assert a.recv(8) == b"ping" and b.recv(8) == b"ping"
    for x in (a, b, udp, cli, peer, srv):
        x.close()
    r.close()


def test_a_send_destination_record_and_its_counts_decode_and_join():
    """A first use of a send with a destination (672 bytes: the sockaddr in
    file_in), then a count of its key built from the map: the same
    destination, joined by its id; a fault says so, with no address."""
    from test_decode import uw_file
    from uringwatch.record import layout
    from uringwatch.record.decode import decode
    from uringwatch.record.rings import Ledger, _count_record
    sa = bytes(uring.sockaddr_in(5353))[:8]
    dest = layout.FILE.pack(fd=-1, flags=layout.FL_SOCK, family=2, path_len=8, path=sa)
    use = (0xabc, 0, -1, -1, 0, 10, uring.OP_SEND, 0, 0, 0)
    t = layout.OPT_FD | layout.OPT_DEST
    raw = layout.OP.pack(hdr=(layout.KIND_OP, layout.ABI_VERSION, layout.OP.size), key=use,
                         count=1, pid=10, tid=10, reason=layout.OP_FIRST, comm=b"sender",
                         file_id=0x1234, target=t, file_in_id=0x5678,
                         file=layout.FILE.struct.unpack(uw_file(fd=5, role=layout.ROLE_FD)),
                         file_in=layout.FILE.struct.unpack(dest))
    first = decode(raw, 0, len(raw), 0)
    assert (first.destination, first.destination_id, first.destination_from) == \
        ("AF_INET 127.0.0.1:5353", "0000000000005678", "kernel")
    key = layout.OP_KEY.pack(use=use, file_id=0x1234, target=t, file_in_id=0x5678)
    rec = _count_record(key, layout.USE.pack(count=4, pid=10, tid=10, comm=b"sender"), 1)
    assert len(rec) == layout.OP.size
    count = decode(rec, 0, len(rec), 0)
    assert (count.count, count.destination_id, count.destination) == \
        (3, "0000000000005678", None)
    ledger = Ledger()
    ledger.feed(first)
    assert ledger.feed(count).destination == first.destination
    bad = layout.OP_KEY.pack(use=use, file_id=0x1234,
                             target=t | layout.OPT_DEST_USER | layout.OPT_DEST_FAULT)
    ev = decode(_count_record(bad, layout.USE.pack(count=1), 0), 0, layout.OP.size, 0)
    assert (ev.destination, ev.destination_id, ev.destination_from) == (None, None, "user")
    assert ev.destination_error.startswith("EFAULT")
