"""Hook choice by probing: the fallback hook really works, and `probe`
reports what this kernel has."""

import json
import os
import subprocess
import sys

import uring
from conftest import needs_root
from uringwatch import Filters, Tracer


@needs_root
def test_raw_syscalls_fallback_traces_the_same_calls():
    ring = uring.setup()
    with Tracer(Filters(pids=frozenset([os.getpid()])), hook="raw_syscalls") as t:
        assert t.features["hook"] == "raw_syscalls"
        assert t.features["hooks"] == ["tracepoint/raw_syscalls/sys_enter",
                                       "tracepoint/raw_syscalls/sys_exit"]
        os.getppid()                                  # other syscalls are skipped
        assert uring.register(ring, 2, uring.ints(0, 1), 2) == 0
        events = t.poll(1.0)
    (ev,) = events
    assert (ev.opcode_name, ev.ret, ev.payload.fds) == ("REGISTER_FILES", 0, [0, 1])
    os.close(ring)


@needs_root
def test_probe_reports_this_kernel():
    out = subprocess.run([sys.executable, "-m", "uringwatch", "probe", "--json"],
                         capture_output=True, text=True, check=True).stdout
    rep = json.loads(out)
    assert rep["kernel"] == os.uname().release and rep["btf"] is True
    assert rep["ringbuf"] is True and rep["bpf_loop"] is True
    assert rep["hooks"]["syscalls"] is True and rep["chosen"] == "syscalls"
    assert rep["lockdown"] in ("none", "integrity", "confidentiality")
