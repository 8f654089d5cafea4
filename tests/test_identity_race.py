"""A thread points one fd number at one file, then at another (dup2), in a
loop, while the main thread registers that number: an fd's identity is read
at enter, the kernel looks the fd up later. Every event must name the file
the kernel took, or say that it can't (`verified` false, `reason` raced).
What the kernel took is read back after each call: the ring's fdinfo
(`UserFiles`) for files, the call's result for an eventfd (the kernel
refuses a file that is not one). How often the race goes either way is
not asserted: it depends on the machine.

The same for buffers: a thread unmaps a buffer's address and maps other
memory there while the main thread registers it; the kernel pins pages
during the call, the mapping is looked up at exit. What the kernel pinned
is read back through the ring (a WRITE_FIXED from the registered buffer)."""

import ctypes
import errno
import mmap
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

import uring
from helpers import ROOT, kernel_btf_has, needs_opcodes
from test_identity import KERNEL_BUFFERS, by_role, path_tracer, tracer  # noqa: F401 (fixtures)

FD = 900                # the number flipped; below any RLIMIT_NOFILE
CALLS = 400             # per opcode, and
SECONDS = 6.0           # at most this long (slow machines make fewer calls)
# From 5.15 (io_mkdir came with it), and in Debian's 5.10, which took
# 5.15's io_uring, identity_check.h reads the ring's registered files:
# there every verified file of a register call was checked against them
TABLE_READ = ROOT and kernel_btf_has("io_mkdir")


CLONE_FILES, SIGCHLD = 0x400, 17
SYS_CLONE = {"x86_64": 56, "aarch64": 220}[os.uname().machine]


class Flipper:
    """dup2 of two fds onto FD, alternately, by a process that shares this
    one's fd table (clone with CLONE_FILES): a thread of this interpreter
    would run only between calls, waiting for the GIL. Each on its own CPU
    where there are two."""

    def __init__(self, a: int, b: int):
        self.a, self.b = a, b
        self.cpus = sorted(os.sched_getaffinity(0))

    def flip(self):
        try:
            if len(self.cpus) > 1:
                os.sched_setaffinity(0, {self.cpus[1]})
            while True:
                os.dup2(self.a, FD)
                os.dup2(self.b, FD)
        finally:
            os._exit(0)             # never back into pytest

    def __enter__(self):
        os.dup2(self.a, FD)
        self.mine = os.sched_getaffinity(0)
        pid = uring.syscall(SYS_CLONE, CLONE_FILES | SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            self.flip()
        assert pid > 0, pid
        self.pid = pid
        if len(self.cpus) > 1:
            os.sched_setaffinity(0, {self.cpus[0]})
        return self

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.sched_setaffinity(0, self.mine)
        os.close(FD)


def taken(ring: int) -> str:
    """The name of the file in the ring's registered slot 0, as fdinfo
    shows it (a path on newer kernels, the dentry's name on older)."""
    lines = open(f"/proc/self/fdinfo/{ring}").read().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("UserFiles:"))
    return os.path.basename(lines[at + 1].split(":", 1)[1].strip())


def calls(one) -> list:
    """one() per call, CALLS times or until SECONDS pass."""
    out, deadline = [], time.monotonic() + SECONDS
    while len(out) < CALLS and time.monotonic() < deadline:
        out.append(one())
    return out


@pytest.fixture
def two_files(tmp_path):
    names = ("first-file", "second-file")
    fds = []
    for name in names:
        (tmp_path / name).write_text(name)
        fds.append(os.open(tmp_path / name, os.O_RDONLY))
    yield fds, names
    for fd in fds:
        os.close(fd)


def check(events, truths, role="fds[0]", how="kernel" if TABLE_READ else "exit"):
    """Every event's file is the one the kernel took, or says it may not be;
    a verified one was checked `how` (docs/EVENTS.md, Identities)."""
    assert len(events) == len(truths)
    for ev, truth in zip(events, truths):
        f = by_role(ev)[role]
        assert f.fd == FD and f.source == "kernel"
        if f.verified:
            assert os.path.basename(f.path) == truth, (ev.opcode_name, f, truth)
            assert f.check == how, f
            continue
        assert f.reason == "raced", f
        assert ev.toctou.changed and f"fd {FD} ({role})" in ev.toctou.changes
        if f.at_exit is not None and f.at_exit.check == "kernel":   # the ring's own
            assert os.path.basename(f.at_exit.path) == truth, (f, truth)


@needs_opcodes(uring.REGISTER_FILES, uring.UNREGISTER_FILES)
def test_register_files_names_what_the_kernel_took(tracer, ring, two_files):  # noqa: F811
    def one():
        assert uring.register(ring, uring.REGISTER_FILES, uring.ints(FD), 1) == 0
        name = taken(ring)
        assert uring.register(ring, uring.UNREGISTER_FILES, None, 0) == 0
        return name
    with Flipper(*two_files[0]):
        truths = calls(one)
    check(tracer.mine(len(truths), opcode_name="REGISTER_FILES", timeout=60), truths)


@needs_opcodes(uring.REGISTER_FILES, uring.UNREGISTER_FILES)
def test_one_fd_many_times_names_what_the_kernel_took_at_each(tracer, ring,  # noqa: F811
                                                               two_files):  # noqa: F811
    """FD eight times in one call while it flips: the kernel looks it up
    eight times, and a file read once for several entries (the same open
    file) must still be checked entry by entry."""
    n = 8

    def one():
        assert uring.register(ring, uring.REGISTER_FILES, uring.ints(*[FD] * n), n) == 0
        lines = open(f"/proc/self/fdinfo/{ring}").read().splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("UserFiles:"))
        names = [os.path.basename(line.split(":", 1)[1].strip())
                 for line in lines[at + 1:at + 1 + n]]
        assert uring.register(ring, uring.UNREGISTER_FILES, None, 0) == 0
        return names
    with Flipper(*two_files[0]):
        truths = calls(one)
    events = tracer.mine(len(truths), opcode_name="REGISTER_FILES", timeout=60)
    for i in range(n):
        check(events, [t[i] for t in truths], role=f"fds[{i}]")


@needs_opcodes(uring.REGISTER_FILES2, uring.UNREGISTER_FILES)
def test_register_files2_names_what_the_kernel_took(tracer, ring, two_files):  # noqa: F811
    arr = uring.ints(FD)
    reg = uring.RsrcRegister(nr=1, data=uring.addr(arr), tags=0)

    def one():
        assert uring.register(ring, uring.REGISTER_FILES2, reg, 32) == 0
        name = taken(ring)
        assert uring.register(ring, uring.UNREGISTER_FILES, None, 0) == 0
        return name
    with Flipper(*two_files[0]):
        truths = calls(one)
    check(tracer.mine(len(truths), opcode_name="REGISTER_FILES2", timeout=60), truths)


@needs_opcodes(uring.REGISTER_FILES, uring.REGISTER_FILES_UPDATE)
def test_files_update_names_what_the_kernel_took(tracer, ring, two_files):  # noqa: F811
    assert uring.register(ring, uring.REGISTER_FILES, uring.ints(-1), 1) == 0
    arr = uring.ints(FD)
    upd = uring.RsrcUpdate(offset=0, data=uring.addr(arr))

    def one():
        assert uring.register(ring, uring.REGISTER_FILES_UPDATE, upd, 1) == 1
        return taken(ring)
    try:
        with Flipper(*two_files[0]):
            truths = calls(one)
    finally:
        uring.register(ring, uring.UNREGISTER_FILES, None, 0)
    check(tracer.mine(len(truths), opcode_name="REGISTER_FILES_UPDATE", timeout=60), truths)


@needs_opcodes(uring.REGISTER_EVENTFD, uring.UNREGISTER_EVENTFD)
def test_register_eventfd_names_what_the_kernel_took(tracer, ring, two_files):  # noqa: F811
    """Flipped between an eventfd and a plain file: the kernel takes the
    eventfd (0) or refuses the file (EINVAL), so the result is the truth."""
    efd = os.eventfd(0)

    def one():
        ret = uring.register(ring, uring.REGISTER_EVENTFD, uring.ints(FD), 1)
        if ret == 0:
            assert uring.register(ring, uring.UNREGISTER_EVENTFD, None, 0) == 0
        return ret
    try:
        with Flipper(efd, two_files[0][0]):
            rets = calls(one)
    finally:
        os.close(efd)
    assert set(rets) <= {0, -22}
    events = tracer.mine(len(rets), opcode_name="REGISTER_EVENTFD", timeout=60)
    assert [ev.ret for ev in events] == rets
    taken_ = [ev for ev in events if ev.ret == 0]
    # the ring's eventfd is read on every kernel of the matrix
    check(taken_, ["[eventfd]"] * len(taken_), role="eventfd", how="kernel")
    for ev in events:
        f = by_role(ev)["eventfd"]
        # refused: the ring holds nothing to check against, only the fd at exit
        assert ev.ret == 0 or not f.verified or f.check == "exit", f


# -- buffers: munmap + mmap at the same address -----------------------------

BUF_LEN = 4 * 4096
# After the raced buffer the kernel pins these too (anonymous memory nobody
# remaps): buffer 0's pages stay pinned while the call goes on, which gives
# the remapper a window before the call's exit
STABLE_BUFS, STABLE_LEN = 7, 512 * 1024
MARK = b"M"             # the memfd's bytes; fresh anonymous memory reads 0
BUF_CALLS = 1500        # registrations, and
BUF_SECONDS = 10.0      # at most this long
PROT_RW, MAP_SHARED = 3, 0x01
HERE = os.path.dirname(os.path.abspath(__file__))
_KEPT: list = []        # mmap objects whose address something else took


@pytest.fixture(scope="module")
def remap_loop(tmp_path_factory):
    """tests/remapper.c's remap_loop, built for this run."""
    clang = shutil.which("clang")
    if not clang:
        pytest.skip("clang is missing (ci/setup installs it)")
    lib = tmp_path_factory.mktemp("remapper") / "remapper.so"
    subprocess.run([clang, "-O2", "-shared", "-fPIC", "-o", lib,
                    os.path.join(HERE, "remapper.c")], check=True)
    fn = ctypes.CDLL(str(lib)).remap_loop
    fn.restype = ctypes.c_long
    fn.argtypes = (ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int,
                   ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_long))
    return fn


class Remapper:
    """A thread that, at one address, unmaps and maps anonymous memory,
    then maps a memfd over it (MAP_SHARED: shmem pages), in a loop (in C,
    without the GIL), on a CPU of its own where there are two."""

    def __init__(self, loop):
        self.loop = loop
        self.mfd = os.memfd_create("race-buffer")
        os.write(self.mfd, MARK * BUF_LEN)
        self.map = mmap.mmap(self.mfd, BUF_LEN, flags=MAP_SHARED)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.stop, self.flips = ctypes.c_int(0), ctypes.c_long(0)
        self.cpus = sorted(os.sched_getaffinity(0))
        self.mine = os.sched_getaffinity(0)

    def _run(self):
        if len(self.cpus) > 1:
            os.sched_setaffinity(0, {self.cpus[1]})     # this thread only
        self.error = self.loop(self.addr, BUF_LEN, self.mfd, ctypes.byref(self.stop),
                               ctypes.byref(self.flips))

    def __enter__(self):
        self.thread = threading.Thread(target=self._run)
        if len(self.cpus) > 1:
            os.sched_setaffinity(0, {self.cpus[0]})
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.value = 1
        self.thread.join()
        os.sched_setaffinity(0, self.mine)
        os.close(self.mfd)
        if self.error == errno.EEXIST:      # the address is another's now:
            _KEPT.append(self.map)          # never unmap it with this object


def pinned(ring: "uring.Ring", addr: int, pipe: tuple[int, int]) -> str:
    """What registered buffer 0 holds at addr, read through the ring: the
    kernel writes from the pages it pinned, whatever is mapped there now."""
    ring.put(0, uring.OP_WRITE_FIXED, fd=pipe[1], addr=addr, length=1, buf_index=0)
    assert ring.submit(1) == 1
    return {MARK: "memfd", b"\0": "anon"}[os.read(pipe[0], 1)]


# 5.10 (no bpf_find_vma): every buffer is looked up in /proc, never verified,
# so there is nothing to race; those lookups (8 per call) made the 5.10
# guest overrun its 600 s under qemu's TCG
@pytest.mark.skipif(not KERNEL_BUFFERS, reason="buffers are not resolved in the kernel here")
@needs_opcodes(uring.REGISTER_BUFFERS, uring.UNREGISTER_BUFFERS)
def test_register_buffers_names_what_the_kernel_pinned(tracer, remap_loop):  # noqa: F811
    """Every buffer identity of a successful call is the memory the ring
    pinned (read through it), or says it can't vouch for it: raced (and
    named in toctou), or looked up in /proc. A failed call pinned
    nothing: never verified."""
    ring, pipe = uring.Ring(), os.pipe()
    stable = mmap.mmap(-1, STABLE_BUFS * STABLE_LEN, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    stable.write(b"s" * len(stable))
    base = ctypes.addressof(ctypes.c_char.from_buffer(stable))
    truths, deadline = [], time.monotonic() + BUF_SECONDS
    try:
        with Remapper(remap_loop) as remap:
            iov = (uring.Iovec * (1 + STABLE_BUFS))(
                uring.Iovec(remap.addr, BUF_LEN),
                *(uring.Iovec(base + i * STABLE_LEN, STABLE_LEN) for i in range(STABLE_BUFS)))
            while len(truths) < BUF_CALLS and time.monotonic() < deadline:
                ret = uring.register(ring.fd, uring.REGISTER_BUFFERS, iov, len(iov))
                truths.append(pinned(ring, remap.addr, pipe) if ret == 0 else None)
                if ret == 0:
                    assert uring.register(ring.fd, uring.UNREGISTER_BUFFERS, None, 0) == 0
                if len(truths) % 100 == 0:    # the ring buffer holds a few thousand
                    tracer.events.extend(tracer.tracer.poll(0))
    finally:
        ring.close()
        for fd in pipe:
            os.close(fd)
    assert remap.error in (0, errno.EEXIST), os.strerror(remap.error)
    events = tracer.mine(len(truths), opcode_name="REGISTER_BUFFERS", timeout=120)
    assert [ev.ret == 0 for ev in events] == [t is not None for t in truths]
    for ev, truth in zip(events, truths):
        m, *others = ev.memory
        assert m.addr == remap.addr and len(others) == STABLE_BUFS
        for o in others:            # nothing remaps these: never raced
            assert o.verified == (o.check == "kernel"), o
            assert o.backing == "anon" if o.verified else o.reason in ("unchecked", "proc"), o
        if m.verified:
            assert (m.check, m.backing, truth) in (("kernel", "memfd", "memfd"),
                                                   ("kernel", "anon", "anon")), (m, truth)
            assert m.offset == (0 if truth == "memfd" else None), m
            continue
        if truth is None:           # failed: nothing pinned to compare with
            assert m.reason in ("unchecked", "proc"), m
        elif m.reason == "raced":
            assert ev.toctou.changed, ev.toctou
            assert f"buffer {remap.addr:#x} (memory[0])" in ev.toctou.changes, ev.toctou
        else:                       # the address space was locked: /proc, live
            assert (m.source, m.reason) == ("proc", "proc"), m
