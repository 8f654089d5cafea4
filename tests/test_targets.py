"""What a ring did: a process that acts only through its ring has every
action reported with what it named and its result, while strace -f of
that same process sees none of those paths or addresses."""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from helpers import needs_root, wait_for
from test_rings import submit_tracepoint_has_request

HERE = os.path.dirname(os.path.abspath(__file__))


def _record(path: bytes, res: int = 3, **fields) -> bytes:
    from uringwatch.record import layout
    key = (1, 0, -1, -1, 0, 42, 18, 0, 0, 0)       # ring 1, pid 42, OPENAT
    return layout.ACTION.pack(hdr=(layout.KIND_ACTION, layout.ABI_VERSION, layout.ACTION.size),
                              key=key, ts=1, ts_done=2, res=res, dfd=-100, pid=42, tid=42,
                              flags=layout.ACT_DONE, comm=b"x", path=path, **fields)


def test_a_hostile_path_is_escaped_on_the_table_and_exact_in_json():
    """A process names its files: a newline, an escape sequence or a space
    in a path must not forge a line or a column, and JSON keeps it exact."""
    import msgspec
    from uringwatch import decode
    from uringwatch.outputs.output import row
    evil = "/tmp/a\nb c\x1b[2J\u202e"
    raw = _record(evil.encode())
    ev = decode(raw, 0, len(raw), 0)
    assert ev.target.path == evil
    line = row(ev)
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert "/tmp/a\\nb\\x20c\\x1b[2J\\u202e O_RDONLY = 3" in line
    assert msgspec.json.decode(msgspec.json.encode(ev))["target"]["path"] == ev.target.path


def test_a_short_or_unknown_address_decodes_without_failing():
    from uringwatch import decode
    key = (1, 0, -1, -1, 0, 42, 16, 0, 0, 0)       # CONNECT
    from uringwatch.record import layout
    for addr, n in ((b"", 0), (b"\x02\x00\x01", 3), (b"\x99\x00" + bytes(14), 16)):
        raw = layout.ACTION.pack(hdr=(layout.KIND_ACTION, layout.ABI_VERSION,
                                      layout.ACTION.size), key=key, flags=layout.ACT_DONE,
                                 addr=addr, addr_len=n, pid=1, tid=1, comm=b"x")
        t = decode(raw, 0, len(raw), 0).target
        assert t.address is None


def test_netlink_vsock_and_packet_addresses_decode():
    """Families a ring reaches beside inet and unix, each field at its
    place in the kernel's struct (nl_pid before nl_groups, svm_port before
    svm_cid, sll_protocol big-endian)."""
    import struct
    from uringwatch import decode
    from uringwatch.record import layout
    key = (1, 0, -1, -1, 0, 42, 16, 0, 0, 0)       # CONNECT
    for addr, text in (
            (struct.pack("<HHII", socket.AF_NETLINK, 0, 4242, 0x11), "pid=4242/groups=0x11"),
            (struct.pack("<HHII4x", socket.AF_VSOCK, 0, 1234, 2), "cid=2/port=1234"),
            (struct.pack("<H", socket.AF_PACKET) + struct.pack(">H", 0x0003) +
             struct.pack("<i", 7) + bytes(12), "ifindex=7/protocol=0x0003")):
        raw = layout.ACTION.pack(hdr=(layout.KIND_ACTION, layout.ABI_VERSION,
                                      layout.ACTION.size), key=key, flags=layout.ACT_DONE,
                                 addr=addr, addr_len=len(addr), pid=1, tid=1, comm=b"x")
        assert decode(raw, 0, len(raw), 0).target.address == text


def test_an_action_recorded_before_count_and_file_decodes_as_one():
    """Recordings made before the action record gained `count` and `file`
    hold shorter actions: read as one action each, with no file."""
    from uringwatch import decode
    from uringwatch.record import layout
    from uringwatch.record.decode import RecordError
    key = (1, 0, -1, -1, 0, 42, 18, 0, 0, 0)       # OPENAT
    whole = layout.ACTION.pack(hdr=(layout.KIND_ACTION, layout.ABI_VERSION,
                                    layout.ACTION_SHORT), key=key, flags=layout.ACT_DONE,
                               res=3, dfd=-100, path=b"/etc/hosts", pid=7, tid=7, comm=b"x")
    raw = whole[:layout.ACTION_SHORT] + b"\xff" * 64     # the next record's bytes
    ev = decode(raw, 0, layout.ACTION_SHORT, 0)
    assert (ev.target.path, ev.result, ev.count, ev.repeats) == ("/etc/hosts", 3, 1, False)
    with pytest.raises(RecordError):
        decode(whole[:layout.ACTION_SHORT - 8], 0, layout.ACTION_SHORT - 8, 0)


def test_a_zero_length_fixed_read_decodes_its_address_and_buffer():
    """READ_FIXED's action: the address prep took, length 0 and the
    key's buffer index; where an address lies in its buffer."""
    from uringwatch import decode
    from uringwatch.record import layout
    from uringwatch.record.events import RegisteredBuffer
    from uringwatch.record.rings import buffer_at
    key = (1, 0, -1, 2, 0, 42, 4, 0, 0, 0)        # READ_FIXED of buffer 2
    raw = layout.ACTION.pack(hdr=(layout.KIND_ACTION, layout.ABI_VERSION, layout.ACTION.size),
                             key=key, flags=layout.ACT_DONE, arg=(0x7000, 0, 0), pid=1, tid=1,
                             comm=b"x")
    t = decode(raw, 0, len(raw), 0).target
    assert (t.addr, t.len, t.buffer_index, t.buffer) == (0x7000, 0, 2, None)
    b = RegisteredBuffer(2, 0x6000, 0x1000)
    assert [buffer_at(a, b) for a in (0x6000, 0x6800, 0x7000, 0x7001, 0x5fff)] == [
        "start", "inside", "end", "outside", "outside"]


@pytest.fixture(scope="module")
def acted(tmp_path_factory):
    """The workload run once (under strace -f where strace exists) while
    traced: (its pid, its results, its actions, the table rows, strace's
    text or None, the directory, the port)."""
    if os.geteuid() != 0:
        pytest.skip("loading BPF needs root")
    if not submit_tracepoint_has_request():
        pytest.skip("this kernel has no typed submit tracepoint (5.x): operations, "
                    "and so their targets, are not traced here")
    from uringwatch import Filters, Tracer
    from uringwatch.outputs.output import row
    d = tmp_path_factory.mktemp("acts")
    (d / "secret").write_text("s3cret\n")
    (d / "a").write_text("")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    plan = json.dumps({"dir": str(d), "port": port}).encode().hex()
    strace = shutil.which("strace")
    log = d.parent / "strace.txt"
    cmd = [sys.executable, os.path.join(HERE, "targets_workload.py"), plan]
    if strace:
        cmd = [strace, "-f", "-s", "256", "-o", str(log)] + cmd
    env = dict(os.environ, PYTHONPATH=HERE)
    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True,
                count_interval=0.2) as t:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        pid = int(p.stdout.readline())
        t.add_pid(pid)
        p.stdin.write(b"x")
        p.stdin.close()
        results = json.loads(bytes.fromhex(p.stdout.readline().decode().strip()))
        assert p.wait(60) == 0
        events, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline and \
                sum(type(e).__name__ == "Action" for e in events) < 10:
            events += t.poll(0.05)
        t.detach()
        while batch := t.poll(0):
            events += batch
    listener.close()
    actions = [e for e in events if type(e).__name__ == "Action" and e.pid == pid]
    return (pid, results, actions, [row(a) for a in actions],
            log.read_text() if strace else None, str(d), port)


def _one(actions, op, path=None):
    found = [a for a in actions if a.opcode_name == op and
             (path is None or a.target.path == path)]
    assert len(found) == 1, (op, path, actions)
    return found[0]


def test_opens_name_their_path_flags_and_fd(acted):
    pid, res, actions, _, _, d, _ = acted
    read = _one(actions, "OPENAT", f"{d}/secret")
    assert "O_RDONLY" in read.target.flag_names and read.target.dfd == -100
    assert read.completion == "seen" and read.result == res["open"] >= 0
    create = _one(actions, "OPENAT", f"{d}/new")
    assert {"O_CREAT", "O_WRONLY"} <= set(create.target.flag_names)
    assert create.target.mode == 0o600 and create.result == res["create"] >= 0
    assert all(a.pid == pid and a.comm == "python3" or a.pid == pid for a in actions)


def test_a_failed_open_carries_its_errno_name(acted):
    _, res, actions, _, _, d, _ = acted
    missing = _one(actions, "OPENAT", f"{d}/missing")
    assert res["missing"] < 0 and missing.result == res["missing"]
    assert missing.error == "ENOENT"
    two = _one(actions, "OPENAT2", f"{d}/link")
    assert two.target.resolve == 0x04 and two.error == "ELOOP" and res["openat2"] < 0


def test_socket_and_connect_name_their_arguments_and_address(acted):
    _, res, actions, rows, _, _, port = acted
    sock = _one(actions, "SOCKET")
    assert (sock.target.family, sock.target.type) == ("AF_INET", "SOCK_STREAM")
    assert sock.result == res["socket"] >= 0
    conn = _one(actions, "CONNECT")
    assert conn.target.address == f"127.0.0.1:{port}" and conn.target.family == "AF_INET"
    assert conn.target.type == "SOCK_STREAM" and conn.result == res["connect"] == 0
    assert any(f"CONNECT tcp 127.0.0.1:{port} = 0" in r for r in rows)


def test_changes_to_the_tree_name_every_path(acted):
    _, res, actions, rows, _, d, _ = acted
    assert _one(actions, "UNLINKAT", f"{d}/new").result == res["unlink"] == 0
    ren = _one(actions, "RENAMEAT", f"{d}/a")
    assert ren.target.path2 == f"{d}/b" and ren.result == res["rename"] == 0
    mk = _one(actions, "MKDIRAT", f"{d}/dir")
    assert mk.target.mode == 0o700 and mk.result == 0
    sl = _one(actions, "SYMLINKAT", f"{d}/secret")
    assert sl.target.path2 == f"{d}/link" and sl.result == res["symlink"] == 0
    assert any(f"UNLINKAT {d}/new AT_REMOVEDIR" not in r and f"UNLINKAT {d}/new = 0" in r
               for r in rows)
    assert any(f"OPENAT {d}/secret O_RDONLY = {res['open']}" in r for r in rows), rows


def test_strace_sees_none_of_it(acted):
    """The blind spot the actions close: the same process under strace -f
    shows no path and no address it acted on."""
    _, _, actions, _, text, d, port = acted
    if text is None:
        pytest.skip("strace is not installed (ci/setup's apt list has it)")
    assert "io_uring_enter" in text
    for needle in (d, f"htons({port})", "127.0.0.1"):
        assert needle not in text, needle
    assert len(actions) == 10


@needs_root
def test_an_action_whose_completion_never_comes_is_reported_at_stop(tmp_path):
    """IOSQE_CQE_SKIP_SUCCESS: a successful open posts no completion. Its
    action still comes, when tracing stops, saying that no result was seen
    (nothing else is submitted: its request is not reused meanwhile)."""
    if not submit_tracepoint_has_request():
        pytest.skip("this kernel has no typed submit tracepoint (5.x)")
    import ctypes
    import uring
    from test_rings import collect
    from uringwatch import Filters, Tracer
    quiet = tmp_path / "quiet"
    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True) as t:
        r = uring.Ring(8)
        name = ctypes.create_string_buffer(str(quiet).encode())
        r.put(0, uring.OP_OPENAT, fd=uring.AT_FDCWD, addr=ctypes.addressof(name),
              op_flags=os.O_CREAT | os.O_WRONLY, length=0o600,
              flags=uring.SQE_CQE_SKIP_SUCCESS)
        r.put(1, uring.OP_NOP)
        assert r.submit(2, wait=1) == 0          # the NOP's: the open posts none
        wait_for(quiet.exists, "the open done (by an io-wq worker, maybe)")
        events = collect(t, lambda ev: False, timeout=0)
        r.close()
    (act,) = [e for e in events if type(e).__name__ == "Action"]
    assert act.target.path == str(quiet) and act.completion == "at_stop"
    assert act.result is None and act.error is None


@needs_root
def test_a_recording_replays_its_actions_as_they_were_shown(tmp_path):
    """Live --json and the replay of its recording give the same action
    lines: the records are kept as the kernel sent them."""
    if not submit_tracepoint_has_request():
        pytest.skip("this kernel has no typed submit tracepoint (5.x)")
    import ctypes
    import signal
    import uring
    uw, cap, made = [sys.executable, "-m", "uringwatch"], tmp_path / "cap.uwd", tmp_path / "m"
    p = subprocess.Popen(uw + ["--rings", "--json", "-w", str(cap), "-p", str(os.getpid())],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "tracing" in p.stderr.readline()
    r = uring.Ring(8)
    name = ctypes.create_string_buffer(str(made).encode())
    assert r.do(uring.OP_MKDIRAT, fd=uring.AT_FDCWD, addr=ctypes.addressof(name),
                length=0o755) == 0
    assert r.do(uring.OP_UNLINKAT, fd=uring.AT_FDCWD, addr=ctypes.addressof(name)) < 0
    r.close()
    p.send_signal(signal.SIGINT)
    live, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    acts = [line for line in live.splitlines() if '"kind":"action"' in line]
    assert [json.loads(a)["opcode_name"] for a in acts] == ["MKDIRAT", "UNLINKAT"]
    assert json.loads(acts[1])["error"] == "EISDIR"
    replayed = subprocess.run(uw + ["replay", str(cap), "--json"], capture_output=True,
                              text=True, timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    assert [line for line in replayed.stdout.splitlines() if '"kind":"action"' in line] == acts


@pytest.fixture
def own_actions(tmp_path):
    """(run, tmp_path): run(fn) traces this process while fn(ring, cstr)
    acts through a ring, and returns fn's result and the actions seen."""
    if os.geteuid() != 0:
        pytest.skip("loading BPF needs root")
    if not submit_tracepoint_has_request():
        pytest.skip("this kernel has no typed submit tracepoint (5.x)")
    import ctypes
    import uring
    from test_rings import collect
    from uringwatch import Filters, Tracer
    keep = []

    def cstr(text: str) -> int:
        keep.append(ctypes.create_string_buffer(text.encode()))
        return ctypes.addressof(keep[-1])

    def run(fn):
        with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True) as t:
            r = uring.Ring(8)
            got = fn(r, cstr)
            r.close()
            events = collect(t, lambda ev: False, timeout=0)
        return got, [e for e in events if type(e).__name__ == "Action"]
    return run, tmp_path


def test_a_hard_link_and_a_statx_name_their_paths(own_actions):
    import ctypes
    import uring
    run, d = own_actions
    (d / "f").write_text("x")
    buf = ctypes.create_string_buffer(256)
    res, acts = run(lambda r, c: (
        r.do(uring.OP_LINKAT, fd=uring.AT_FDCWD, addr=c(f"{d}/f"),
             length=uring.AT_FDCWD & 0xFFFFFFFF, off=c(f"{d}/hard")),
        r.do(uring.OP_STATX, fd=uring.AT_FDCWD, addr=c(f"{d}/f"), length=0xFFF,
             off=ctypes.addressof(buf))))
    assert res == (0, 0)
    link = _one(acts, "LINKAT", f"{d}/f")
    assert link.target.path2 == f"{d}/hard" and link.target.dfd2 == -100 and link.result == 0
    statx = _one(acts, "STATX", f"{d}/f")
    assert statx.target.mask == 0xFFF and statx.result == 0


def test_a_unix_listener_names_its_path_and_backlog(own_actions):
    """BIND and LISTEN (6.11+): the address from the kernel's copy, the
    socket's type read at completion."""
    import ctypes
    import socket
    import struct
    import uring
    run, d = own_actions
    sun = ctypes.create_string_buffer(struct.pack("<H", socket.AF_UNIX) + f"{d}/s".encode(), 110)

    def listen(r, c):
        s = r.do(uring.OP_SOCKET, fd=socket.AF_UNIX, off=socket.SOCK_STREAM)
        return (r.do(uring.OP_BIND, fd=s, addr=ctypes.addressof(sun), off=110),
                r.do(uring.OP_LISTEN, fd=s, length=7))
    (bound, listening), acts = run(listen)
    if bound == -errno.EINVAL:
        pytest.skip("this kernel has no IORING_OP_BIND (before 6.11)")
    assert (bound, listening) == (0, 0)
    bind = _one(acts, "BIND")
    assert (bind.target.family, bind.target.address) == ("AF_UNIX", f"{d}/s")
    assert bind.target.type == "SOCK_STREAM" and bind.result == 0
    assert _one(acts, "LISTEN").target.backlog == 7


def test_a_netlink_socket_names_the_kernel_it_talks_to(own_actions):
    """A netlink socket made and connected through the ring (routing
    queries and changes need no syscall that names them): its family,
    type, protocol and the port it reached."""
    import ctypes
    import struct
    import uring
    from uringwatch.outputs.output import row
    run, _ = own_actions
    nl = ctypes.create_string_buffer(struct.pack("<HHII", socket.AF_NETLINK, 0, 0, 0))

    def talk(r, c):
        s = r.do(uring.OP_SOCKET, fd=socket.AF_NETLINK, off=socket.SOCK_RAW,
                 length=socket.NETLINK_ROUTE)
        return s, r.do(uring.OP_CONNECT, fd=s, addr=ctypes.addressof(nl), off=len(nl.raw))
    (sock, connected), acts = run(talk)
    if sock == -errno.EINVAL:
        pytest.skip("this kernel has no IORING_OP_SOCKET (before 5.19)")
    assert sock >= 0 and connected == 0
    made = _one(acts, "SOCKET")
    assert (made.target.family, made.target.protocol) == ("AF_NETLINK", socket.NETLINK_ROUTE)
    conn = _one(acts, "CONNECT")
    assert (conn.target.family, conn.target.address) == ("AF_NETLINK", "pid=0/groups=0x0")
    assert conn.result == 0 and "CONNECT netlink pid=0/groups=0x0 = 0" in row(conn)


def test_a_path_relative_to_a_dirfd_is_the_whole_path_and_a_finding(own_actions):
    """Adversarial: /etc/shadow opened as `shadow` relative to a dirfd of
    /etc, so that no path the caller wrote names it: the action's path is
    the one the kernel looked up, and the path rule fires on it."""
    import uring
    from uringwatch.analysis.findings import Engine, Ruleset
    if not os.path.exists("/etc/shadow"):
        pytest.skip("no /etc/shadow here")
    run, _ = own_actions
    etc = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd, acts = run(lambda r, c: r.do(uring.OP_OPENAT, fd=etc, addr=c("shadow")))
    finally:
        os.close(etc)
    assert fd >= 0
    os.close(fd)
    act = _one(acts, "OPENAT", "/etc/shadow")
    assert (act.target.path_given, act.target.dfd) == ("shadow", etc)
    assert (act.target.file.role, act.target.file.fd, act.target.file.path) == \
        ("opened", fd, "/etc/shadow")
    found = Engine(Ruleset(())).feed(acts)
    assert [f.rule for f in found] == ["sensitive-file-through-ring"]


def test_a_symlink_opened_is_the_file_the_kernel_reached(own_actions):
    """Adversarial: /etc/shadow opened through a symlink with an innocent
    name: the action's path is the file the kernel opened, the name given
    is kept beside it, and the path rule fires; an open that fails keeps
    the path as given, with no file."""
    import uring
    from uringwatch.analysis.findings import Engine, Ruleset
    if not os.path.exists("/etc/shadow"):
        pytest.skip("no /etc/shadow here")
    run, d = own_actions
    os.symlink("/etc/shadow", f"{d}/notes.txt")
    try:
        fds, acts = run(lambda r, c: (r.do(uring.OP_OPENAT, fd=uring.AT_FDCWD,
                                           addr=c(f"{d}/notes.txt")),
                                      r.do(uring.OP_OPENAT, fd=uring.AT_FDCWD,
                                           addr=c(f"{d}/missing"))))
    finally:
        os.unlink(f"{d}/notes.txt")
    assert fds[0] >= 0 and fds[1] == -errno.ENOENT
    os.close(fds[0])
    act = _one(acts, "OPENAT", "/etc/shadow")
    assert act.target.path_given == f"{d}/notes.txt"
    assert (act.target.file.role, act.target.file.fd, act.target.file.kind) == \
        ("opened", fds[0], "file")
    assert os.stat("/etc/shadow").st_ino == act.target.file.ino
    failed = _one(acts, "OPENAT", f"{d}/missing")
    assert (failed.target.file, failed.target.path_given, failed.error) == (None, None, "ENOENT")
    found = Engine(Ruleset(())).feed(acts)
    assert [f.rule for f in found] == ["sensitive-file-through-ring"]


def test_opens_into_fixed_slots_name_the_file_the_slot_got(own_actions):
    """Adversarial: /etc/shadow opened through a symlink with an innocent
    name into a fixed slot, where no fd names it; a second open into any
    free slot (the kernel picks it: the result), an ACCEPT and a SOCKET
    into slots: each action's `file` is what its slot holds at completion
    (role "opened"), the real path with the given one kept beside it, and
    the path rule fires."""
    import ctypes
    import socket
    import uring
    from uringwatch.analysis.findings import Engine, Ruleset
    if not os.path.exists("/etc/shadow"):
        pytest.skip("no /etc/shadow here")
    run, d = own_actions
    os.symlink("/etc/shadow", f"{d}/notes.txt")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))     # waits in the backlog
    cport = client.getsockname()[1]

    def into_slots(r, c):
        assert uring.register(r.fd, uring.REGISTER_FILES, uring.ints(-1, -1, -1, -1), 4) == 0
        return (r.do(uring.OP_OPENAT, fd=uring.AT_FDCWD, addr=c(f"{d}/notes.txt"),
                     file_index=2),                                   # slot 1
                r.do(uring.OP_OPENAT, fd=uring.AT_FDCWD, addr=c("/etc/hostname"),
                     file_index=-1),                                  # any: the result
                r.do(uring.OP_ACCEPT, fd=listener.fileno(), file_index=3),
                r.do(uring.OP_SOCKET, fd=socket.AF_INET, off=socket.SOCK_DGRAM,
                     file_index=4))
    try:
        res, acts = run(into_slots)
    finally:
        os.unlink(f"{d}/notes.txt")
        client.close()
        listener.close()
    assert res[0] == 0 and res[1] >= 0 and res[1] != 1 and res[2:] == (0, 0), res
    shadow = _one(acts, "OPENAT", "/etc/shadow")
    assert (shadow.target.path_given, shadow.target.file_slot) == (f"{d}/notes.txt", 2)
    assert (shadow.target.file.role, shadow.target.file.fd, shadow.target.file.ino) == \
        ("opened", -1, os.stat("/etc/shadow").st_ino)
    anyslot = _one(acts, "OPENAT", "/etc/hostname")
    assert (anyslot.result, anyslot.target.file.path) == (res[1], "/etc/hostname")
    accepted = _one(acts, "ACCEPT").target.file
    assert accepted.role == "opened" and accepted.kind == "socket"
    assert accepted.socket.peer == f"127.0.0.1:{cport}"
    made = _one(acts, "SOCKET").target.file
    assert (made.role, made.socket.family, made.socket.type) == ("opened", "inet", "dgram")
    found = Engine(Ruleset(())).feed(acts)
    assert [f.rule for f in found] == ["sensitive-file-through-ring"]
    from uringwatch.outputs.output import row
    assert "OPENAT /etc/shadow O_RDONLY slot=1 = 0" in row(shadow)
    assert f"ACCEPT 127.0.0.1:{port} from " in row(_one(acts, "ACCEPT"))


def test_sqes_refused_at_prep_are_reported_with_their_errno(own_actions):
    """Hostile SQEs the kernel refuses before any op runs (so no submit
    tracepoint sees them): an OPENAT marked as using a fixed file (EBADF),
    an opcode no kernel has and a flag bit no kernel has (EINVAL)."""
    import uring
    run, d = own_actions
    res, acts = run(lambda r, c: (
        r.do(uring.OP_OPENAT, fd=uring.AT_FDCWD, addr=c(f"{d}/never"),
             flags=uring.SQE_FIXED_FILE, user_data=11),
        r.do(250, user_data=12),
        r.do(uring.OP_NOP, flags=0x80, user_data=13)))
    assert res == (-errno.EBADF, -errno.EINVAL, -errno.EINVAL)
    refused = {a.user_data: a for a in acts if a.completion == "refused"}
    assert sorted(refused) == [11, 12, 13], acts
    assert (refused[11].opcode_name, refused[11].target.path, refused[11].error) == \
        ("OPENAT", f"{d}/never", "EBADF")
    assert (refused[12].opcode, refused[12].error) == (250, "EINVAL")
    assert (refused[13].opcode_name, refused[13].error) == ("NOP", "EINVAL")
    assert all(a.pid == os.getpid() for a in refused.values())
    assert not (d / "never").exists()
    # no filter saw them (filters run after prep): a policy neither needs
    # nor judges them (generating one from liburing's refused OPENAT failed)
    from uringwatch.analysis.policy import is_action
    assert not any(is_action(a) for a in refused.values())


def test_an_accept_names_its_peer_and_its_listening_socket(own_actions):
    """The peer as the kernel wrote it to the caller's sockaddr, and the
    listening socket the request held."""
    import ctypes
    import socket
    import uring
    run, _ = own_actions
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))     # waits in the backlog
    sa, n = ctypes.create_string_buffer(128), ctypes.c_int(128)
    try:
        fd, acts = run(lambda r, c: r.do(uring.OP_ACCEPT, fd=listener.fileno(),
                                         addr=ctypes.addressof(sa), off=ctypes.addressof(n)))
        assert fd >= 0
        os.close(fd)
        act = _one(acts, "ACCEPT")
        assert act.result == fd and act.target.address == \
            f"127.0.0.1:{client.getsockname()[1]}"
        assert act.target.file.role == "listener"
        assert act.target.file.socket.local == f"127.0.0.1:{port}"
        from uringwatch.outputs.output import row
        assert f"ACCEPT 127.0.0.1:{port} from {act.target.address} = {fd}" in row(act)
    finally:
        client.close()
        listener.close()


def test_xattrs_name_the_attribute_and_the_file(own_actions):
    import ctypes
    import uring
    run, d = own_actions
    f = d / "x"
    f.write_text("x")
    # user.* where the file system keeps them (tmpfs only from 6.6), else
    # trusted.* (root, and tmpfs has those on every kernel here)
    ns = next((n for n in ("user", "trusted") if _takes_xattr(f, n)), None)
    if ns is None:
        pytest.skip("this file system keeps no user or trusted xattrs")
    fd = os.open(f, os.O_RDONLY)
    val, out = ctypes.create_string_buffer(b"evil", 4), ctypes.create_string_buffer(16)

    def xattrs(r, c):
        return (r.do(uring.OP_SETXATTR, addr=c(f"{ns}.a"), off=ctypes.addressof(val), length=4,
                     addr3=c(str(f))),
                r.do(uring.OP_FSETXATTR, fd=fd, addr=c(f"{ns}.b"), off=ctypes.addressof(val),
                     length=4, op_flags=1),
                r.do(uring.OP_FGETXATTR, fd=fd, addr=c(f"{ns}.a"), off=ctypes.addressof(out),
                     length=16),
                r.do(uring.OP_GETXATTR, addr=c(f"{ns}.none"), off=ctypes.addressof(out),
                     length=16, addr3=c(str(f))))
    try:
        res, acts = run(xattrs)
    finally:
        os.close(fd)
    if res[0] == -errno.EINVAL:
        pytest.skip("this kernel has no xattr ops (before 5.19)")
    assert res[:3] == (0, 0, 4) and res[3] == -errno.ENODATA
    s = _one(acts, "SETXATTR")
    assert (s.target.path, s.target.name, s.target.size, s.result) == (str(f), f"{ns}.a", 4, 0)
    fs = _one(acts, "FSETXATTR")
    assert (fs.target.name, fs.target.flag_names, fs.target.file.path) == \
        (f"{ns}.b", ["XATTR_CREATE"], str(f))
    assert _one(acts, "FGETXATTR").target.file.path == str(f)
    g = _one(acts, "GETXATTR")
    assert (g.target.name, g.error) == (f"{ns}.none", "ENODATA")


def _takes_xattr(path, namespace: str) -> bool:
    try:
        os.setxattr(path, f"{namespace}.probe", b"1")
    except OSError:
        return False
    return True


def test_a_flood_of_identical_opens_is_one_action_and_its_exact_count(own_actions):
    """Identical actions (same ring, op, path, flags, result) are folded in
    the kernel into the one sent and a count of its repeats, none dropped;
    a different one in between starts a new run."""
    import uring
    run, d = own_actions
    n = 500

    def flood(r, c):
        null, other = c("/dev/null"), c(f"{d}/other")
        for i in range(n):
            os.close(r.do(uring.OP_OPENAT, fd=uring.AT_FDCWD, addr=null))
        r.do(uring.OP_OPENAT, fd=uring.AT_FDCWD, addr=other)     # ENOENT: ends the run
        return time.monotonic()
    start = time.monotonic()
    end, acts = run(flood)
    null = [a for a in acts if a.target.path == "/dev/null"]
    assert sum(a.count for a in null) == n
    assert null[0].count == 1 and not null[0].repeats and all(a.repeats for a in null[1:])
    # a run folds for 1 s from its action: at most two records a started second
    assert len(null) <= 2 * (int(end - start) + 1)
    assert _one(acts, "OPENAT", f"{d}/other").error == "ENOENT"
