"""The cBPF compiler of io_uring policies, with no kernel: its programs run
by a reference interpreter, and every constant it uses compiled against
the kernel's own headers (linux/filter.h, the vendored 7.2 vmlinux.h)."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from helpers import REPO
from policy_edges import CASES as EDGE_CASES

def run_cbpf(prog, ctx: bytes) -> int:
    """A classic BPF interpreter for the instructions cbpf emits."""
    from uringwatch.analysis import cbpf
    a, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == cbpf.BPF_LD | cbpf.BPF_W | cbpf.BPF_ABS:
            a = int.from_bytes(ctx[k:k + 4], sys.byteorder)
        elif code == cbpf.BPF_RET | cbpf.BPF_K:
            return k
        elif code == cbpf.BPF_ALU | cbpf.BPF_AND | cbpf.BPF_K:
            a &= k
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
    from uringwatch.analysis import cbpf
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


def policy_of(sqe_ops):
    import msgspec
    from policy_edges import policy_doc
    from uringwatch.analysis.policy import Policy
    return msgspec.convert(policy_doc(sqe_ops), Policy)


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_compiled_programs_and_offline_decisions_agree_at_the_edges(case):
    """Each operation of the case, through the compiled filters (an opcode
    without one denied, as DENY_REST does) and through `policy check`'s
    decision: the same verdict, and the one the case means."""
    from policy_edges import OP, context
    from uringwatch.analysis import confine, policy
    sqe_ops, ops = EDGE_CASES[case]
    pol = policy_of(sqe_ops)
    progs = {op: prog for op, prog, _ in confine.programs(pol)}
    allowed = policy.rules(pol)
    for o in ops:
        program = run_cbpf(progs[OP[o.op]], context(o)) != 0 if OP[o.op] in progs else False
        offline = policy.decide(allowed, OP[o.op], o.sqe_flags, o.args)
        assert (program, offline is None) == (o.meant, o.meant), (o.label, offline)


def test_constraint_on_arguments_the_context_lacks_is_refused(tmp_path):
    import json
    from policy_edges import policy_doc
    from uringwatch.analysis.policy import PolicyError, load
    for op, c in (("READ", {"open_flags_allowed": []}), ("OPENAT", {"socket_families": [1]}),
                  ("SOCKET", {"connect_ports": [80]}), ("SOCKET", {"socket_types": ["SOCK_X"]}),
                  ("CONNECT", {"connect_v4_addrs": ["1.2.3"]}),
                  ("CONNECT", {"connect_ports": [65536]}), ("OPENAT", {"open_mode_allowed": -1}),
                  ("NOP", {"sqe_flags_allowed": ["IO_NOTHING"]})):
        path = tmp_path / "p.json"
        path.write_text(json.dumps(policy_doc([{"op": op, "reason": "r", "constraints": c}])))
        with pytest.raises(PolicyError, match=f"^{path}: "):
            load(str(path))


def test_connect_port_and_address_words_are_network_order():
    """The kernel copies sin_port and sin_addr as they are (big-endian) into
    the context: the compiled constants are those bytes read as a word."""
    from uringwatch.analysis import cbpf
    mask, word = cbpf.port_word(443)
    assert (word & mask).to_bytes(4, sys.byteorder)[:2] == b"\x01\xbb"
    assert cbpf.v4_word(0x7F000001).to_bytes(4, sys.byteorder) == bytes([127, 0, 0, 1])


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
    from uringwatch.analysis import cbpf
    names = ["BPF_LD", "BPF_LDX", "BPF_ST", "BPF_STX", "BPF_ALU", "BPF_JMP", "BPF_RET",
             "BPF_MISC", "BPF_W", "BPF_ABS", "BPF_AND", "BPF_RSH", "BPF_JA", "BPF_JEQ",
             "BPF_JGT", "BPF_JGE", "BPF_JSET", "BPF_K", "BPF_X", "BPF_A", "BPF_MAXINSNS"]
    facts = {n: getattr(cbpf, n) for n in names}
    facts["sizeof(struct sock_filter)"] = cbpf.SOCK_FILTER.size
    _static_asserts("#include <linux/filter.h>\n", facts, tmp_path)


def test_filter_context_and_structs_are_the_kernels(tmp_path):
    """Against the vendored 7.2 vmlinux.h (vmlinux/arm64/: plain uapi
    structs, the same on x86_64)."""
    from uringwatch.analysis import cbpf
    from uringwatch.record import opcodes, uapi
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
        f"off({ctx_t}, connect.family)": cbpf.CTX_CONNECT_FAMILY,
        f"off({ctx_t}, connect.port)": cbpf.CTX_CONNECT_PORT,
        f"off({ctx_t}, connect.v4_addr)": cbpf.CTX_CONNECT_V4,
        f"sizeof((({ctx_t} *)0)->connect)": cbpf.PDU_CONNECT,
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


def test_the_filter_argument_is_laid_out_as_the_kernel_reads_it():
    """What REGISTER_BPF_FILTER is handed, read back by member name through
    the layouts generated from BTF (the kernels that take it are 7.0+:
    this runs on every host)."""
    import ctypes
    from uringwatch.analysis import cbpf, confine
    from uringwatch.record import uapi
    prog = [cbpf.Insn(0x06, 0, 0, 1)]
    arg, code = confine._filter_arg(18, prog, 8, cbpf.IO_URING_BPF_FILTER_DENY_REST)
    head = uapi.BPF.unpack(arg.raw)
    f = uapi.BPF_FILTER.unpack(arg.raw, uapi.BPF.offsets["filter"])
    assert len(arg.raw) == uapi.BPF.size and head["cmd_type"] == cbpf.IO_URING_BPF_CMD_FILTER
    assert (f["opcode"], f["flags"], f["filter_len"], f["pdu_size"], f["filter_ptr"]) == \
        (18, cbpf.IO_URING_BPF_FILTER_DENY_REST, 1, 8, ctypes.addressof(code))
    assert not any(f["resv2"]) and f["resv"] == bytes(3)
