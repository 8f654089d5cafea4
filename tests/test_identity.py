"""Identities: every fd, credential and buffer a call carries, resolved in
the kernel as of the call. The fds are closed (and reused) right after
each call, so only what the kernel saw at the call can be right."""

import ctypes
import mmap
import os
import socket
import threading

import pytest

import uring
from helpers import ROOT, Collector, needs_opcodes
from uring import register
from uringwatch import Filters, Tracer
from uringwatch.probe import hooks
from uringwatch.record import identity, layout
from uringwatch.outputs.output import arg_text

PATHS = [p for p, ok in hooks.resolve_paths().items() if ok and p in ("btf", "probe_read")] \
    if ROOT else []
# bpf_find_vma (a callback helper) arrived with bpf_loop (5.17): without it
# buffers are left to user space, which says so
KERNEL_BUFFERS = ROOT and hooks.has_helper(hooks.FUNC_LOOP)


def _open(resolve):
    if not ROOT:
        pytest.skip("loading BPF needs root")
    # no fairness: tests repeat calls byte for byte (same fds, same ring fd
    # number, same buffer address), which it would fold into repeat records
    # (test_fairness.py tests that)
    t = Tracer(Filters(pids=frozenset([os.getpid()])), cap=1024, resolve=resolve, fair=False)
    t.open()
    assert t.features["resolve"] == resolve
    return t


@pytest.fixture(scope="module", params=PATHS or ["none"])
def path_tracer(request):
    if request.param == "none":
        pytest.skip("this kernel resolves identities in neither btf nor probe_read")
    t = _open(request.param)
    with t:
        yield Collector(t)


@pytest.fixture
def tracer(path_tracer):
    """The path's tracer with what earlier tests left behind dropped."""
    path_tracer.drain()
    return path_tracer


def fs_type(path) -> str:
    """The file system type of the mount holding path (/proc/self/mountinfo)."""
    best, kind = "", ""
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        point, fstype = fields[4], fields[fields.index("-") + 1]
        if (str(path) + "/").startswith(point.rstrip("/") + "/") and len(point) >= len(best):
            best, kind = point, fstype
    return kind


def by_role(ev):
    return {f.role: f for f in ev.files}


class Zoo:
    """One open fd of every kind, with what fstat says of each."""

    def __init__(self, tmp_path):
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "regular.txt").write_text("x")
        self.file_path = str((tmp_path / "d" / "regular.txt").resolve())
        self.dir_path = str((tmp_path / "d").resolve())
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.connect(self.tcp.getsockname())      # a peer, for the peer field
        self.unix, self.unix_peer = socket.socketpair()
        self.pipe_r, self.pipe_w = os.pipe()
        self.tcp_port = self.tcp.getsockname()[1]
        self.udp_port = self.udp.getsockname()[1]
        self.fds = {
            "file": os.open(self.file_path, os.O_RDONLY),
            "dir": os.open(self.dir_path, os.O_RDONLY | os.O_DIRECTORY),
            "tcp": self.tcp.detach(),
            "udp": self.udp.detach(),
            "unix": self.unix.detach(),
            "pipe": self.pipe_r,
            "eventfd": os.eventfd(0),
            "memfd": os.memfd_create("zoo-memfd"),
        }
        self.stat = {k: os.fstat(fd) for k, fd in self.fds.items()}

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        os.close(self.pipe_w)
        self.unix_peer.close()


def check_zoo(files, zoo, roles):
    """files[role] must be what zoo's fd of that kind was at the call."""
    # On overlayfs (/tmp in the test guests) the fd holds an overlay file,
    # whose device is the overlay's; stat(2) reports the layer's instead.
    overlay = fs_type(zoo.file_path) == "overlay"
    for kind, role in roles.items():
        f, st = files[role], zoo.stat[kind]
        assert (f.fd, f.source, f.verified, f.error) == (zoo.fds[kind], "kernel", True, None), kind
        assert (f.ino, f.mode) == (st.st_ino, st.st_mode), kind
        assert f.dev == st.st_dev or (overlay and kind in ("file", "dir")), kind
    f = {kind: files[role] for kind, role in roles.items()}
    assert (f["file"].kind, f["file"].path) == ("file", zoo.file_path)
    assert (f["dir"].kind, f["dir"].path) == ("dir", zoo.dir_path)
    assert f["tcp"].kind == "socket" and f["tcp"].socket.family == "inet"
    assert (f["tcp"].socket.type, f["tcp"].socket.protocol) == ("stream", 6)
    assert f["tcp"].socket.local == f"127.0.0.1:{zoo.tcp_port}" and f["tcp"].socket.peer is None
    assert (f["udp"].socket.type, f["udp"].socket.protocol) == ("dgram", 17)
    assert f["udp"].socket.local == f"127.0.0.1:{zoo.udp_port}"
    assert f["udp"].socket.peer == f"127.0.0.1:{zoo.tcp_port}"
    assert (f["unix"].kind, f["unix"].socket.family, f["unix"].socket.local) == \
        ("socket", "unix", None)
    assert (f["pipe"].kind, f["pipe"].path) == ("pipe", f"pipe:[{zoo.stat['pipe'].st_ino}]")
    assert (f["eventfd"].kind, f["eventfd"].path) == ("eventfd", "[eventfd]")
    assert (f["memfd"].kind, f["memfd"].path) == ("memfd", "memfd:zoo-memfd")


@needs_opcodes(uring.REGISTER_FILES)
def test_every_kind_of_fd_is_resolved_as_of_the_call(tracer, ring, tmp_path):
    zoo = Zoo(tmp_path)
    kinds = list(zoo.fds)
    fds = uring.ints(*[zoo.fds[k] for k in kinds[:4]], -1, *[zoo.fds[k] for k in kinds[4:]])
    assert register(ring, uring.REGISTER_FILES, fds, len(fds)) == 0
    zoo.close()                                 # the ring keeps its own references
    ev = tracer.one(opcode_name="REGISTER_FILES")
    assert ev.payload.fds == list(fds)          # the interface stays a list of ints
    files = by_role(ev)
    assert "fds[4]" not in files                # sparse -1: no file
    roles = {k: f"fds[{i if i < 4 else i + 1}]" for i, k in enumerate(kinds)}
    check_zoo(files, zoo, roles)
    assert (files["ring"].fd, files["ring"].kind, files["ring"].path) == \
        (ring, "io_uring", "[io_uring]")
    assert ev.resolve.path == tracer.tracer.features["resolve"]
    assert not ev.resolve.files_truncated
    text = arg_text(ev, limit=1000)              # the table's column
    assert f"fds=[{zoo.fds['file']}:{zoo.file_path},{zoo.fds['dir']}:{zoo.dir_path}," \
           f"{zoo.fds['tcp']}:tcp 127.0.0.1:{zoo.tcp_port},{zoo.fds['udp']}:udp 127.0.0.1:" \
           f"{zoo.udp_port},sparse," in text


@needs_opcodes(uring.REGISTER_FILES, uring.UNREGISTER_FILES)
def test_a_reused_fd_is_still_the_file_that_was_registered(tracer, ring, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("1")
    second.write_text("2")
    fd = os.open(first, os.O_RDONLY)
    ino = os.fstat(fd).st_ino
    assert register(ring, uring.REGISTER_FILES, uring.ints(fd), 1) == 0
    os.close(fd)
    again = os.open(second, os.O_RDONLY)        # takes the lowest free number: fd's
    assert again == fd
    assert register(ring, uring.UNREGISTER_FILES, None, 0) == 0
    reg = tracer.mine(2)[0]
    f = by_role(reg)["fds[0]"]
    assert (f.fd, f.ino, f.path) == (fd, ino, str(first.resolve()))
    assert os.fstat(again).st_ino != ino
    os.close(again)


@needs_opcodes(uring.REGISTER_EVENTFD, uring.UNREGISTER_EVENTFD, uring.REGISTER_EVENTFD_ASYNC)
def test_eventfd_and_sync_cancel_fds(tracer, ring):
    efd = os.eventfd(0)
    ino = os.fstat(efd).st_ino
    assert register(ring, uring.REGISTER_EVENTFD, uring.ints(efd), 1) == 0
    os.close(efd)
    ev = tracer.one(opcode_name="REGISTER_EVENTFD")
    f = by_role(ev)["eventfd"]
    assert (f.fd, f.kind, f.ino) == (efd, "eventfd", ino)
    register(ring, uring.UNREGISTER_EVENTFD, None, 0)
    tracer.drain()


def test_a_closed_fd_says_ebadf(tracer, ring):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    # EBADF from the kernel too
    assert register(ring, uring.REGISTER_FILES, uring.ints(r), 1) == -9
    f = by_role(tracer.one(opcode_name="REGISTER_FILES"))["fds[0]"]
    assert (f.fd, f.kind, f.dev) == (r, None, None)
    assert f.error.startswith("EBADF")


def test_a_registered_ring_index_is_not_an_fd(tracer, ring):
    # ring index `ring`, never registered
    register(ring | 0, uring.REGISTER_FILES | uring.USE_REGISTERED_RING, uring.ints(0), 1)
    ev = tracer.one(opcode_name="REGISTER_FILES")
    assert ev.registered_ring and "ring" not in by_role(ev)


@needs_opcodes(uring.REGISTER_FILES)
def test_more_fds_than_resolved_say_truncated(tracer, ring):
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(layout.FILES_MAX + 6)]
    try:
        register(ring, uring.REGISTER_FILES, uring.ints(*fds), len(fds))
    finally:
        for fd in fds:
            os.close(fd)
    ev = tracer.one(opcode_name="REGISTER_FILES")
    assert len(ev.files) == layout.FILES_MAX and ev.resolve.files_truncated
    assert all(f.kind == "device" and f.path == "/dev/null" for f in ev.files[1:])


@needs_opcodes(uring.REGISTER_PERSONALITY)
def test_personality_reports_the_credentials_saved(tracer, ring):
    """A child changes its ids, registers a personality, then changes them
    again: the event has the ids at the call."""
    caps = int([x for x in open("/proc/self/status") if x.startswith("CapPrm")][0].split()[1], 16)
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:        # child: no pytest machinery past this point
        code = 1
        try:
            os.read(go_r, 1)
            os.setgroups([7, 8, 9])
            os.setresgid(2000, 2001, 2002)
            os.setresuid(1000, 1001, 0)
            ok = register(ring, uring.REGISTER_PERSONALITY, None, 0) >= 0
            os.setresuid(1001, 1000, 1001)   # any of its ids, reshuffled
            code = 0 if ok else 2
        finally:
            os._exit(code)
    try:
        tracer.tracer.add_pid(pid)
        os.write(go_w, b"x")
        assert os.waitpid(pid, 0)[1] == 0
        ev = tracer.mine(1, tid=pid, opcode_name="REGISTER_PERSONALITY")[0]
    finally:
        tracer.tracer.remove_pid(pid)
        os.close(go_r)
        os.close(go_w)
    c = ev.cred
    assert (c.uid, c.euid, c.suid, c.fsuid) == (1000, 1001, 0, 1001)
    assert (c.gid, c.egid, c.sgid, c.fsgid) == (2000, 2001, 2002, 2001)
    assert c.ngroups == 3
    assert (c.cap_effective, c.cap_permitted) == (0, caps)   # euid != 0 drops effective


@needs_opcodes(uring.UNREGISTER_PERSONALITY)
def test_unregister_personality_has_no_cred(tracer, ring):
    register(ring, uring.UNREGISTER_PERSONALITY, None, 1)
    assert tracer.one(opcode_name="UNREGISTER_PERSONALITY").cred is None


def _mapping(fd, length, flags, offset=0):
    m = mmap.mmap(fd, length, flags=flags, offset=offset)
    return m, ctypes.addressof(ctypes.c_char.from_buffer(m))


@needs_opcodes(uring.REGISTER_BUFFERS, uring.UNREGISTER_BUFFERS)
def test_buffers_name_what_backs_them(tracer, ring, tmp_path):
    path = tmp_path / "backing"
    path.write_bytes(b"\0" * 3 * 4096)
    ffd = os.open(path, os.O_RDWR)
    mfd = os.memfd_create("zoo-buffer")
    os.ftruncate(mfd, 8192)
    anon, anon_addr = _mapping(-1, 4096, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    memfd, memfd_addr = _mapping(mfd, 8192, mmap.MAP_SHARED)
    shared, shared_addr = _mapping(ffd, 4096, mmap.MAP_SHARED, offset=8192)
    os.close(ffd)
    os.close(mfd)                               # the mappings keep the files
    ino = os.stat(path).st_ino
    try:
        ok = (uring.Iovec * 2)(uring.Iovec(anon_addr, 4096), uring.Iovec(memfd_addr + 4096, 4096))
        assert register(ring, uring.REGISTER_BUFFERS, ok, 2) == 0
        assert register(ring, uring.UNREGISTER_BUFFERS, None, 0) == 0
        one_file = (uring.Iovec * 1)(uring.Iovec(shared_addr, 4096))
        # EFAULT on 6.18 (no long-term pin of ext4 pages); 6.1 pins them
        register(ring, uring.REGISTER_BUFFERS, one_file, 1)
        reg, _, tried = tracer.mine(3)
    finally:
        register(ring, uring.UNREGISTER_BUFFERS, None, 0)
        for m in (anon, memfd, shared):
            try:
                m.close()
            except BufferError:
                pass
    a, m = reg.memory
    (f,) = tried.memory
    assert (a.addr, a.len, a.backing, a.path, a.source) == \
        (anon_addr, 4096, "anon", None, source_of(a))
    assert (m.backing, m.offset, m.shared, m.source) == ("memfd", 4096, True, source_of(m))
    assert (f.backing, f.offset) == ("file", 8192)
    if fs_type(path) != "overlay":    # overlayfs maps its layer's file, named there
        assert (f.path, f.ino) == (str(path.resolve()), ino)
    assert m.path == ("memfd:zoo-buffer" if source_of(m) == "kernel"
                      else "/memfd:zoo-buffer (deleted)")
    # the ring pinned the pages of the mappings named; a failed call pinned
    # nothing, so nothing can vouch for what its address held then
    for x, pinned in ((a, True), (m, True), (f, tried.ret == 0)):
        want = (True, "kernel", None) if pinned else (False, None, "unchecked")
        assert (x.verified, x.check, x.reason) == \
            (want if source_of(x) == "kernel" else (False, None, "proc")), x


def source_of(m: identity.MemoryIdentity) -> str:
    """Where a buffer's backing should come from: the kernel where it
    resolves buffers, unless the address space was locked at the call
    (test_a_locked_address_space_is_looked_up_in_proc)."""
    return "kernel" if KERNEL_BUFFERS and m.error != identity.LOCKED else "proc"


@pytest.mark.skipif(not KERNEL_BUFFERS, reason="buffers are not resolved in the kernel here")
def test_a_locked_address_space_is_looked_up_in_proc(tracer, ring):
    """bpf_find_vma only try-locks the caller's address space: a thread
    mapping and unmapping meanwhile makes some lookups fail. Those are
    looked up in /proc instead, marked unverified and why; none is lost.
    How many take each way depends on the machine (on one with slow
    syscalls most found the lock taken), so only the ways are asserted;
    the tests without churn exercise the kernel way."""
    mem, addr = _mapping(-1, 4096, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            mmap.mmap(-1, 1 << 16).close()

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(300):
            buf_reg = uring.BufReg(ring_addr=addr, ring_entries=8, bgid=4)
            assert register(ring, uring.REGISTER_PBUF_RING, buf_reg, 1) == 0
            assert register(ring, uring.UNREGISTER_PBUF_RING, uring.BufReg(bgid=4), 1) == 0
    finally:
        stop.set()
        thread.join()
    got = [e.memory[0] for e in tracer.mine(600) if e.opcode == uring.REGISTER_PBUF_RING]
    ways = {(m.source, m.verified, m.reason, m.error) for m in got}
    # PBUF_RING's pinned pages are not read back (identity_check.h reads the
    # registered buffers only): unchecked, never verified
    assert ways <= {("kernel", False, "unchecked", None),
                    ("proc", False, "proc", identity.LOCKED)}, ways
    assert {(m.addr, m.backing, m.shared) for m in got} == {(addr, "shmem", True)}
    assert len(got) == 300      # how often the lock was free is the scheduler's business


def test_proc_path_says_unverified_and_can_be_wrong(ring, tmp_path):
    """resolve=proc looks fds up after the call: a reused fd then names the
    wrong file, which is why such entries are never `verified`."""
    t = _open("proc")
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("1")
    second.write_text("2")
    with t:
        c = Collector(t)
        fd = os.open(first, os.O_RDONLY)
        assert register(ring, uring.REGISTER_FILES, uring.ints(fd), 1) == 0
        os.close(fd)
        again = os.open(second, os.O_RDONLY)
        try:
            ev = c.mine(1, opcode_name="REGISTER_FILES")[0]
        finally:
            os.close(again)
    f = by_role(ev)["fds[0]"]
    assert (f.source, f.verified, ev.resolve.path) == ("proc", False, "proc")
    assert f.path == str(second.resolve())      # what /proc said later, not the truth


def test_off_resolves_nothing(ring):
    with _open("off") as t:
        register(ring, uring.REGISTER_FILES, uring.ints(0), 1)
        ev = Collector(t).mine(1, opcode_name="REGISTER_FILES")[0]
    assert (ev.files, ev.memory, ev.cred, ev.resolve.path) == (None, None, None, "off")


def test_files_survive_record_and_replay(tracer, ring, tmp_path):
    """The identities are in the record: a replay shows what live showed."""
    from uringwatch import replay
    from uringwatch.recordings.recorder import Recorder
    out = tmp_path / "ids.uwd"
    rec = Recorder(str(out), tracer.tracer)
    try:
        fd = os.open("/etc/hostname" if os.path.exists("/etc/hostname") else "/dev/null",
                      os.O_RDONLY)
        register(ring, uring.REGISTER_FILES, uring.ints(fd), 1)
        os.close(fd)
        live = tracer.one(opcode_name="REGISTER_FILES")
    finally:
        rec.close()
    replayed = [e for e in replay(str(out)) if e.opcode_name == "REGISTER_FILES"]
    assert replayed[-1].files == live.files and replayed[-1].resolve == live.resolve


def test_threads_resolve_their_own_fd_tables(tracer, ring):
    """A thread shares its process's fds: resolving from another thread's
    call sees the same table."""
    fd = os.open("/dev/null", os.O_RDONLY)
    tids = []

    def call():
        tids.append(threading.get_native_id())
        register(ring, uring.REGISTER_FILES, uring.ints(fd), 1)

    th = threading.Thread(target=call)
    th.start()
    th.join()
    os.close(fd)
    ev = tracer.mine(1, tid=tids[0], opcode_name="REGISTER_FILES")[0]
    assert by_role(ev)["fds[0]"].path == "/dev/null"


def ring_ino(fd):
    return os.fstat(fd).st_ino


@needs_opcodes(uring.REGISTER_FILES, uring.REGISTER_FILES_UPDATE)
def test_files_update_fds_and_skip(tracer, ring):
    efd = os.eventfd(0)
    assert register(ring, uring.REGISTER_FILES, uring.ints(-1, -1, -1), 3) == 0
    upd = uring.RsrcUpdate(offset=1, data=uring.addr(fds := uring.ints(efd, -2)))
    assert register(ring, uring.REGISTER_FILES_UPDATE, upd, 2) == 2
    os.close(efd)
    _, update = tracer.mine(2)
    files = by_role(update)
    assert (files["fds[0]"].fd, files["fds[0]"].kind) == (efd, "eventfd")
    assert "fds[1]" not in files                # -2: skip
    assert update.payload.fds == list(fds)


@needs_opcodes(uring.REGISTER_FILES2, uring.REGISTER_FILES_UPDATE2)
def test_files2_and_update2_fds(tracer, ring, tmp_path):
    (tmp_path / "a").write_text("a")
    fd = os.open(tmp_path / "a", os.O_RDONLY)
    arr = uring.ints(fd, -1)
    reg = uring.RsrcRegister(nr=2, data=uring.addr(arr), tags=0)
    assert register(ring, uring.REGISTER_FILES2, reg, ctypes.sizeof(reg)) == 0
    upd = uring.RsrcUpdate2(offset=1, data=uring.addr(one_fd := uring.ints(fd)), nr=1)
    assert register(ring, uring.REGISTER_FILES_UPDATE2, upd, ctypes.sizeof(upd)) == 1
    os.close(fd)
    for ev in tracer.mine(2):
        assert by_role(ev)["fds[0]"].path == str((tmp_path / "a").resolve()), ev.opcode_name
    assert list(one_fd) == [fd]


@needs_opcodes(uring.REGISTER_RING_FDS, uring.UNREGISTER_RING_FDS)
def test_ring_fds_entries_fds(tracer, ring):
    other = uring.setup()
    ents = (uring.RsrcUpdate * 1)(uring.RsrcUpdate(offset=0xFFFFFFFF, data=other))
    assert register(ring, uring.REGISTER_RING_FDS, ents, 1) == 1
    ino = ring_ino(other)
    os.close(other)
    ents[0].data = 0
    register(ring, uring.UNREGISTER_RING_FDS, ents, 1)
    reg, unreg = tracer.mine(2)
    f = by_role(reg)["ring_fds[0]"]
    assert (f.fd, f.kind, f.ino) == (other, "io_uring", ino)
    assert set(by_role(unreg)) == {"ring"}      # unregister takes offsets, not fds


@needs_opcodes(uring.REGISTER_BUFFERS, uring.REGISTER_CLONE_BUFFERS)
def test_clone_buffers_src_fd(tracer, ring):
    buf = ctypes.create_string_buffer(4096)
    iov = (uring.Iovec * 1)(uring.Iovec(ctypes.addressof(buf), 4096))
    assert register(ring, uring.REGISTER_BUFFERS, iov, 1) == 0
    dst = uring.setup()
    register(dst, uring.REGISTER_CLONE_BUFFERS, uring.CloneBuffers(src_fd=ring, nr=1), 1)
    _, ev = tracer.mine(2)
    f = by_role(ev)
    assert (f["src_fd"].fd, f["src_fd"].kind, f["src_fd"].ino) == (ring, "io_uring", ring_ino(ring))
    assert (f["ring"].fd, f["ring"].ino) == (dst, ring_ino(dst))
    os.close(dst)


@needs_opcodes(uring.REGISTER_SYNC_CANCEL)
def test_sync_cancel_fd(tracer, ring):
    r, w = os.pipe()
    register(ring, uring.REGISTER_SYNC_CANCEL, uring.SyncCancel(fd=r, tv_sec=0, tv_nsec=1000), 0)
    ino = os.fstat(r).st_ino
    os.close(r)
    os.close(w)
    f = by_role(tracer.one(opcode_name="REGISTER_SYNC_CANCEL"))["fd"]
    assert (f.fd, f.kind, f.ino) == (r, "pipe", ino)


@needs_opcodes(uring.REGISTER_PBUF_RING, uring.UNREGISTER_PBUF_RING)
def test_pbuf_ring_memory(tracer, ring):
    mem = mmap.mmap(-1, 4096)             # MAP_SHARED | MAP_ANONYMOUS: shmem
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    buf_reg = uring.BufReg(ring_addr=addr, ring_entries=8, bgid=4)
    assert register(ring, uring.REGISTER_PBUF_RING, buf_reg, 1) == 0
    assert register(ring, uring.UNREGISTER_PBUF_RING, uring.BufReg(bgid=4), 1) == 0
    reg, unreg = tracer.mine(2)
    (m,) = reg.memory
    assert (m.addr, m.len, m.backing, m.shared) == (addr, 8 * 16, "shmem", True)
    assert unreg.memory is None


@needs_opcodes(uring.REGISTER_BUFFERS2, uring.REGISTER_BUFFERS_UPDATE)
def test_buffers2_and_update_memory(tracer, ring):
    mfd = os.memfd_create("zoo-b2")
    os.ftruncate(mfd, 8192)
    m, addr = _mapping(mfd, 8192, mmap.MAP_SHARED)
    os.close(mfd)
    iov = (uring.Iovec * 1)(uring.Iovec(addr, 4096))
    reg = uring.RsrcRegister(nr=2, data=uring.addr(iov2 := (uring.Iovec * 2)(
        uring.Iovec(addr, 4096), uring.Iovec(addr + 4096, 4096))), tags=0)
    assert register(ring, uring.REGISTER_BUFFERS2, reg, ctypes.sizeof(reg)) == 0
    upd = uring.RsrcUpdate2(offset=1, data=uring.addr(iov), nr=1)
    assert register(ring, uring.REGISTER_BUFFERS_UPDATE, upd, ctypes.sizeof(upd)) == 1
    e_reg, e_upd = tracer.mine(2)
    register(ring, uring.UNREGISTER_BUFFERS, None, 0)
    assert [(x.backing, x.offset) for x in e_reg.memory] == [("memfd", 0), ("memfd", 4096)]
    assert [(x.backing, x.offset) for x in e_upd.memory] == [("memfd", 0)]
    assert len(iov2) == 2


@pytest.mark.parametrize("path", PATHS or ["none"])
def test_cli_says_which_path_and_prints_identities(path, ring):
    if path == "none":
        pytest.skip("this kernel resolves identities in neither btf nor probe_read")
    import json
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, "-m", "uringwatch", "--json", "--count", "1",
                          "--resolve", path, "-p", str(os.getpid()), "--opcode", "FILES"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    assert "tracing" in line and f"identities: {path}" in line, line
    fd = os.open("/dev/null", os.O_RDONLY)
    register(ring, 2, uring.ints(fd), 1)
    os.close(fd)
    out, err = p.communicate(timeout=60)
    ev = json.loads(out)
    assert ev["resolve"]["path"] == path
    assert [(f["role"], f["path"]) for f in ev["files"]] == [("ring", "[io_uring]"),
                                                             ("fds[0]", "/dev/null")]


@needs_opcodes(uring.REGISTER_FILES)
def test_one_file_many_times_and_many_files_in_one_call(tracer, ring, tmp_path):
    """A file met again in a call (the same fd, or a dup of it: the same
    open file) is read once in the kernel and copied: every entry must
    still carry its own fd and index, and the file it names, interleaved
    with distinct files (more than the resolver's hash has buckets)."""
    zoo = Zoo(tmp_path)
    distinct = []
    for i in range(24):
        (tmp_path / f"f{i}").write_text(str(i))
        distinct.append(os.open(tmp_path / f"f{i}", os.O_RDONLY))
    dup = os.dup(zoo.fds["file"])
    pattern = [zoo.fds["file"], zoo.fds["tcp"], dup, zoo.fds["file"], -1, zoo.fds["pipe"],
               zoo.fds["file"], zoo.fds["tcp"]]
    fds = []
    for i, fd in enumerate(distinct):
        fds += [fd, pattern[i % len(pattern)]]
    fds = fds[:layout.FILES_MAX - 1]            # with the ring's: all resolved
    truth = {fd: (os.fstat(fd).st_ino, os.readlink(f"/proc/self/fd/{fd}")) for fd in set(fds)
             if fd >= 0}
    try:
        assert register(ring, uring.REGISTER_FILES, uring.ints(*fds), len(fds)) == 0
    finally:
        zoo.close()
        os.close(dup)
        for fd in distinct:
            os.close(fd)
    ev = tracer.one(opcode_name="REGISTER_FILES")
    files = by_role(ev)
    assert not ev.resolve.files_truncated and len(ev.files) == 1 + sum(fd >= 0 for fd in fds)
    for i, fd in enumerate(fds):
        if fd < 0:
            assert f"fds[{i}]" not in files
            continue
        f = files[f"fds[{i}]"]
        assert (f.fd, f.source, f.verified, f.ino) == (fd, "kernel", True, truth[fd][0]), i
        if f.kind in ("file", "pipe"):
            assert f.path == truth[fd][1], (i, f)
    tcp = [files[f"fds[{i}]"] for i, fd in enumerate(fds) if fd == zoo.fds["tcp"]]
    assert len(tcp) > 2 and all(f.socket == tcp[0].socket and f.socket.family == "inet"
                                for f in tcp)
    assert (files["ring"].fd, files["ring"].kind) == (ring, "io_uring")


def test_the_ring_fd_is_each_calls_own(tracer, tmp_path):
    """The ring's own fd is kept from call to call (per CPU): rings made
    and closed in turn (a new one may get a freed one's memory), another
    ring between, and a file that is no ring at all passed as the ring,
    each call's ring entry must be that call's fd's file."""
    other = uring.setup()
    efd = os.eventfd(0)
    expect = []
    try:
        for _ in range(6):
            ring = uring.setup()
            for fd in (ring, ring, other, efd, ring):
                register(fd, uring.UNREGISTER_FILES, None, 0)
                expect.append((fd, os.fstat(fd).st_ino,
                               "[eventfd]" if fd == efd else "[io_uring]"))
            os.close(ring)
    finally:
        os.close(other)
        os.close(efd)
    evs = tracer.mine(len(expect), opcode_name="UNREGISTER_FILES")
    for ev, (fd, ino, path) in zip(evs, expect):
        f = by_role(ev)["ring"]
        assert (f.fd, f.ino, f.path, f.verified) == (fd, ino, path, True), (f, fd, path)
