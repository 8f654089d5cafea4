"""Confine a command to a policy: io_uring BPF filters on the task (Linux
7.0+), inherited by what it execs and forks. Every ring the command
creates afterwards runs each SQE through the filter of its opcode; an
opcode without one is denied (IO_URING_BPF_FILTER_DENY_REST)."""

from __future__ import annotations

import ctypes
import errno
import os

from . import cbpf
from ..record import opcodes, uapi
from .policy import Policy, rules

SYS_io_uring_register = 427
IORING_REGISTER_BPF_FILTER = 37
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class ConfineError(OSError):
    pass


def _register_task(arg) -> int:
    """io_uring_register(-1, IORING_REGISTER_BPF_FILTER, arg, 1): 0 or -errno."""
    ret = _libc.syscall(ctypes.c_long(SYS_io_uring_register), ctypes.c_int(-1),
                        ctypes.c_uint(IORING_REGISTER_BPF_FILTER), arg, ctypes.c_uint(1))
    return 0 if ret >= 0 else -ctypes.get_errno()


def unsupported() -> str | None:
    """Why this kernel takes no task filters (the probe's errno name), or
    None where it does. Asked without installing one: a NULL argument
    faults (EFAULT), or is refused for privileges (EACCES), where filters
    exist; elsewhere it is an unknown opcode (EINVAL: 6.12, 6.18), or fd -1
    a bad fd (EBADF) where the kernel has no ring-less register calls."""
    ret = _register_task(None)
    if ret in (-errno.EFAULT, -errno.EACCES):
        return None
    return errno.errorcode.get(-ret, str(ret))


def programs(policy: Policy) -> list[tuple[int, list[cbpf.Insn], int]]:
    """(opcode, program, pdu_size) for every allowed operation, in opcode
    order; a deny-all NOP filter when the policy allows none."""
    out = [(op, *cbpf.compile_rule(rule)) for op, rule in sorted(rules(policy).items())]
    return out or [(0, cbpf.deny_all(), 0)]


def _filter_arg(opcode: int, prog: list[cbpf.Insn], pdu: int, flags: int):
    code = ctypes.create_string_buffer(cbpf.pack(prog))
    raw = bytearray(uapi.BPF.pack(cmd_type=cbpf.IO_URING_BPF_CMD_FILTER))
    at = uapi.BPF.offsets["filter"]
    raw[at:at + uapi.BPF_FILTER.size] = uapi.BPF_FILTER.pack(
        opcode=opcode, flags=flags, filter_len=len(prog), pdu_size=pdu,
        filter_ptr=ctypes.addressof(code))
    return ctypes.create_string_buffer(bytes(raw), len(raw)), code


def apply(policy: Policy) -> int:
    """Set no_new_privs and register the policy's filters on this task;
    returns how many. DENY_REST goes with the last: it fills every opcode
    without a filter with a deny, and a filter added after it would be
    chained before that deny, denied whatever it returns."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise ConfineError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    progs = programs(policy)
    for i, (opcode, prog, pdu) in enumerate(progs):
        last = i == len(progs) - 1
        arg, code = _filter_arg(opcode, prog, pdu, cbpf.IO_URING_BPF_FILTER_DENY_REST * last)
        ret = _register_task(arg)
        if ret == -errno.EMSGSIZE:      # the kernel wrote back its own pdu_size
            has = arg.raw[uapi.BPF.offsets["filter"] + uapi.BPF_FILTER.offsets["pdu_size"]]
            raise ConfineError(-ret, f"IORING_OP_{opcodes.sqe_op_name(opcode)}: this kernel's "
                                     f"filter sees {has} bytes of its arguments, the policy's "
                                     f"constraints need {pdu} (remove them from its rule)")
        if ret < 0:
            raise ConfineError(-ret, f"IORING_REGISTER_BPF_FILTER for opcode {opcode}: "
                                     f"{os.strerror(-ret)}")
    return len(progs)
