import os
import threading
import time

import pytest

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="loading BPF needs root")


@pytest.fixture(scope="session")
def session_tracer():
    """One live tracer for the session (load + attach took ~0.06 s here)."""
    if not ROOT:
        pytest.skip("loading BPF needs root")
    from uringwatch import Tracer
    with Tracer(cap=1024) as t:
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
        """Wait for n events of this thread (and matching fields)."""
        tid = tid or threading.get_native_id()
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if e.tid == tid and
                     all(getattr(e, k) == v for k, v in match.items())]
            if len(found) >= n or time.monotonic() > deadline:
                for e in found[:n]:
                    self.events.remove(e)
                assert len(found) >= n, f"saw {len(found)} of {n} events for tid {tid}"
                return found[:n]
            self.events.extend(self.tracer.poll(0.05))

    def drain(self):
        self.tracer.poll(0)
        self.events.clear()
