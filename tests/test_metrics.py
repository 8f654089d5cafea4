"""`--metrics`: Prometheus text exposition, scraped over loopback while a
real tracer runs and real calls are made."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import uring
from helpers import needs_root, own_cgroup_id

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

UW = [sys.executable, "-m", "uringwatch"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict:
    """(metric name, labels as a sorted tuple) -> value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def wait_for(port, key, value, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        got = scrape(port)
        if got.get(key) == value or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


@needs_root
def test_scrape_during_a_real_run():
    port = free_port()
    p = subprocess.Popen(UW + ["--json", "--metrics", f"127.0.0.1:{port}", "-p", str(os.getpid())],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert "tracing" in p.stderr.readline()
        assert f"metrics at http://127.0.0.1:{port}/metrics" in p.stderr.readline()
        ring = uring.setup()
        uring.register(ring, 2, uring.ints(0, 1), 2)               # REGISTER_FILES: ok
        for _ in range(2):
            uring.register(ring, 2, uring.ints(0, 1), 2)           # again: EBUSY
        uring.register(ring, 3, None, 0)                            # UNREGISTER_FILES: ok
        uring.register(ring, 3, None, 0)                            # none left: ENXIO
        uring.register(ring, 9999, None, 0)                         # unknown: EINVAL
        os.close(ring)
        got = wait_for(port, ("uringwatch_events_total",
                              (("opcode", "UNKNOWN"), ("result", "EINVAL"))), 1.0)
        assert got[("uringwatch_events_total",
                    (("opcode", "REGISTER_FILES"), ("result", "ok")))] == 1.0
        assert got[("uringwatch_events_total",
                    (("opcode", "REGISTER_FILES"), ("result", "EBUSY")))] == 2.0
        assert got[("uringwatch_events_total",
                    (("opcode", "UNREGISTER_FILES"), ("result", "ok")))] == 1.0
        assert got[("uringwatch_events_total",
                    (("opcode", "UNREGISTER_FILES"), ("result", "ENXIO")))] == 1.0
        assert got[("uringwatch_events_total",
                    (("opcode", "UNKNOWN"), ("result", "EINVAL")))] == 1.0
        for cause in ("ring_full", "no_exit", "no_enter", "inflight_full", "budget"):
            assert got[("uringwatch_dropped_total", (("cause", cause),))] == 0.0
        # the second EBUSY is identical to the first: coalesced, not emitted
        assert got[("uringwatch_records_emitted_total", ())] == 5.0
        assert got[("uringwatch_coalesced_total", ())] == 1.0
        # and per aggregate: this process's uid and cgroup
        labels = (("cgroup_id", str(own_cgroup_id())), ("container_id", ""),
                  ("uid", str(os.getuid())))
        assert got[("uringwatch_aggregate_coalesced_total", labels)] == 1.0
        assert got[("uringwatch_aggregate_dropped_total",
                    tuple(sorted(labels + (("cause", "budget"),))))] == 0.0
        assert got[("uringwatch_decode_errors_total", ())] == 0.0
        assert got[("uringwatch_ring_size_bytes", ())] == 8 << 20
        assert 0 <= got[("uringwatch_ring_used_bytes", ())] < 8 << 20
        assert not any(name == "uringwatch_container_events_total" for name, _ in got)
    finally:
        p.terminate()
        err = p.communicate(timeout=60)[1]
    assert p.returncode == 0 and "Traceback" not in err, err


@needs_root
def test_full_ring_drops_are_scraped():
    """A ring the reader never empties: the drops show up by cause."""
    port = free_port()
    r, w = os.pipe()
    # stdout is a pipe nobody reads: the tracer blocks writing, the ring fills
    p = subprocess.Popen(UW + ["--json", "--cap", "1024", "--rate", "0",
                               "--metrics", f"127.0.0.1:{port}",
                               "-p", str(os.getpid())], stdout=w, stderr=subprocess.PIPE, text=True)
    os.close(w)
    try:
        assert "tracing" in p.stderr.readline() and "metrics" in p.stderr.readline()
        ring = uring.setup()
        fds = uring.ints(*range(1024))
        for i in range(4000):               # 4.4 KiB records: twice the 8 MiB ring
            fds[0] = i                      # each call distinct: none coalesced
            uring.register(ring, 2, fds, 1024)
        os.close(ring)
        got = scrape(port)
        assert got[("uringwatch_dropped_total", (("cause", "ring_full"),))] > 0
        assert got[("uringwatch_ring_used_bytes", ())] > 0
    finally:
        p.kill()
        p.communicate(timeout=60)
        os.close(r)


@pytest.mark.parametrize("address", ["9464", "127.0.0.1:", "127.0.0.1:99999", ":9464"])
def test_bad_address_is_one_line(address):
    r = subprocess.run(UW + ["--metrics", address], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert re.match(r"uringwatch: --metrics takes ADDR:PORT", r.stderr)


@needs_root
def test_port_taken_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(UW + ["--metrics", f"127.0.0.1:{port}", "-p", "1"],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"uringwatch: --metrics 127.0.0.1:{port}: Address already in use" in r.stderr


@needs_root
def test_slow_connections_cost_no_threads():
    """2,000 connections that send half a request and wait: the tracer keeps
    its threads, answers a real scrape meanwhile, and closes every one of
    them (the oldest when too many are open, the rest at their timeout)."""
    import resource
    import selectors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    port = free_port()
    p = subprocess.Popen(UW + ["--json", "--metrics", f"127.0.0.1:{port}", "-p", str(os.getpid())],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    slow = []
    try:
        assert "tracing" in p.stderr.readline() and "metrics" in p.stderr.readline()
        threads = len(os.listdir(f"/proc/{p.pid}/task"))
        for _ in range(2000):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /metrics HTTP/1.1\r\n")     # and never the rest
            slow.append(s)
        assert ("uringwatch_ring_size_bytes", ()) in scrape(port)
        assert len(os.listdir(f"/proc/{p.pid}/task")) <= threads
        sel = selectors.DefaultSelector()
        for s in slow:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        open_, deadline = set(slow), time.monotonic() + 60
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                try:
                    closed = key.fileobj.recv(1) == b""
                except ConnectionResetError:
                    closed = True
                if closed:
                    sel.unregister(key.fileobj)
                    open_.discard(key.fileobj)
        assert not open_, f"{len(open_)} slow connections still open"
    finally:
        for s in slow:
            s.close()
        p.terminate()
        err = p.communicate(timeout=10)[1]
    assert p.returncode == 0 and "Traceback" not in err, err
