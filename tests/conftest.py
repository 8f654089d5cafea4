"""Fixtures only; the plain helpers they use are in helpers.py."""

import os
import pathlib
import uuid

import pytest

import uring
from helpers import ROOT, Collector


@pytest.fixture(scope="session")
def session_tracer():
    """One live tracer for the session (load + attach took ~0.06 s here)."""
    if not ROOT:
        pytest.skip("loading BPF needs root")
    from uringwatch import Filters, Tracer
    from uringwatch.system import libbpf
    # Only this process: io_uring_register floods from anything else on the
    # machine (another checkout's soak run) would otherwise fill the ring
    # and bury this process's events.
    # fairness off: tests here expect every call as an event, and a call
    # identical to one of an earlier test (same ring, same reused address)
    # would be folded into a repeat (tests/test_fairness.py tests that)
    tracer = Tracer(Filters(pids=frozenset([os.getpid()])), cap=1024, fair=False)
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


@pytest.fixture
def ring():
    """A fresh io_uring, closed afterwards."""
    fd = uring.setup()
    yield fd
    os.close(fd)


@pytest.fixture
def cgroup():
    """A fresh cgroup2 directory, removed with its children afterwards."""
    from uringwatch.system.containers import cgroup2_root
    root = cgroup2_root()
    if not root:
        pytest.skip("no cgroup2 hierarchy mounted")
    path = pathlib.Path(root) / f"uwtest-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path
    for child in sorted(path.rglob("*"), reverse=True):
        if child.is_dir():
            child.rmdir()
    path.rmdir()
