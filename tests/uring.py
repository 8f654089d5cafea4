"""Real io_uring syscalls for the tests, through ctypes (Debian's liburing
headers stop at opcode 25). The uapi structs here are written from the
kernel's documentation, independently of the package's own layouts."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
from socket import AF_INET, inet_aton
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


def sockaddr_in(port: int, host: str = "127.0.0.1") -> ctypes.Array:
    """A struct sockaddr_in for CONNECT/BIND SQEs: family in host order,
    port and address in network order."""
    raw = struct.pack("<H", AF_INET) + struct.pack(">H", port) + inet_aton(host) + bytes(8)
    return ctypes.create_string_buffer(raw, len(raw))


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


SYS_io_uring_enter = 426
SQE = struct.Struct("<BBHiQQIIQHHiQ8x")      # struct io_uring_sqe, 64 bytes
_OFF_SQ_RING, _OFF_CQ_RING, _OFF_SQES = 0, 0x8000000, 0x10000000
ENTER_GETEVENTS, ENTER_SQ_WAKEUP = 1, 2
SETUP_SQPOLL = 1 << 1
SQE_FIXED_FILE = 1 << 0
SQE_CQE_SKIP_SUCCESS = 1 << 6
OP_NOP, OP_READ_FIXED, OP_WRITE_FIXED, OP_READ = 0, 4, 5, 22
# the operations that name something outside the ring (tests/test_targets.py)
OP_CONNECT, OP_OPENAT, OP_CLOSE, OP_STATX, OP_WRITE, OP_OPENAT2 = 16, 18, 19, 21, 23, 28
OP_RENAMEAT, OP_UNLINKAT, OP_MKDIRAT, OP_SYMLINKAT, OP_LINKAT, OP_SOCKET = 35, 36, 37, 38, 39, 45
OP_BIND, OP_LISTEN = 56, 57
OP_SEND = 26      # a data op on a socket (tests/test_op_files.py)
OP_SENDMSG = 9
OP_SPLICE = 30
SPLICE_F_FD_IN_FIXED = 1 << 31
OP_MSG_RING = 40
OP_ACCEPT, OP_FSETXATTR, OP_SETXATTR, OP_FGETXATTR, OP_GETXATTR = 13, 41, 42, 43, 44
AT_FDCWD = -100


class Ring:
    """A ring that submits SQEs: io_uring_setup, its three mappings, and
    io_uring_enter. Completions are waited for and dropped."""

    def __init__(self, entries: int = 8, flags: int = 0, sq_thread_idle: int = 0):
        p = (ctypes.c_uint32 * 30)()
        p[2], p[4] = flags, sq_thread_idle
        self.fd = syscall(SYS_io_uring_setup, c_uint32(entries), p)
        assert self.fd >= 0, f"io_uring_setup failed: {os.strerror(-self.fd)}"
        self._map(list(p), flags)

    @classmethod
    def attach(cls, fd: int, like: "Ring") -> "Ring":
        """The ring behind fd (inherited, or taken with pidfd_getfd), mapped
        anew; `like` is the Ring whose setup made it."""
        ring = cls.__new__(cls)
        ring.fd = fd
        ring._map(like.params, like.params[2])
        return ring

    def _map(self, p: list[int], flags: int) -> None:
        self.params = p
        self.sq_entries, self.cq_entries = p[0], p[1]
        sq_off, cq_off = p[10:20], p[20:30]       # u32 words; user_addr spans two
        self._sq = mmap.mmap(self.fd, sq_off[6] + 4 * self.sq_entries,
                             offset=_OFF_SQ_RING)
        self._cq = mmap.mmap(self.fd, cq_off[5] + 16 * self.cq_entries,
                             offset=_OFF_CQ_RING)
        self._sqes = mmap.mmap(self.fd, 64 * self.sq_entries, offset=_OFF_SQES)
        self._sq_tail, self._sq_mask, self._sq_flags = sq_off[1], sq_off[2], sq_off[4]
        self._sq_array = sq_off[6]
        self._cq_head, self._cq_tail = cq_off[0], cq_off[1]
        self.sqpoll = bool(flags & SETUP_SQPOLL)
        for i in range(self.sq_entries):
            struct.pack_into("<I", self._sq, self._sq_array + 4 * i, i)

    def _u32(self, m, off: int) -> int:
        return struct.unpack_from("<I", m, off)[0]

    def put(self, i: int, opcode: int, fd: int = 0, addr: int = 0, length: int = 0,
            off: int = 0, flags: int = 0, buf_index: int = 0, personality: int = 0,
            user_data: int = 0, op_flags: int = 0, file_index: int = 0,
            addr3: int = 0) -> None:
        """Puts an SQE i places past the SQ tail (the next submit's i-th).
        off is also addr2; op_flags the opcode's flags (open_flags,
        unlink_flags, ...); file_index a direct descriptor's slot + 1."""
        i = (self._u32(self._sq, self._sq_tail) + i) & (self.sq_entries - 1)
        SQE.pack_into(self._sqes, 64 * i, opcode, flags, 0, fd, off, addr, length, op_flags,
                      user_data, buf_index, personality, file_index, addr3)

    def do(self, opcode: int, **sqe) -> int:
        """One SQE submitted and its result waited for."""
        self.put(0, opcode, **sqe)
        return self.submit(1)

    def submit(self, n: int, wait: int | None = None) -> int:
        """Submits the n SQEs put at slots 0..n-1; waits for n completions
        (or `wait`: fewer when some post none). Returns the first
        completion's result."""
        n_sub, n = n, n if wait is None else wait
        tail = self._u32(self._sq, self._sq_tail)
        cq_head = self._u32(self._cq, self._cq_head)
        struct.pack_into("<I", self._sq, self._sq_tail, (tail + n_sub) & 0xFFFFFFFF)
        flags = ENTER_GETEVENTS
        if self.sqpoll:
            flags |= ENTER_SQ_WAKEUP
            n_enter = 0
        else:
            n_enter = n_sub
        ret = syscall(SYS_io_uring_enter, c_uint32(self.fd), c_uint32(n_enter),
                      c_uint32(n), c_uint32(flags), None, ctypes.c_size_t(0))
        assert ret >= 0, f"io_uring_enter failed: {os.strerror(-ret)}"
        while (self._u32(self._cq, self._cq_tail) - cq_head) & 0xFFFFFFFF < n:
            syscall(SYS_io_uring_enter, c_uint32(self.fd), c_uint32(0), c_uint32(1),
                    c_uint32(ENTER_GETEVENTS | (ENTER_SQ_WAKEUP if self.sqpoll else 0)),
                    None, ctypes.c_size_t(0))
        res = struct.unpack_from("<i", self._cq, self._cq_off_cqes(cq_head))[0]
        struct.pack_into("<I", self._cq, self._cq_head, self._u32(self._cq, self._cq_tail))
        return res

    def _cq_off_cqes(self, head: int) -> int:
        mask = self.cq_entries - 1
        return self.params[25] + 16 * (head & mask) + 8

    def close(self) -> None:
        for m in (self._sq, self._cq, self._sqes):
            m.close()
        os.close(self.fd)
