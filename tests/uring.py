"""Real io_uring syscalls for the tests, through ctypes (Debian's liburing
headers stop at opcode 25). The uapi structs here are written from the
kernel's documentation, independently of the package's own layouts."""

from __future__ import annotations

import ctypes
import errno
import os
from ctypes import c_int32, c_uint8, c_uint16, c_uint32, c_uint64

SYS_io_uring_setup = 425
SYS_io_uring_register = 427

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def syscall(nr: int, *args) -> int:
    """The raw syscall: its result, or -errno."""
    ret = _libc.syscall(ctypes.c_long(nr), *args)
    return ret if ret >= 0 else -ctypes.get_errno()


# io_uring_register opcodes (IORING_REGISTER_*, in the uapi's order)
REGISTER_BUFFERS = 0
UNREGISTER_BUFFERS = 1
REGISTER_FILES = 2
UNREGISTER_FILES = 3
REGISTER_EVENTFD = 4
UNREGISTER_EVENTFD = 5
REGISTER_FILES_UPDATE = 6
REGISTER_EVENTFD_ASYNC = 7
REGISTER_PROBE = 8
REGISTER_PERSONALITY = 9
UNREGISTER_PERSONALITY = 10
REGISTER_RESTRICTIONS = 11
REGISTER_ENABLE_RINGS = 12
REGISTER_FILES2 = 13
REGISTER_FILES_UPDATE2 = 14
REGISTER_BUFFERS2 = 15
REGISTER_BUFFERS_UPDATE = 16
REGISTER_IOWQ_AFF = 17
UNREGISTER_IOWQ_AFF = 18
REGISTER_IOWQ_MAX_WORKERS = 19
REGISTER_RING_FDS = 20
UNREGISTER_RING_FDS = 21
REGISTER_PBUF_RING = 22
UNREGISTER_PBUF_RING = 23
REGISTER_SYNC_CANCEL = 24
REGISTER_FILE_ALLOC_RANGE = 25
REGISTER_PBUF_STATUS = 26
REGISTER_NAPI = 27
UNREGISTER_NAPI = 28
REGISTER_CLOCK = 29
REGISTER_CLONE_BUFFERS = 30
REGISTER_SEND_MSG_RING = 31
REGISTER_ZCRX_IFQ = 32
REGISTER_RESIZE_RINGS = 33
REGISTER_MEM_REGION = 34
REGISTER_QUERY = 35
REGISTER_ZCRX_CTRL = 36
REGISTER_BPF_FILTER = 37
USE_REGISTERED_RING = 1 << 31  # IORING_REGISTER_USE_REGISTERED_RING: fd is a ring index
NO_SUCH_OPCODE = 9999          # far beyond any kernel's last opcode: EINVAL

NEVER_OPEN = 0x7FFFFFFF        # no fd table gets this big (nr_open <= 2**30)


def register_opcodes() -> int:
    """How many register opcodes this kernel accepts (IORING_REGISTER_LAST),
    asked of the kernel: an opcode >= LAST is refused with EINVAL before the
    fd is looked up, a known opcode on a never-open fd gets EBADF. (Not fd
    -1: from 6.13 that selects the ring-less opcodes.)"""
    rets = [register(NEVER_OPEN, op, None, 0) for op in range(256)]
    last = rets.index(-errno.EINVAL) if -errno.EINVAL in rets else 0
    if not last or set(rets[:last]) != {-errno.EBADF} or set(rets[last:]) != {-errno.EINVAL}:
        raise RuntimeError(f"this kernel does not say which register opcodes it "
                           f"accepts (bad-fd results: {sorted(set(rets))})")
    return last


def setup(entries: int = 8) -> int:
    params = (ctypes.c_uint8 * 120)()
    fd = syscall(SYS_io_uring_setup, c_uint32(entries), params)
    assert fd >= 0, f"io_uring_setup failed: {os.strerror(-fd)}"
    return fd


def register(fd: int, opcode: int, arg, nr_args: int) -> int:
    """io_uring_register(fd, opcode, arg, nr_args); arg a ctypes object,
    an int address, or None."""
    if isinstance(arg, int):
        arg = ctypes.c_void_p(arg)
    elif arg is not None:
        arg = ctypes.byref(arg)
    return syscall(SYS_io_uring_register, c_int32(fd), c_uint32(opcode), arg,
                   c_uint32(nr_args))


def addr(obj) -> int:
    return ctypes.addressof(obj)


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", c_uint64), ("iov_len", c_uint64)]


class RsrcRegister(ctypes.Structure):
    _fields_ = [("nr", c_uint32), ("flags", c_uint32), ("resv2", c_uint64),
                ("data", c_uint64), ("tags", c_uint64)]


class RsrcUpdate2(ctypes.Structure):
    _fields_ = [("offset", c_uint32), ("resv", c_uint32), ("data", c_uint64),
                ("tags", c_uint64), ("nr", c_uint32), ("resv2", c_uint32)]


class RsrcUpdate(ctypes.Structure):
    _fields_ = [("offset", c_uint32), ("resv", c_uint32), ("data", c_uint64)]


class Restriction(ctypes.Structure):
    _fields_ = [("opcode", c_uint16), ("value", c_uint8), ("resv", c_uint8),
                ("resv2", c_uint32 * 3)]


class BufReg(ctypes.Structure):
    _fields_ = [("ring_addr", c_uint64), ("ring_entries", c_uint32), ("bgid", c_uint16),
                ("flags", c_uint16), ("min_left", c_uint32), ("resv", c_uint32 * 5)]


class BufStatus(ctypes.Structure):
    _fields_ = [("buf_group", c_uint32), ("head", c_uint32), ("resv", c_uint32 * 8)]


class FileIndexRange(ctypes.Structure):
    _fields_ = [("off", c_uint32), ("len", c_uint32), ("resv", c_uint64)]


class ClockRegister(ctypes.Structure):
    _fields_ = [("clockid", c_uint32), ("resv", c_uint32 * 3)]


class Napi(ctypes.Structure):
    _fields_ = [("busy_poll_to", c_uint32), ("prefer_busy_poll", c_uint8),
                ("opcode", c_uint8), ("pad", c_uint8 * 2), ("op_param", c_uint32),
                ("resv", c_uint32)]


class CloneBuffers(ctypes.Structure):
    _fields_ = [("src_fd", c_uint32), ("flags", c_uint32), ("src_off", c_uint32),
                ("dst_off", c_uint32), ("nr", c_uint32), ("pad", c_uint32 * 3)]


class SyncCancel(ctypes.Structure):
    _fields_ = [("addr", c_uint64), ("fd", c_int32), ("flags", c_uint32),
                ("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64),
                ("opcode", c_uint8), ("pad", c_uint8 * 7), ("pad2", c_uint64 * 3)]


class Probe(ctypes.Structure):
    _fields_ = [("last_op", c_uint8), ("ops_len", c_uint8), ("resv", c_uint16),
                ("resv2", c_uint32 * 3), ("ops", c_uint64 * 64)]


def ints(*values: int):
    return (c_int32 * len(values))(*values)
