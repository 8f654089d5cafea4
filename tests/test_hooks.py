"""Hook choice by probing: the fallback hook really works, it is chosen by
itself where the per-syscall tracepoints are missing, and `probe` reports
what this kernel has."""

import json
import os
import subprocess
import sys

import pytest

import uring
from conftest import REGISTER_OPCODES, kernel_btf_has, needs_root
from uringwatch import Filters, Tracer, hooks


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
    assert ev.toctou.checked == t.features["bpf_loop"]
    os.close(ring)


@pytest.mark.parametrize("events,chosen", [
    (["syscalls/sys_enter_io_uring_register", "raw_syscalls/sys_enter"], "syscalls"),
    (["raw_syscalls/sys_enter"], "raw_syscalls"),     # no CONFIG_FTRACE_SYSCALLS
    ([], None),
])
def test_choice_falls_back_by_itself(tmp_path, events, chosen):
    for event in events:
        (tmp_path / "events" / event).mkdir(parents=True)
    assert hooks.choose(str(tmp_path)) == chosen


@needs_root
def test_probe_reports_this_kernel():
    out = subprocess.run([sys.executable, "-m", "uringwatch", "probe", "--json"],
                         capture_output=True, text=True, check=True).stdout
    rep = json.loads(out)
    assert rep["kernel"] == os.uname().release and rep["btf"] is True
    assert rep["ringbuf"] is True
    assert rep["bpf_loop"] == kernel_btf_has("BPF_FUNC_loop")
    assert rep["register_opcodes"] == REGISTER_OPCODES
    per_syscall = os.path.exists(os.path.join(rep["tracefs"], "events/syscalls"))
    assert rep["hooks"]["syscalls"] == per_syscall
    assert rep["chosen"] == ("syscalls" if per_syscall else "raw_syscalls")
    assert rep["lockdown"] in ("none", "integrity", "confidentiality")


def test_register_opcodes_fallback_never_guesses(monkeypatch):
    """With the bad-fd answer unavailable (an fd that exists but is no
    ring), the restricted-ring fallback gives the same count or none."""
    with open("/dev/null") as f:
        monkeypatch.setattr(hooks, "_NEVER_OPEN", f.fileno())
        assert hooks.register_opcodes() in (REGISTER_OPCODES, None)
