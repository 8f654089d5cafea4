"""From a recording to a policy, end to end: a real workload recorded with
`uringwatch record --rings`, a policy generated from it, recordings checked
against it, its cBPF filters, and the workload run under `confine`, which
needs the kernel's io_uring BPF filters (Linux 7.0+: the forky guest)."""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from helpers import REPO, ROOT

UW = [sys.executable, "-m", "uringwatch"]
WORKLOAD = os.path.join(REPO, "tests", "policy_workload.py")
EACCES = 13


def filters_supported() -> bool:
    from uringwatch.confine import supported
    return supported()


needs_filters = pytest.mark.skipif(
    not filters_supported(),
    reason="no io_uring BPF filters (IORING_REGISTER_BPF_FILTER: EINVAL; Linux 7.0+)")


def uw(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*UW, *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kw)


class Ran:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def policy_cmd(capsys, *args) -> Ran:
    """`uringwatch policy ARGS` in this process (a Python start costs
    seconds under TCG, in the guests)."""
    from uringwatch.cli import main
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
    return Recording(tmp_path_factory.mktemp("policy") / "run.uwd")


@pytest.fixture(scope="module")
def policy(recording, tmp_path_factory):
    from uringwatch.cli import main
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
def test_confine_refuses_without_bpf_filters(policy):
    out = uw("confine", "--policy", policy, "--", "true")
    assert out.returncode == 77
    assert out.stderr.splitlines() == [
        "uringwatch: this kernel has no io_uring BPF filters (IORING_REGISTER_BPF_FILTER: "
        "EINVAL; Linux 7.0+): not running true unconfined"]


@pytest.mark.skipif(filters_supported(), reason="this kernel has io_uring BPF filters")
def test_restrictions_only_runs_unconfined_and_says_so(policy):
    out = uw("confine", "--policy", policy, "--restrictions-only", "--", "sh", "-c", "exit 3")
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


# The compiler, with no kernel: encodings, a reference interpreter, and
# every constant against the kernel's own headers.

def run_cbpf(prog, ctx: bytes) -> int:
    """A classic BPF interpreter for the instructions cbpf emits."""
    from uringwatch import cbpf
    a, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == cbpf.BPF_LD | cbpf.BPF_W | cbpf.BPF_ABS:
            a = int.from_bytes(ctx[k:k + 4], sys.byteorder)
        elif code == cbpf.BPF_RET | cbpf.BPF_K:
            return k
        elif code == cbpf.BPF_JMP | cbpf.BPF_JA:
            pc += k
        elif code == cbpf.BPF_JMP | cbpf.BPF_JEQ | cbpf.BPF_K:
            pc += jt if a == k else jf
        elif code == cbpf.BPF_JMP | cbpf.BPF_JSET | cbpf.BPF_K:
            pc += jt if a & k else jf
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")


def ctx(opcode=0, sqe_flags=0, pdu=b"") -> bytes:
    import struct
    return struct.pack("=QBBB5x", 0x1234, opcode, sqe_flags, len(pdu)) + pdu.ljust(24, b"\0")


def test_compiled_rules_allow_and_deny_as_written():
    import struct
    from uringwatch import cbpf
    prog, pdu = cbpf.compile_rule(cbpf.Rule(22))
    assert (prog, pdu) == ([cbpf.Insn(0x06, 0, 0, 1)], 0)
    flags, _ = cbpf.compile_rule(cbpf.Rule(22, sqe_flags_allowed=0b1))
    assert run_cbpf(flags, ctx(22, 0b1)) == 1 and run_cbpf(flags, ctx(22, 0)) == 1
    assert run_cbpf(flags, ctx(22, 0b10)) == 0 and run_cbpf(flags, ctx(22, 0b11)) == 0
    o_creat, o_wronly = 0o100, 0o1
    opens, pdu = cbpf.compile_rule(cbpf.Rule(18, open_flags_denied=o_creat | o_wronly))
    assert pdu == 24
    assert run_cbpf(opens, ctx(18, 0, struct.pack("=QQQ", 0, 0, 0))) == 1
    assert run_cbpf(opens, ctx(18, 0, struct.pack("=QQQ", o_creat, 0o644, 0))) == 0
    socks, pdu = cbpf.compile_rule(cbpf.Rule(45, socket_families=(1, 10)))
    assert pdu == 12
    assert [run_cbpf(socks, ctx(45, 0, struct.pack("=III", fam, 1, 0)))
            for fam in (1, 2, 10, 16)] == [1, 0, 1, 0]
    both, _ = cbpf.compile_rule(cbpf.Rule(45, sqe_flags_allowed=0, socket_families=(1,)))
    assert run_cbpf(both, ctx(45, 1, struct.pack("=III", 1, 1, 0))) == 0
    assert run_cbpf(both, ctx(45, 0, struct.pack("=III", 1, 1, 0))) == 1
    assert cbpf.pack(socks)[:8] == struct.pack("=HBBI", 0x20, 0, 0, 16)


def test_show_bpf_prints_the_disassembly(tmp_path, capsys):
    doc = {"kind": "uringwatch-policy", "version": 1, "generated": "", "recordings": [],
           "scope": {}, "register_ops": [],
           "sqe_ops": [{"op": "NOP", "reason": "r"},
                       {"op": "SOCKET", "reason": "r", "constraints": {"socket_families": [1]}}],
           "restrictions": {"register_ops": [], "sqe_ops": [], "sqe_flags_allowed": [],
                            "sqe_flags_required": [], "note": ""},
           "sysctl": {"io_uring_disabled": 2, "io_uring_group": -1, "users": [], "reason": ""},
           "seccomp": {"containers": [], "syscalls": [], "reason": ""}}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    out = policy_cmd(capsys, "show", "--bpf", path)
    assert out.returncode == 0, out.stderr
    lines = [line.split(";")[0].split() for line in out.stdout.splitlines()]
    assert lines == [
        "IORING_OP_NOP (0): 1 instructions, pdu_size 0".split(), ["(000)", "ret", "#1"],
        "IORING_OP_SOCKET (45): 5 instructions, pdu_size 12 flags DENY_REST".split(),
        ["(000)", "ld", "[16]"], ["(001)", "jeq", "#0x1", "jt", "3", "jf", "2"],
        ["(002)", "ja", "4"], ["(003)", "ret", "#1"], ["(004)", "ret", "#0"]]


def _static_asserts(preamble: str, facts: dict[str, int], tmp_path, target=()) -> None:
    """Compile `_Static_assert(EXPR == VALUE)` for every fact, after preamble."""
    clang = shutil.which("clang")
    if not clang:
        pytest.skip("clang is missing (ci/setup installs it)")
    src = preamble + "#define off(T, m) __builtin_offsetof(T, m)\n" + "".join(
        f'_Static_assert(({expr}) == {value}, "{expr} is not {value}");\n'
        for expr, value in facts.items())
    c = tmp_path / "facts.c"
    c.write_text(src)
    out = subprocess.run([clang, *target, "-fsyntax-only", c],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_instruction_codes_are_linux_filter_h(tmp_path):
    from uringwatch import cbpf
    names = ["BPF_LD", "BPF_LDX", "BPF_ST", "BPF_STX", "BPF_ALU", "BPF_JMP", "BPF_RET",
             "BPF_MISC", "BPF_W", "BPF_ABS", "BPF_AND", "BPF_RSH", "BPF_JA", "BPF_JEQ",
             "BPF_JGT", "BPF_JGE", "BPF_JSET", "BPF_K", "BPF_X", "BPF_A", "BPF_MAXINSNS"]
    facts = {n: getattr(cbpf, n) for n in names}
    facts["sizeof(struct sock_filter)"] = cbpf.SOCK_FILTER.size
    _static_asserts("#include <linux/filter.h>\n", facts, tmp_path)


def test_filter_context_and_structs_are_the_kernels(tmp_path):
    """Against the vendored 7.2 vmlinux.h (vmlinux/arm64/: plain uapi
    structs, the same on x86_64)."""
    from uringwatch import cbpf, opcodes, uapi
    ctx_t, bpf_t = "struct io_uring_bpf_ctx", "struct io_uring_bpf"
    facts = {
        f"off({ctx_t}, user_data)": cbpf.CTX_USER_DATA, f"off({ctx_t}, opcode)": cbpf.CTX_OPCODE,
        f"off({ctx_t}, sqe_flags)": cbpf.CTX_SQE_FLAGS,
        f"off({ctx_t}, pdu_size)": cbpf.CTX_PDU_SIZE, f"off({ctx_t}, socket)": cbpf.CTX_PDU,
        f"off({ctx_t}, socket.family)": cbpf.CTX_SOCKET_FAMILY,
        f"off({ctx_t}, socket.type)": cbpf.CTX_SOCKET_TYPE,
        f"off({ctx_t}, socket.protocol)": cbpf.CTX_SOCKET_PROTOCOL,
        f"off({ctx_t}, open.flags)": cbpf.CTX_OPEN_FLAGS,
        f"off({ctx_t}, open.mode)": cbpf.CTX_OPEN_MODE,
        f"off({ctx_t}, open.resolve)": cbpf.CTX_OPEN_RESOLVE,
        f"sizeof({ctx_t})": cbpf.CTX_SIZE,
        f"sizeof((({ctx_t} *)0)->socket)": cbpf.PDU_SOCKET,
        f"sizeof((({ctx_t} *)0)->open)": cbpf.PDU_OPEN,
        "IO_URING_BPF_CMD_FILTER": cbpf.IO_URING_BPF_CMD_FILTER,
        "IO_URING_BPF_FILTER_DENY_REST": cbpf.IO_URING_BPF_FILTER_DENY_REST,
        "IO_URING_BPF_FILTER_SZ_STRICT": cbpf.IO_URING_BPF_FILTER_SZ_STRICT,
        "IORING_REGISTER_BPF_FILTER": 37, f"sizeof({bpf_t})": uapi.BPF.size,
    }
    facts.update({f"off({bpf_t}, filter.{m})": uapi.BPF.offsets["filter"] + off
                  for m, off in uapi.BPF_FILTER.offsets.items()})
    facts.update({f"IORING_OP_{name}": i for i, name in enumerate(opcodes.SQE_OPS)})
    flags = ["FIXED_FILE", "IO_DRAIN", "IO_LINK", "IO_HARDLINK", "ASYNC", "BUFFER_SELECT",
             "CQE_SKIP_SUCCESS"]
    facts.update({f"IOSQE_{f}_BIT": opcodes.SQE_FLAGS.index(f) for f in flags})
    _static_asserts(vmlinux_decls(("struct io_uring_bpf_ctx {", "struct io_uring_bpf_filter {",
                                   "struct io_uring_bpf {", "IORING_OP_NOP =",
                                   "IOSQE_FIXED_FILE_BIT =", "IO_URING_BPF_CMD_FILTER =",
                                   "IO_URING_BPF_FILTER_DENY_REST =",
                                   "IORING_REGISTER_BPF_FILTER =")),
                    facts, tmp_path, ("-target", "bpf"))


def vmlinux_decls(needles) -> str:
    """The top-level declarations of the vendored vmlinux.h that start with
    a needle or are enums holding it, word for word (the whole header takes minutes to parse under
    TCG, in the guests)."""
    text = pathlib.Path(REPO, "vmlinux", "arm64", "vmlinux.h").read_text()
    decls = re.findall(r"^(?:struct|enum|union)\b[^;{]*\{.*?^\};$", text, re.M | re.S)
    kept = [d for d in decls if any(d.startswith(n) or d.startswith("enum") and f"\t{n}" in d
                                    for n in needles)]
    types = "".join(f"typedef {c} {t};\n" for c, t in (
        ("unsigned char", "__u8"), ("unsigned short", "__u16"), ("unsigned int", "__u32"),
        ("unsigned long long", "__u64"), ("__u16", "__be16"), ("__u32", "__be32")))
    return types + "\n".join(kept) + "\n"
