"""The library as container agents embed it: in-kernel filters, filter sets
changed while tracing, container context, asyncio, the event schema."""

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest

import uring
from helpers import Workload, needs_root
from uringwatch import Filters, Tracer
from uringwatch.system.containers import CgroupResolver, container_of

HERE = pathlib.Path(__file__).parent


def collect(tracer, pid, n, timeout=30.0):
    out = []
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(out) < n:
        out += [e for e in tracer.poll(0.05) if e.pid == pid]
    return out


@needs_root
def test_pid_set_in_kernel_and_changed_while_tracing():
    a, b = Workload(uring.NO_SUCH_OPCODE), Workload(uring.NO_SUCH_OPCODE)
    with Tracer(Filters(pids=frozenset([a.pid]))) as t:
        a.go()
        b.go()
        assert [e.pid for e in collect(t, a.pid, 1)] == [a.pid]
        assert collect(t, b.pid, 1, timeout=0.3) == []
        assert t.stats()["filtered"] >= 1
        c = Workload(uring.NO_SUCH_OPCODE)
        t.add_pid(c.pid)
        c.go()
        assert [e.pid for e in collect(t, c.pid, 1)] == [c.pid]


@needs_root
def test_opcode_failed_and_comm_filters():
    w = Workload(uring.REGISTER_FILES, uring.NO_SUCH_OPCODE, uring.REGISTER_FILES)
    f = Filters(pids=frozenset([w.pid]), opcodes=frozenset([uring.REGISTER_FILES]), failed=True,
                comm=open("/proc/self/comm").read().strip())
    with Tracer(f) as t:
        w.go()
        events = collect(t, w.pid, 2)
    # the first FILES succeeds (filtered: not failed); the second fails EBUSY
    assert [(e.opcode, e.error) for e in events] == [(2, "EBUSY")]


@needs_root
def test_uid_filter():
    other = Workload(uring.NO_SUCH_OPCODE, prefix=["setpriv", "--reuid=65534", "--regid=65534",
                                   "--clear-groups"])
    mine = Workload(uring.NO_SUCH_OPCODE)
    with Tracer(Filters(uid=65534)) as t:
        mine.go()
        other.go()
        got = collect(t, other.pid, 1)
        assert [e.uid for e in got] == [65534]
        assert collect(t, mine.pid, 1, timeout=0.3) == []


@needs_root
def test_cgroup_filter_and_container_context(cgroup):
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    scope = cgroup / f"docker-{cid}.scope"
    scope.mkdir()
    w = Workload(uring.REGISTER_FILES, prefix=["unshare", "--pid", "--mount", "--fork"],
                 cgroup=scope)
    assert w.pid == 1                                  # pid 1 of its namespace
    with Tracer(Filters(cgroups=frozenset(CgroupResolver().container_cgroups(cid[:12])))) as t:
        outsider = Workload(uring.REGISTER_FILES)
        outsider.go()
        w.go()
        events = [e for e in t.poll(0.5) + t.poll(0.2)]
    assert events and all(e.container_id == cid for e in events)
    ev = events[0]
    assert ev.cgroup_path == f"/{cgroup.name}/docker-{cid}.scope"
    assert ev.cgroup_id == scope.stat().st_ino
    assert ev.pidns != os.stat("/proc/self/ns/pid").st_ino   # its own pid namespace
    assert ev.mntns != os.stat("/proc/self/ns/mnt").st_ino
    assert ev.payload.fds == [0, 1]


@needs_root
def test_container_gone_before_its_event_is_read(cgroup):
    """A container that exits right after its call is removed before the
    tracer reads the event: a cgroup that lived when tracing began is named."""
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    scope = cgroup / f"libpod-{cid}.scope"
    scope.mkdir()
    w = Workload(uring.NO_SUCH_OPCODE, cgroup=scope)
    with Tracer(Filters(pids=frozenset([w.pid]))) as t:
        w.go()
        scope.rmdir()                   # the runtime's teardown, before the first read
        events = collect(t, w.pid, 1)
    assert [(e.container_id, e.cgroup_path) for e in events] == \
        [(cid, f"/{cgroup.name}/libpod-{cid}.scope")]


@needs_root
def test_container_made_and_gone_while_tracing(cgroup):
    """A container started after the tracer, removed as soon as its call
    is made: its cgroup is learned when made, so its event is named."""
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    scope = cgroup / f"libpod-{cid}.scope"
    with Tracer() as t:
        assert t.features["cgroups"] == "inotify"
        scope.mkdir()
        w = Workload(uring.NO_SUCH_OPCODE, cgroup=scope)
        w.go()
        scope.rmdir()
        events = collect(t, w.pid, 1)
    assert [(e.container_id, e.cgroup_path) for e in events] == \
        [(cid, f"/{cgroup.name}/libpod-{cid}.scope")]


@pytest.mark.parametrize("path,expected", [
    ("/system.slice/docker-" + "a" * 64 + ".scope", ("docker", "a" * 64)),
    ("/docker/" + "b" * 64, ("docker", "b" * 64)),
    ("/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + "c" * 64 + ".scope",
     ("containerd", "c" * 64)),
    ("/kubepods.slice/crio-" + "d" * 64 + ".scope", ("cri-o", "d" * 64)),
    ("/machine.slice/libpod-" + "e" * 64 + ".scope", ("podman", "e" * 64)),
    ("/kubepods/besteffort/pod1234/" + "f" * 64, ("cri", "f" * 64)),
    ("/user.slice/user-0.slice/session-1.scope", None),
])
def test_runtime_naming_conventions(path, expected):
    assert container_of(path) == expected


@needs_root
def test_asyncio_events_and_callback_form():
    ring = uring.setup()

    async def main():
        with Tracer(Filters(pids=frozenset([os.getpid()]))) as t:
            async def calls():
                await asyncio.sleep(0.05)
                uring.register(ring, uring.NO_SUCH_OPCODE, None, 0)
            task = asyncio.create_task(calls())
            async for ev in t.aevents():
                await task
                return ev
    ev = asyncio.run(asyncio.wait_for(main(), 60))
    assert ev.opcode == uring.NO_SUCH_OPCODE and ev.pid == os.getpid()

    seen = []
    with Tracer(Filters(pids=frozenset([os.getpid()]))) as t:
        uring.register(ring, uring.NO_SUCH_OPCODE, None, 0)
        t.run(seen.append, duration=0.3)
    assert [e.opcode for e in seen] == [9999]
    os.close(ring)


def test_schema_matches_committed_copy():
    out = subprocess.run([sys.executable, "-m", "uringwatch", "schema"], check=True,
                         capture_output=True, text=True).stdout
    committed = (HERE.parent / "docs" / "schema.json").read_text()
    assert out == committed, "regenerate: python -m uringwatch schema > docs/schema.json"
    schema = json.loads(out)
    assert "Event" in json.dumps(schema) and "REGISTER_FILES" in out


@needs_root
def test_filtered_tracer_rejects_changes_to_sets_it_lacks():
    from uringwatch import TracerError
    with Tracer() as t:
        with pytest.raises(TracerError, match="without a pids filter"):
            t.add_pid(1)


@needs_root
def test_close_from_another_thread_stops_the_reader():
    import threading
    t = Tracer().open()
    seen, done = [], threading.Event()

    def reader():
        for ev in t:
            seen.append(ev)
        done.set()
    th = threading.Thread(target=reader)
    th.start()
    ring = uring.setup()
    for _ in range(200):
        uring.register(ring, uring.NO_SUCH_OPCODE, None, 0)
    t.close()
    assert done.wait(2), "the reading thread did not stop"
    th.join()
    os.close(ring)
