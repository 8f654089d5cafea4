"""A thread points one fd number at one file, then at another (dup2), in a
loop, while the main thread registers that number: an fd's identity is read
at enter, the kernel looks the fd up later. Every event must name the file
the kernel took, or say that it can't (`verified` false, `reason` raced).
What the kernel took is read back after each call: the ring's fdinfo
(`UserFiles`) for files, the call's result for an eventfd (the kernel
refuses a file that is not one). How often the race goes either way is
not asserted: it depends on the machine."""

import os
import signal
import time

import pytest

import uring
from helpers import ROOT, kernel_btf_has, needs_opcodes
from test_identity import by_role, path_tracer, tracer  # noqa: F401 (fixtures)

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
    a verified one was checked `how` (README, Identities)."""
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
