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
# connect (7.2; not in 7.0): family, port and address in network order
CTX_CONNECT_FAMILY, CTX_CONNECT_PORT, CTX_CONNECT_V4 = 16, 20, 24
CTX_SIZE = 40
PDU_SOCKET, PDU_OPEN, PDU_CONNECT = 12, 24, 24
AF_INET, AF_INET6 = 2, 10

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
    """What one opcode's filter checks; None: no check of that kind.
    constraints.py gives each its meaning and names."""
    opcode: int
    sqe_flags_allowed: int | None = None   # IOSQE_* bits an SQE may set
    open_flags_denied: int | None = None   # O_* bits an open may not set
    socket_families: tuple[int, ...] | None = None   # AF_* a socket may use
    open_flags_allowed: int | None = None  # O_* bits an open may set, no other
    open_mode_allowed: int | None = None   # mode bits an open may set, no other
    open_resolve_required: int | None = None   # RESOLVE_* bits an open must set
    socket_types: tuple[int, ...] | None = None   # type & 0xf
    socket_protocols: tuple[int, ...] | None = None
    connect_families: tuple[int, ...] | None = None
    connect_ports: tuple[int, ...] | None = None     # host order; AF_INET/AF_INET6 only
    connect_v4_addrs: tuple[int, ...] | None = None  # ipaddress ints; AF_INET only


def compile_rule(rule: Rule) -> tuple[list[Insn], int]:
    """The program for one opcode and the pdu_size it needs (0: it reads only
    the fixed head). Checks run in order; each jumps to the final deny."""
    checks: list[list[Insn]] = []
    pdu = 0
    if rule.sqe_flags_allowed is not None:
        bad = ~rule.sqe_flags_allowed & 0xFF
        checks.append([load_word(CTX_OPCODE),
                       jump(BPF_JMP | BPF_JSET | BPF_K, bad << sqe_flags_shift(), DENY_LABEL, 0)])
    opens = [_bits_set(CTX_OPEN_FLAGS, rule.open_flags_denied, low_only=True),
             _bits_set(CTX_OPEN_FLAGS, _outside(rule.open_flags_allowed)),
             _bits_set(CTX_OPEN_MODE, _outside(rule.open_mode_allowed)),
             _bits_clear(CTX_OPEN_RESOLVE, rule.open_resolve_required)]
    socks = [_one_of(CTX_SOCKET_FAMILY, rule.socket_families),
             _one_of(CTX_SOCKET_TYPE, rule.socket_types, 0xF),
             _one_of(CTX_SOCKET_PROTOCOL, rule.socket_protocols)]
    conns = [_one_of(CTX_CONNECT_FAMILY, rule.connect_families), _connect_dest(rule)]
    for blocks, size in ((opens, PDU_OPEN), (socks, PDU_SOCKET), (conns, PDU_CONNECT)):
        if any(blocks):
            checks += [b for b in blocks if b]
            pdu = max(pdu, size)
    body = [insn for block in checks for insn in block]
    prog = _resolve(body + [stmt(BPF_RET | BPF_K, ALLOW)]) + [stmt(BPF_RET | BPF_K, DENY)] \
        if checks else [stmt(BPF_RET | BPF_K, ALLOW)]
    return prog, pdu


def _outside(allowed: int | None) -> int | None:
    return None if allowed is None else ~allowed & 0xFFFFFFFF


def _bits_set(off: int, bits: int | None, low_only: bool = False) -> list[Insn]:
    """Deny when the u64 at off has any of bits (low word) set, or, unless
    low_only, any bit of its high word (no flag, mode or resolve lives there)."""
    if bits is None:
        return []
    block = [load_word(low_word(off)), jump(BPF_JMP | BPF_JSET | BPF_K, bits, DENY_LABEL, 0)]
    if not low_only:
        block += [load_word(off + 4 if LITTLE else off),
                  jump(BPF_JMP | BPF_JSET | BPF_K, 0xFFFFFFFF, DENY_LABEL, 0)]
    return block


def _bits_clear(off: int, bits: int | None) -> list[Insn]:
    """Deny unless every one of bits is set in the u64 at off."""
    if not bits:
        return []
    return [load_word(low_word(off)), stmt(BPF_ALU | BPF_AND | BPF_K, bits),
            jump(BPF_JMP | BPF_JEQ | BPF_K, bits, 0, DENY_LABEL)]


def _one_of(off: int, values, mask: int | None = None) -> list[Insn]:
    """Deny unless the word at off (masked) is one of values; a match skips
    the remaining compares and the jump to deny."""
    if values is None:
        return []
    vals = list(values)
    block = [load_word(off)] + ([stmt(BPF_ALU | BPF_AND | BPF_K, mask)] if mask else [])
    block += [jump(BPF_JMP | BPF_JEQ | BPF_K, v, len(vals) - i, 0) for i, v in enumerate(vals)]
    return block + [stmt(BPF_JMP | BPF_JA, DENY_LABEL)]


def port_word(port: int) -> tuple[int, int]:
    """(mask, value) of a port in the word loaded at CTX_CONNECT_PORT: a
    big-endian u16 followed by two pad bytes."""
    value = int.from_bytes(port.to_bytes(2, "big") + b"\0\0", sys.byteorder)
    return (0xFFFF if LITTLE else 0xFFFF0000), value


def v4_word(addr: int) -> int:
    """An IPv4 address (ipaddress int) as loaded from CTX_CONNECT_V4."""
    return int.from_bytes(addr.to_bytes(4, "big"), sys.byteorder)


def _connect_dest(rule: Rule) -> list[Insn]:
    """Ports for AF_INET and AF_INET6, addresses for AF_INET; other
    families skip both (the kernel shows them no port or address)."""
    if rule.connect_ports is None and rule.connect_v4_addrs is None:
        return []
    mask = port_word(0)[0]
    ports = _one_of(CTX_CONNECT_PORT, None if rule.connect_ports is None else
                    [port_word(p)[1] for p in rule.connect_ports], mask)
    addrs = _one_of(CTX_CONNECT_V4, None if rule.connect_v4_addrs is None else
                    [v4_word(a) for a in rule.connect_v4_addrs])
    if addrs:       # only for AF_INET: AF_INET6 skips it
        addrs = [load_word(CTX_CONNECT_FAMILY),
                 jump(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 0, len(addrs))] + addrs
    rest = ports + addrs
    return [load_word(CTX_CONNECT_FAMILY),
            jump(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 1, 0),
            jump(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 0, len(rest))] + rest


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
           CTX_SOCKET_FAMILY: "socket.family / open.flags / connect.family",
           CTX_SOCKET_TYPE: "socket.type / open.flags (high) / connect.port",
           CTX_SOCKET_PROTOCOL: "socket.protocol / open.mode / connect.v4_addr",
           28: "open.mode (high)", CTX_OPEN_RESOLVE: "open.resolve", 36: "open.resolve (high)"}
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
    if code == BPF_ALU | BPF_AND | BPF_K:
        return f"{'and':<8} #{k:#x}"
    if code == BPF_JMP | BPF_JA:
        return f"{'ja':<8} {i + 1 + k}"
    if code & 0x07 == BPF_JMP and code & 0xF0 in _JUMPS and not code & BPF_X:
        return (f"{_JUMPS[code & 0xF0]:<8} #{k:#x}{'':<6} jt {i + 1 + insn.jt} "
                f"jf {i + 1 + insn.jf}")
    return f"{'.word':<8} code={code:#06x} jt={insn.jt} jf={insn.jf} k={k:#x}"
