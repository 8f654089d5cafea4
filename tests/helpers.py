"""Plain helpers the tests share (conftest.py holds only fixtures): skip
markers that ask the kernel, where meson is, what a built wheel is, and
the event collector."""

import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import zipfile

import pytest

import uring
import uringwatch

ROOT = os.geteuid() == 0
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_root = pytest.mark.skipif(not ROOT, reason="loading BPF needs root")
REGISTER_OPCODES = uring.register_opcodes()


def meson() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "meson")
    found = beside if os.access(beside, os.X_OK) else shutil.which("meson")
    assert found, "meson is missing: ci/setup installs it into .venv"
    return found


def assert_tagged_with_glibc_floor(wheel, into, libs, arch: str) -> None:
    """The wheel's manylinux tag is its bundled libraries' glibc floor, read
    from their version needs (`readelf -V`), what the dynamic loader checks."""
    zipfile.ZipFile(wheel).extractall(into)
    floor = (0, 0)
    for lib in libs:
        out = subprocess.run(["readelf", "-V", into / "uringwatch" / "_lib" / lib],
                             capture_output=True, text=True, check=True).stdout
        assert "GLIBC_PRIVATE" not in out
        for v in re.findall(r"Name: GLIBC_([0-9.]+)", out):
            floor = max(floor, tuple(int(x) for x in v.split(".")))
    tag = f"py3-none-manylinux_{floor[0]}_{floor[1]}_{arch}"
    version = uringwatch.__version__
    assert wheel.name == f"uringwatch-{version}-{tag}.whl"
    meta = zipfile.ZipFile(wheel).read(f"uringwatch-{version}.dist-info/WHEEL").decode()
    assert f"Tag: {tag}" in meta.splitlines()


def copy_of_sources(dest: pathlib.Path) -> pathlib.Path:
    """The checkout's files (tracked, and untracked but not ignored) copied
    to dest, to build elsewhere."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        if os.path.isfile(os.path.join(REPO, name)):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), dest / name)
    return dest


def needs_opcodes(*opcodes: int):
    """For tests that need the kernel to accept these register opcodes:
    skipped, saying which, where the running kernel lacks them. Tests that
    only check decoding of what was passed run on every kernel."""
    from uringwatch.record import opcodes as names
    missing = [names.name(op) for op in opcodes if op >= REGISTER_OPCODES]
    return pytest.mark.skipif(
        bool(missing), reason=f"this kernel accepts register opcodes 0..{REGISTER_OPCODES - 1}, "
                              f"not {', '.join(missing)}")


def kernel_btf_has(name: str) -> bool:
    """Whether the running kernel's BTF names this type, member or enum
    value (e.g. BPF_FUNC_loop): an answer independent of uringwatch's own
    probing, and quick (reading /proc/kallsyms takes seconds under TCG)."""
    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        return b"\0" + name.encode() + b"\0" in f.read()


def wait_for(condition, what: str, timeout: float = 60.0, step: float = 0.02):
    """Polls condition() until it returns something true, which is returned;
    fails naming `what` after timeout seconds (sized for the slowest machine:
    waiting costs only when something is wrong)."""
    deadline = time.monotonic() + timeout
    while not (got := condition()):
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(step)
    return got


def unread_bytes(f) -> int:
    """Bytes written to a pipe or stream socket and not yet read, from its
    read end (FIONREAD)."""
    import fcntl
    import termios
    return struct.unpack("i", fcntl.ioctl(f.fileno(), termios.FIONREAD, b"\0" * 4))[0]


def pipe_full(f) -> bool:
    """Whether a pipe's read end holds so much that a writer of a batch
    blocks (within a page of its capacity)."""
    import fcntl
    return unread_bytes(f) >= fcntl.fcntl(f.fileno(), fcntl.F_GETPIPE_SZ) - 4096


def read_lines(f, n: int, timeout: float = 60.0) -> list:
    """The next n lines of a pipe, or a failure after timeout seconds."""
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend(f.readline() for _ in range(n)),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    assert not reader.is_alive(), f"waited {timeout} s for {n} lines, saw {len(lines)}"
    return lines


class Collector:
    """Buffers events so each test can pick out the ones its thread made."""

    def __init__(self, tracer):
        self.tracer = tracer
        self.events = []

    def mine(self, n: int, tid: int | None = None, timeout: float = 30.0, **match):
        """Wait for n call events of this thread (and matching fields)."""
        from uringwatch import Event
        tid = tid or threading.get_native_id()
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if isinstance(e, Event) and e.tid == tid and
                     all(getattr(e, k) == v for k, v in match.items())]
            if len(found) >= n or time.monotonic() > deadline:
                for e in found[:n]:
                    self.events.remove(e)
                assert len(found) >= n, f"saw {len(found)} of {n} events for tid {tid}"
                return found[:n]
            self.events.extend(self.tracer.poll(0.05))

    def one(self, **match):
        """The next call event of this thread (and matching fields)."""
        return self.mine(1, **match)[0]

    def drain(self):
        while self.tracer.poll(0):      # a flood may have queued many batches
            pass
        self.events.clear()


WORKLOAD = [sys.executable, str(pathlib.Path(__file__).parent / "workload.py")]


class Workload:
    """A workload process; `prefix` wraps it (unshare, setpriv, ...)."""

    def __init__(self, *opcodes, prefix=(), cgroup=None):
        cmd = list(prefix) + WORKLOAD + [str(o) for o in opcodes]
        if cgroup:   # enter the cgroup before exec, so every child starts in it
            cmd = ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh"] + cmd
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        self.pid = int(self.p.stdout.readline())   # in its own pid namespace, if any

    def go(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "done"
        self.p.wait(10)


def own_cgroup_id() -> int:
    """The cgroup2 id of this process (as the kernel gives it to BPF): its
    directory's inode."""
    from uringwatch.system.containers import cgroup2_root
    if not cgroup2_root():
        pytest.skip("no cgroup2 hierarchy mounted")
    with open("/proc/self/cgroup") as f:
        path = f.read().split("0::", 1)[1].split("\n", 1)[0]
    return os.stat(cgroup2_root() + path).st_ino
