"""IORING_REGISTER_* opcode numbers and names (include/uapi/linux/io_uring.h).

NAMES comes from registry.REGISTER and is checked, name and number,
against the opcode enums in the BPF object's BTF (tests/test_abi.py);
docs/ADDING_AN_OPCODE.md lists every place a new opcode goes."""

from . import registry

USE_REGISTERED_RING = 1 << 31

NAMES = tuple(r.name for r in registry.REGISTER)    # by number

BY_NAME = {name: op for op, name in enumerate(NAMES)}
# The short form users type: FILES for REGISTER_FILES.
BY_NAME.update({name.removeprefix("REGISTER_"): op for op, name in enumerate(NAMES)
                if name.startswith("REGISTER_")})


def name(opcode: int) -> str:
    """Name of an opcode without the USE_REGISTERED_RING bit."""
    op = opcode & ~USE_REGISTERED_RING
    return NAMES[op] if op < len(NAMES) else f"UNKNOWN_{op}"


def parse(text: str) -> int:
    """An opcode from a name (with or without REGISTER_) or a number."""
    key = text.strip().upper().removeprefix("IORING_")
    if key in BY_NAME:
        return BY_NAME[key]
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"unknown opcode {text!r}") from None

# enum io_uring_op, the one table of IORING_OP_* names (restrictions, probe
# results, Op events; checked against the object's BTF by tests/test_abi.py)
SQE_OPS = (
    "NOP READV WRITEV FSYNC READ_FIXED WRITE_FIXED POLL_ADD POLL_REMOVE "
    "SYNC_FILE_RANGE SENDMSG RECVMSG TIMEOUT TIMEOUT_REMOVE ACCEPT "
    "ASYNC_CANCEL LINK_TIMEOUT CONNECT FALLOCATE OPENAT CLOSE FILES_UPDATE "
    "STATX READ WRITE FADVISE MADVISE SEND RECV OPENAT2 EPOLL_CTL SPLICE "
    "PROVIDE_BUFFERS REMOVE_BUFFERS TEE SHUTDOWN RENAMEAT UNLINKAT MKDIRAT "
    "SYMLINKAT LINKAT MSG_RING FSETXATTR SETXATTR FGETXATTR GETXATTR SOCKET "
    "URING_CMD SEND_ZC SENDMSG_ZC READ_MULTISHOT WAITID FUTEX_WAIT FUTEX_WAKE "
    "FUTEX_WAITV FIXED_FD_INSTALL FTRUNCATE BIND LISTEN RECV_ZC EPOLL_WAIT "
    "READV_FIXED WRITEV_FIXED PIPE"
).split()

# IOSQE_* flag bits
SQE_FLAGS = ("FIXED_FILE", "IO_DRAIN", "IO_LINK", "IO_HARDLINK", "ASYNC",
             "BUFFER_SELECT", "CQE_SKIP_SUCCESS")

# enum io_uring_register_restriction_op
RESTRICTION_KINDS = ("REGISTER_OP", "SQE_OP", "SQE_FLAGS_ALLOWED",
                     "SQE_FLAGS_REQUIRED")


def sqe_op_name(op: int, unknown: str = "UNKNOWN_") -> str:
    """IORING_OP_* without its prefix; one past the table, `unknown` and
    the number (restrictions print UNKNOWN_n, Op events OP_n: both are in
    recorded JSON, so both stay)."""
    return SQE_OPS[op] if op < len(SQE_OPS) else f"{unknown}{op}"


def sqe_flag_names(flags: int) -> str:
    names = [n for bit, n in enumerate(SQE_FLAGS) if flags & (1 << bit)]
    rest = flags & ~((1 << len(SQE_FLAGS)) - 1)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"
