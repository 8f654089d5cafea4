import os
import shutil
import sys
import threading
import time

import pytest

import uring

ROOT = os.geteuid() == 0
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_root = pytest.mark.skipif(not ROOT, reason="loading BPF needs root")
REGISTER_OPCODES = uring.register_opcodes()


def meson() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "meson")
    found = beside if os.access(beside, os.X_OK) else shutil.which("meson")
    assert found, "meson is missing: ci/setup installs it into .venv"
    return found


def needs_opcodes(*opcodes: int):
    """For tests that need the kernel to accept these register opcodes:
    skipped, saying which, where the running kernel lacks them. Tests that
    only check decoding of what was passed run on every kernel."""
    from uringwatch import opcodes as names
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


@pytest.fixture(scope="session")
def session_tracer():
    """One live tracer for the session (load + attach took ~0.06 s here)."""
    if not ROOT:
        pytest.skip("loading BPF needs root")
    from uringwatch import Filters, Tracer, libbpf
    # Only this process: io_uring_register floods from anything else on the
    # machine (another checkout's soak run) would otherwise fill the ring
    # and bury this process's events.
    # no budget: tests (test_fairness.py's floods among them) make more
    # calls than a process's budget allows, and expect to see them all
    tracer = Tracer(Filters(pids=frozenset([os.getpid()])), cap=1024, rate=0)
    try:
        tracer.open()
    except libbpf.LibbpfError as e:     # the verifier's reason is at its log's end
        tail = "\n".join(line for entry in e.log_lines for line in entry.splitlines())
        pytest.fail(f"{e}\n" + "\n".join(tail.splitlines()[-30:]), pytrace=False)
    with tracer as t:
        yield Collector(t)


@pytest.fixture
def tracer(session_tracer):
    """The session's tracer with what earlier tests left behind dropped."""
    session_tracer.drain()
    return session_tracer


class Collector:
    """Buffers events so each test can pick out the ones its thread made."""

    def __init__(self, tracer):
        self.tracer = tracer
        self.events = []

    def mine(self, n: int, tid: int | None = None, timeout: float = 5.0, **match):
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

    def drain(self):
        while self.tracer.poll(0):      # a flood may have queued many batches
            pass
        self.events.clear()
