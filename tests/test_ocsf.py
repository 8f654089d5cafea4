"""--format ocsf: every event kind, live and replayed, and findings, valid
OCSF 1.8 by the schema that ocsf-json-schema packages (offline), checked
with jsonschema (draft 2020-12)."""

import ctypes
import json
import os
import socket
import subprocess
import sys
import time

import pytest

import uring
from helpers import needs_root
from test_rings import submit_tracepoint_has_request

pytest.importorskip("cel")
ocsf_json_schema = pytest.importorskip("ocsf_json_schema")
jsonschema = pytest.importorskip("jsonschema")
pytestmark = needs_root


@pytest.fixture(scope="module")
def validate():
    from uringwatch.outputs.ocsf import VERSION
    schema = ocsf_json_schema.OcsfJsonSchemaEmbedded(
        ocsf_json_schema.get_ocsf_schema(version=VERSION))
    validators = {}

    def check(obj: dict) -> None:
        """Against the schema of its class with the profiles it names."""
        profiles = obj["metadata"].get("profiles", [])
        key = (obj["class_uid"], tuple(profiles))
        if key not in validators:
            name = schema.lookup_class_name_from_uid(class_uid=key[0])
            validators[key] = jsonschema.Draft202012Validator(
                schema.get_class_schema(class_name=name, profiles=profiles))
        errors = [e.message for e in validators[key].iter_errors(obj)]
        assert errors == [], obj
    return check


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Every kind: a ring made, calls (one mapping a page four times: a
    finding), identical failing calls folded into a repeat, operations."""
    from uringwatch import Filters, Tracer
    from uringwatch.recordings.recorder import Recorder
    path = tmp_path_factory.mktemp("ocsf") / "all.uwd"
    with Tracer(Filters(pids=frozenset([os.getpid()])), rings=True, count_interval=0.2) as t:
        rec = Recorder(str(path), t)
        r = uring.Ring(8)
        page = ctypes.create_string_buffer(8192)
        base = (ctypes.addressof(page) + 4095) & ~4095
        same = (uring.Iovec * 4)(*[uring.Iovec(base, 4096)] * 4)
        assert uring.register(r.fd, uring.REGISTER_BUFFERS, same, 4) == 0
        for _ in range(5):      # ENXIO each time, identical: folded into a repeat
            uring.register(r.fd, uring.UNREGISTER_EVENTFD, None, 0)
        for _ in range(3):
            r.put(0, uring.OP_NOP)
            r.submit(1)
        null = ctypes.create_string_buffer(b"/dev/null")      # actions: file, network
        os.close(r.do(uring.OP_OPENAT, fd=uring.AT_FDCWD, addr=ctypes.addressof(null)))
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sock = r.do(uring.OP_SOCKET, fd=socket.AF_INET, off=socket.SOCK_STREAM)
        sa = uring.sockaddr_in(listener.getsockname()[1])
        assert r.do(uring.OP_CONNECT, fd=sock, addr=ctypes.addressof(sa), off=16) == 0
        os.close(sock)
        listener.close()
        kinds, deadline = set(), time.monotonic() + 30
        while time.monotonic() < deadline and not {"Op", "Action"} <= kinds:
            kinds |= {type(e).__name__ for e in t.poll(0.05)}
        t.detach()
        while t.poll(0):
            pass
        rec.close()
        r.close()
    return path


def lines_of(*argv):
    out = subprocess.run([sys.executable, "-m", "uringwatch", *argv], capture_output=True,
                         text=True, check=True, timeout=120)
    return [json.loads(x) for x in out.stdout.splitlines()]


def test_replayed_events_of_every_kind_are_valid_ocsf(recording, validate):
    objs = lines_of("replay", "--format", "ocsf", str(recording))
    for obj in objs:
        validate(obj)
    kinds = {o["metadata"]["log_name"] for o in objs}
    assert kinds == ({"ring", "call", "repeat", "op", "action"} if submit_tracepoint_has_request()
                     else {"ring", "call", "repeat"})
    assert {o["class_uid"] for o in objs} == ({1003, 1001, 4001} if submit_tracepoint_has_request()
                                             else {1003})
    assert all(o["device"]["hostname"] == os.uname().nodename for o in objs)
    (repeat,) = [o for o in objs if o["metadata"]["log_name"] == "repeat"]
    assert repeat["count"] == 4 and repeat["status_id"] == 2
    assert repeat["status_code"] == "ENXIO"
    (buffers,) = [o for o in objs if o.get("kernel", {}).get("name") == "IORING_REGISTER_BUFFERS"]
    assert buffers["unmapped"]["uringwatch"]["payload"]["iovecs"][3]["len"] == 4096
    for opened in (o for o in objs if o["class_uid"] == 1001):
        assert opened["file"]["path"] == "/dev/null" and opened["activity_id"] == 14
        assert opened["status_id"] == 1
    for connected in (o for o in objs if o["class_uid"] == 4001):
        assert connected["dst_endpoint"]["ip"] == "127.0.0.1" and connected["activity_id"] == 1


def test_findings_are_valid_detection_findings(recording, validate):
    objs = lines_of("findings", "--format", "ocsf", str(recording))
    for obj in objs:
        validate(obj)
    assert sorted(o["finding_info"]["analytic"]["uid"] for o in objs) == (
        ["buffers-same-page", "connect-through-ring"] if submit_tracepoint_has_request()
        else ["buffers-same-page"])
    (obj,) = [o for o in objs if o["finding_info"]["analytic"]["uid"] == "buffers-same-page"]
    assert obj["class_uid"] == 2004 and obj["severity_id"] == 4     # high
    assert obj["finding_info"]["attacks"] == [{"technique": {"uid": "T1068"}}]


def test_live_findings_as_ocsf(validate, tmp_path):
    """`uringwatch --findings --format ocsf` on a process mapping one page
    four times: one Detection Finding."""
    code = ("import sys, ctypes; sys.path.insert(0, %r); import uring; sys.stdin.readline(); "
            "fd = uring.setup(); p = ctypes.create_string_buffer(8192); "
            "b = (ctypes.addressof(p) + 4095) & ~4095; "
            "v = (uring.Iovec * 4)(*[uring.Iovec(b, 4096)] * 4); "
            "assert uring.register(fd, uring.REGISTER_BUFFERS, v, 4) == 0"
            ) % os.path.dirname(__file__)
    work = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)
    tracer = subprocess.Popen([sys.executable, "-m", "uringwatch", "--findings", "--format",
                               "ocsf", "-p", str(work.pid), "--count", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = tracer.stderr.readline()         # the tracing line: attached
        assert line.startswith("uringwatch: tracing"), line
        assert "(--rings for creation and operations)" not in line     # --findings traces rings
        work.communicate("go\n", timeout=60)
        out, _ = tracer.communicate(timeout=60)
    finally:
        for p in (work, tracer):
            if p.poll() is None:
                p.kill()
                p.wait()
    (obj,) = [json.loads(x) for x in out.splitlines()]
    validate(obj)
    assert obj["finding_info"]["analytic"]["uid"] == "buffers-same-page"


def test_json_and_ocsf_together_is_a_usage_error(recording):
    out = subprocess.run([sys.executable, "-m", "uringwatch", "replay", "--json", "--format",
                          "ocsf", str(recording)], capture_output=True, text=True)
    assert out.returncode == 2 and "exclude each other" in out.stderr
