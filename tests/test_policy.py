"""From a recording to a policy, end to end: a real workload recorded with
`uringwatch record --rings`, a policy generated from it, recordings checked
against it, its cBPF filters, and the workload run under `confine`, which
needs the kernel's io_uring BPF filters (Linux 7.0+: the forky guest)."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid

import msgspec
import pytest

from helpers import REPO, ROOT

UW = [sys.executable, "-m", "uringwatch"]
WORKLOAD = os.path.join(REPO, "tests", "policy_workload.py")
EACCES = 13


def filters_missing() -> str | None:
    """The errno of the kernel's refusal of task filters, or None."""
    from uringwatch.analysis.confine import unsupported
    return unsupported()


def filters_supported() -> bool:
    return filters_missing() is None


needs_filters = pytest.mark.skipif(
    not filters_supported(), reason=f"no io_uring BPF filters (IORING_REGISTER_BPF_FILTER on "
                                    f"the task: {filters_missing()}; Linux 7.0+)")


def uw(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*UW, *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kw)


class Ran:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def policy_cmd(capsys, *args) -> Ran:
    """`uringwatch policy ARGS` in this process (a Python start costs
    seconds under TCG, in the guests)."""
    from uringwatch.commands.main import main
    capsys.readouterr()
    rc = main(["policy", *map(str, args)])
    out = capsys.readouterr()
    return Ran(rc, out.out, out.err)


def workload(comm: str, *extra: str, confine: pathlib.Path | None = None) -> dict:
    cmd = [sys.executable, WORKLOAD, comm, *extra]
    if confine:
        cmd = [*UW, "confine", "--policy", str(confine), "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def written_policy(tmp_path, sqe_ops: list[dict]) -> pathlib.Path:
    """A policy file allowing sqe_ops and nothing else."""
    doc = {"kind": "uringwatch-policy", "version": 1, "generated": "", "recordings": [],
           "scope": {}, "register_ops": [],
           "sqe_ops": sqe_ops,
           "restrictions": {"register_ops": [], "sqe_ops": [], "sqe_flags_allowed": [],
                            "sqe_flags_required": [], "note": ""},
           "sysctl": {"io_uring_disabled": 2, "io_uring_group": -1, "users": [], "reason": ""},
           "seccomp": {"containers": [], "syscalls": [], "reason": ""}}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    return path


class Recording:
    """One recording of the workload (comm base) and of the workload plus an
    OPENAT (comm extra), each with a name unique to this run."""

    def __init__(self, path: pathlib.Path):
        tag = uuid.uuid4().hex[:6]
        self.path, self.base, self.extra = path, f"uwb-{tag}", f"uwx-{tag}"
        err = path.with_suffix(".err")
        rec = subprocess.Popen([*UW, "record", "-w", path, "--rings"],
                               stderr=open(err, "w"), stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while "tracing via" not in err.read_text():
            assert rec.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        self.ran = {self.base: workload(self.base), self.extra: workload(self.extra, "extra")}
        rec.send_signal(signal.SIGINT)       # counts are read once more at stop
        assert rec.wait(timeout=120) == 0, err.read_text()


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    if not ROOT:
        pytest.skip("recording loads BPF: needs root")
    from test_rings import submit_tracepoint_has_request
    if not submit_tracepoint_has_request():
        pytest.skip("this kernel's submit tracepoint has no request: no operations recorded")
    return Recording(tmp_path_factory.mktemp("policy") / "run.uwd")


@pytest.fixture(scope="module")
def policy(recording, tmp_path_factory):
    from uringwatch.commands.main import main
    path = tmp_path_factory.mktemp("policy") / "policy.json"
    assert main(["policy", "generate", str(recording.path), "-c", recording.base,
                 "-o", str(path)]) == 0
    return path


def test_generated_policy_allows_exactly_what_was_recorded(recording, policy):
    doc = json.loads(policy.read_text())
    assert (doc["kind"], doc["version"]) == ("uringwatch-policy", 1)
    assert [r["op"] for r in doc["sqe_ops"]] == ["NOP", "READ"]
    assert all(f"{recording.base} (pid" in r["reason"] for r in doc["sqe_ops"])
    assert "FIXED_FILE" in doc["sqe_ops"][1]["reason"]
    assert [r["op"] for r in doc["register_ops"]] == ["REGISTER_FILES"]
    assert doc["restrictions"]["sqe_ops"] == ["NOP", "READ"]
    assert doc["restrictions"]["sqe_flags_allowed"] == ["FIXED_FILE"]
    assert doc["sysctl"]["io_uring_disabled"] == 1
    assert {u["uid"] for u in doc["sysctl"]["users"]} == {os.getuid()}


def test_check_passes_the_recorded_workload(recording, policy, capsys):
    out = policy_cmd(capsys, "check", policy, recording.path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ""


def test_check_predicts_the_extra_operation_denied(recording, policy, capsys):
    out = policy_cmd(capsys, "check", policy, recording.path, "-c", recording.extra)
    assert out.returncode == 1, out.stderr
    denied = out.stdout.splitlines()
    assert denied and all(line.split()[:3] == ["DENY", "bpf_filter", "OPENAT"]
                          for line in denied)
    assert "1 would be denied" in out.stderr


def test_policy_with_unknown_fields_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "uringwatch-policy", "version": 1, "surprise": 1}))
    out = policy_cmd(capsys, "check", bad, bad)
    assert out.returncode == 2 and "bad.json" in out.stderr


@pytest.mark.skipif(filters_supported(), reason="this kernel has io_uring BPF filters")
def test_confine_refuses_without_bpf_filters(tmp_path):
    out = uw("confine", "--policy", written_policy(tmp_path, []), "--", "true")
    assert out.returncode == 77
    assert out.stderr.splitlines() == [
        "uringwatch: this kernel has no io_uring BPF filters (IORING_REGISTER_BPF_FILTER on "
        f"the task: {filters_missing()}; Linux 7.0+): not running true unconfined"]


@pytest.mark.skipif(filters_supported(), reason="this kernel has io_uring BPF filters")
def test_restrictions_only_runs_unconfined_and_says_so(tmp_path):
    out = uw("confine", "--policy", written_policy(tmp_path, []), "--restrictions-only",
             "--", "sh", "-c", "exit 3")
    assert out.returncode == 3
    assert "IORING_SETUP_R_DISABLED" in out.stderr and "unconfined" in out.stderr


@needs_filters
def test_confined_workload_runs_with_no_denial(recording, policy):
    ran = workload(recording.base, confine=policy)
    assert ran == recording.ran[recording.base] == {"NOP": 0, "READ": 64}


@needs_filters
def test_confined_extra_operation_gets_eacces_alone(recording, policy):
    ran = workload(recording.extra, "extra", confine=policy)
    assert recording.ran[recording.extra]["OPENAT"] >= 0
    assert ran == {"NOP": 0, "READ": 64, "OPENAT": -EACCES}


@needs_filters
def test_sqe_flag_constraint_denies_the_fixed_file_read(recording, policy, tmp_path, capsys):
    """A hand-tightened rule: READ without SQE flags. check predicts the
    fixed-file READ denied, and the kernel denies it."""
    doc = json.loads(policy.read_text())
    doc["sqe_ops"][1]["constraints"] = {"sqe_flags_allowed": []}
    tight = tmp_path / "tight.json"
    tight.write_text(json.dumps(doc))
    out = policy_cmd(capsys, "check", tight, recording.path)
    assert out.returncode == 1
    assert {tuple(line.split()[:3]) for line in out.stdout.splitlines()} == {
        ("DENY", "bpf_filter", "READ")}
    assert workload(recording.base, confine=tight) == {"NOP": 0, "READ": -EACCES}


@needs_filters
def test_socket_family_constraint_is_applied_by_the_kernel(tmp_path):
    """A rule with an argument constraint: SOCKET for AF_UNIX only. The
    kernel reads the family where cbpf loads it (pdu_size 12)."""
    only_unix = {"socket_families": [socket.AF_UNIX]}
    path = written_policy(tmp_path, [{"op": "NOP", "reason": "r"}, {"op": "READ", "reason": "r"},
                                     {"op": "SOCKET", "reason": "r", "constraints": only_unix}])
    ran = workload("uwpol-sock", "socket", confine=path)
    assert ran["SOCKET_UNIX"] >= 0 and ran["SOCKET_INET"] == -EACCES
    assert (ran["NOP"], ran["READ"]) == (0, 64)


def test_show_bpf_prints_the_disassembly(tmp_path, capsys):
    path = written_policy(tmp_path, [{"op": "NOP", "reason": "r"}, {
        "op": "SOCKET", "reason": "r", "constraints": {"socket_families": [1]}}])
    out = policy_cmd(capsys, "show", "--bpf", path)
    assert out.returncode == 0, out.stderr
    lines = [line.split(";")[0].split() for line in out.stdout.splitlines()]
    assert lines == [
        "IORING_OP_NOP (0): 1 instructions, pdu_size 0".split(), ["(000)", "ret", "#1"],
        "IORING_OP_SOCKET (45): 5 instructions, pdu_size 12 flags DENY_REST".split(),
        ["(000)", "ld", "[16]"], ["(001)", "jeq", "#0x1", "jt", "3", "jf", "2"],
        ["(002)", "ja", "4"], ["(003)", "ret", "#1"], ["(004)", "ret", "#0"]]


class _Target(msgspec.Struct, frozen=True, omit_defaults=True):
    """The fields of an action's target that policies read (the action
    records' `target`: what the kernel took at submission)."""
    flags: int | None = None
    mode: int | None = None
    resolve: int | None = None
    family: str | None = None
    type: str | None = None
    protocol: int | None = None
    address: str | None = None
    unread: str | None = None


class _Action(msgspec.Struct, frozen=True):
    ts: int
    pid: int
    comm: str
    ring_id: str
    opcode: int
    opcode_name: str
    target: _Target
    fixed_file: int | None = None
    container_id: str | None = None


def _recorded(opcode_name: str, target: dict | None, pid=4242, comm="app") -> list:
    """One operation as recorded: its op record and, when target is given,
    its action record."""
    from uringwatch.record.events import Op
    from uringwatch.record.opcodes import SQE_OPS
    op = Op(ts=10**18, first_ts=10**18, count=1, reason="each", ring_id="r1",
            opcode=SQE_OPS.index(opcode_name), opcode_name=opcode_name, pid=pid, tid=pid,
            comm=comm, uid=1000, euid=1000, cgroup_id=1, creator_pid=pid, sq_thread=False,
            fixed_file=None, buffer_index=None, buffer_group=None, personality_cred=None,
            task_cred=None, creds_differ=False)
    if target is None:
        return [op]
    return [op, _Action(10**18, pid, comm, "r1", op.opcode, opcode_name, _Target(**target))]


def test_recorded_arguments_become_the_narrowest_constraints():
    """Reads of two files, a UNIX socket and a connect recorded with their
    arguments: the rules allow those flags, that family, port and address
    and nothing more, with the operations that needed each item; check
    denies an O_CREAT open, an AF_INET socket and a connect to another
    port, and counts the operation it can't judge."""
    from uringwatch.analysis import policy
    rd = {"flags": 0o100000, "mode": 0, "resolve": 0}
    seen = [*_recorded("OPENAT", rd),
            *_recorded("OPENAT", {**rd, "flags": os.O_CLOEXEC}),
            *_recorded("SOCKET", {"family": "AF_UNIX", "type": "SOCK_STREAM|SOCK_CLOEXEC",
                                  "protocol": 0}),
            *_recorded("CONNECT", {"family": "AF_INET", "address": "10.0.0.1:443",
                                   "type": "SOCK_STREAM", "protocol": 6})]
    pol = policy.generate(seen, ["r"], policy.Scope())
    rules = {r.op: r.constraints for r in pol.sqe_ops}
    assert rules["OPENAT"].open_flags_allowed == ["O_CLOEXEC"]
    assert rules["OPENAT"].open_mode_allowed == 0
    assert rules["OPENAT"].evidence == {"O_CLOEXEC": "1 operation by app (pid 4242)",
                                        "O_RDONLY": "2 operations by app (pid 4242)"}
    assert (rules["SOCKET"].socket_families, rules["SOCKET"].socket_types,
            rules["SOCKET"].socket_protocols) == (["AF_UNIX"], ["SOCK_STREAM"], [0])
    assert (rules["CONNECT"].connect_families, rules["CONNECT"].connect_ports,
            rules["CONNECT"].connect_v4_addrs) == (["AF_INET"], [443], ["10.0.0.1"])
    again = policy.load_bytes(policy.dumps(pol))
    extra = [*_recorded("OPENAT", {"flags": os.O_CREAT | os.O_WRONLY, "mode": 0o644,
                                   "resolve": 0}),
             *_recorded("SOCKET", {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": 0}),
             *_recorded("CONNECT", {"family": "AF_INET", "address": "10.0.0.1:444"}),
             *_recorded("OPENAT", None), *_recorded("NOP", None)]
    denials, judged, unknown = policy.check(again, seen + extra)
    assert [(d.what, d.why, type(d.event)) for d in denials] == [
        ("OPENAT", "open flags O_WRONLY|O_CREAT not allowed", _Action),
        ("SOCKET", "family AF_INET not allowed", _Action),
        ("CONNECT", "port 444 not allowed", _Action),
        ("NOP", "operation not in the policy", policy.Op)]
    assert (judged, unknown) == (8, 1)


def test_an_operation_recorded_without_arguments_keeps_its_whole_opcode():
    from uringwatch.analysis import policy
    seen = [*_recorded("OPENAT", {"flags": 0, "mode": 0, "resolve": 0}),
            *_recorded("OPENAT", None),
            *_recorded("SOCKET", {"family": "AF_UNIX", "unread": "fault"})]
    rules = policy.generate(seen, ["r"], policy.Scope()).sqe_ops
    assert [(r.op, r.constraints) for r in rules] == [("OPENAT", None), ("SOCKET", None)]
    assert "shows them for 1 of 2 operations" in rules[0].note
    assert "shows them for 0 of 1 operation:" in rules[1].note
