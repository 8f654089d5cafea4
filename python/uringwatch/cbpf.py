"""Classic BPF for io_uring's per-operation filters (IORING_REGISTER_BPF_FILTER,
Linux 7.0+): the instruction encoding, the context the filters read, a
compiler from a policy rule to a program, and a disassembler.

The kernel runs a filter per SQE with a `struct io_uring_bpf_ctx` as its
only data; a return of 0 denies the operation (its CQE gets -EACCES),
anything else allows it (io_uring/bpf_filter.c). Loads are 32-bit, aligned,
inside the context, in the machine's byte order (the kernel rewrites them
to context loads, as for seccomp). tests/test_policy.py checks every
constant here against linux/filter.h and the vendored vmlinux.h."""

from __future__ import annotations

import struct
import sys
from typing import NamedTuple

# include/uapi/linux/bpf_common.h, linux/filter.h
BPF_LD, BPF_LDX, BPF_ST, BPF_STX = 0x00, 0x01, 0x02, 0x03
BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = 0x04, 0x05, 0x06, 0x07
BPF_W, BPF_ABS = 0x00, 0x20
BPF_AND, BPF_RSH = 0x50, 0x70
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_K, BPF_X, BPF_A = 0x00, 0x08, 0x10
BPF_MAXINSNS = 4096

# include/uapi/linux/io_uring/bpf_filter.h
IO_URING_BPF_CMD_FILTER = 1
IO_URING_BPF_FILTER_DENY_REST = 1
IO_URING_BPF_FILTER_SZ_STRICT = 2

# struct io_uring_bpf_ctx: a fixed head, then a per-opcode union (the "pdu")
# whose size the kernel reports as pdu_size
CTX_USER_DATA, CTX_OPCODE, CTX_SQE_FLAGS, CTX_PDU_SIZE = 0, 8, 9, 10
CTX_PDU = 16
CTX_SOCKET_FAMILY, CTX_SOCKET_TYPE, CTX_SOCKET_PROTOCOL = 16, 20, 24   # socket: 3 x u32
CTX_OPEN_FLAGS, CTX_OPEN_MODE, CTX_OPEN_RESOLVE = 16, 24, 32          # open: 3 x u64
CTX_SIZE = 40
PDU_SOCKET, PDU_OPEN = 12, 24

ALLOW, DENY = 1, 0
LITTLE = sys.byteorder == "little"


class Insn(NamedTuple):
    """struct sock_filter."""
    code: int
    jt: int
    jf: int
    k: int


SOCK_FILTER = struct.Struct("=HBBI")


def stmt(code: int, k: int = 0) -> Insn:
    return Insn(code, 0, 0, k)


def jump(code: int, k: int, jt: int, jf: int) -> Insn:
    return Insn(code, jt, jf, k)


def load_word(off: int) -> Insn:
    """The 32-bit context word at off (aligned, inside the context)."""
    if off % 4 or not 0 <= off < CTX_SIZE:
        raise ValueError(f"context load at {off}: the kernel takes aligned words below {CTX_SIZE}")
    return stmt(BPF_LD | BPF_W | BPF_ABS, off)


def low_word(off: int) -> int:
    """Offset of the low 32 bits of the u64 at off."""
    return off if LITTLE else off + 4


def sqe_flags_shift() -> int:
    """Where sqe_flags (byte 9) sits in the word loaded from offset 8."""
    return 8 if LITTLE else 16


class Rule(NamedTuple):
    """What one opcode's filter checks; None: no check of that kind."""
    opcode: int
    sqe_flags_allowed: int | None = None   # IOSQE_* bits an SQE may set
    open_flags_denied: int | None = None   # O_* bits an open may not set
    socket_families: tuple[int, ...] | None = None   # AF_* a socket may use


def compile_rule(rule: Rule) -> tuple[list[Insn], int]:
    """The program for one opcode and the pdu_size it needs (0: it reads only
    the fixed head). Checks run in order; each jumps to the final deny."""
    checks: list[list[Insn]] = []
    pdu = 0
    if rule.sqe_flags_allowed is not None:
        bad = ~rule.sqe_flags_allowed & 0xFF
        checks.append([load_word(CTX_OPCODE),
                       jump(BPF_JMP | BPF_JSET | BPF_K, bad << sqe_flags_shift(), DENY_LABEL, 0)])
    if rule.open_flags_denied is not None:
        checks.append([load_word(low_word(CTX_OPEN_FLAGS)),
                       jump(BPF_JMP | BPF_JSET | BPF_K, rule.open_flags_denied, DENY_LABEL, 0)])
        pdu = max(pdu, PDU_OPEN)
    if rule.socket_families is not None:
        fams = list(rule.socket_families)
        block = [load_word(CTX_SOCKET_FAMILY)]
        # a match skips the remaining compares and the jump to deny
        block += [jump(BPF_JMP | BPF_JEQ | BPF_K, f, len(fams) - i, 0) for i, f in enumerate(fams)]
        block.append(stmt(BPF_JMP | BPF_JA, DENY_LABEL))
        checks.append(block)
        pdu = max(pdu, PDU_SOCKET)
    body = [insn for block in checks for insn in block]
    prog = _resolve(body + [stmt(BPF_RET | BPF_K, ALLOW)]) + [stmt(BPF_RET | BPF_K, DENY)] \
        if checks else [stmt(BPF_RET | BPF_K, ALLOW)]
    return prog, pdu


DENY_LABEL = -1     # a jump target placeholder: the program's last instruction


def _resolve(body: list[Insn]) -> list[Insn]:
    """Replace DENY_LABEL by the offset to the instruction after body."""
    out = []
    for i, insn in enumerate(body):
        to_deny = len(body) - i - 1
        if insn.code == BPF_JMP | BPF_JA and insn.k == DENY_LABEL:
            insn = insn._replace(k=to_deny)
        elif insn.code & 0x07 == BPF_JMP:
            jt = to_deny if insn.jt == DENY_LABEL else insn.jt
            jf = to_deny if insn.jf == DENY_LABEL else insn.jf
            if max(jt, jf) > 255:
                raise ValueError("filter too long for a conditional jump (255 instructions)")
            insn = insn._replace(jt=jt, jf=jf)
        out.append(insn)
    return out


def deny_all() -> list[Insn]:
    return [stmt(BPF_RET | BPF_K, DENY)]


def pack(prog: list[Insn]) -> bytes:
    if not 0 < len(prog) <= BPF_MAXINSNS:
        raise ValueError(f"a filter has 1..{BPF_MAXINSNS} instructions, not {len(prog)}")
    return b"".join(SOCK_FILTER.pack(*insn) for insn in prog)


_FIELDS = {CTX_USER_DATA: "user_data", CTX_OPCODE: "opcode,sqe_flags,pdu_size",
           CTX_SOCKET_FAMILY: "socket.family / open.flags", CTX_SOCKET_TYPE: "socket.type",
           CTX_SOCKET_PROTOCOL: "socket.protocol / open.mode", CTX_OPEN_RESOLVE: "open.resolve"}
_JUMPS = {BPF_JEQ: "jeq", BPF_JGT: "jgt", BPF_JGE: "jge", BPF_JSET: "jset"}


def disassemble(prog: list[Insn]) -> list[str]:
    """One line per instruction, as `tcpdump -d` prints them, with targets
    as absolute instruction numbers."""
    return [f"({i:03d}) {_text(i, insn)}" for i, insn in enumerate(prog)]


def _text(i: int, insn: Insn) -> str:
    code, k = insn.code, insn.k
    if code == BPF_LD | BPF_W | BPF_ABS:
        return f"{'ld':<8} [{k}]{'':<12}; {_FIELDS.get(k, 'ctx')}"
    if code == BPF_RET | BPF_K:
        return f"{'ret':<8} #{k}{'':<12}; {'allow' if k else 'deny (-EACCES)'}"
    if code == BPF_JMP | BPF_JA:
        return f"{'ja':<8} {i + 1 + k}"
    if code & 0x07 == BPF_JMP and code & 0xF0 in _JUMPS and not code & BPF_X:
        return (f"{_JUMPS[code & 0xF0]:<8} #{k:#x}{'':<6} jt {i + 1 + insn.jt} "
                f"jf {i + 1 + insn.jf}")
    return f"{'.word':<8} code={code:#06x} jt={insn.jt} jf={insn.jf} k={k:#x}"
