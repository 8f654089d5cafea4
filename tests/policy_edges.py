"""Policies and operations at their edges, for the compiler agreement tests:
each allowed and denied opcode, SQE flag bit, open flag, mode bit, resolve
bit, socket family, type and protocol, connect family, port and address.
test_cbpf.py runs them through the compiled programs in an interpreter,
test_policy_kernel.py through the kernel (7.0+); both compare with the
offline decision of `policy check` (policy.decide).

An Operation is what the kernel's filter sees (opcode, SQE flags, Args)
and what `perform` needs to make the kernel see exactly that."""

from __future__ import annotations

import ctypes
import os
import socket
import struct
from typing import NamedTuple

import uring

from uringwatch.analysis.constraints import O_LARGEFILE, Args
from uringwatch.record.opcodes import SQE_OPS

OP = {name: i for i, name in enumerate(SQE_OPS)}
DRAIN, LINK, ASYNC = 1 << 1, 1 << 2, 1 << 4
PORT = 47913             # the loopback listener's port (perform's env)
AT_FDCWD = -100


class Operation(NamedTuple):
    label: str           # "+ ..." meant to be allowed, "- ..." denied
    op: str
    sqe_flags: int = 0
    args: Args | None = None
    path: str = "null"   # /dev/null, or a name in perform's env["dir"]

    @property
    def meant(self) -> bool:
        return self.label.startswith("+")


def _open(label, flags, mode=0, path="null", op="OPENAT", resolve=0):
    return Operation(label, op, 0, Args(open_flags=flags, open_mode=mode, open_resolve=resolve),
                     path)


def _sock(label, family, type_, proto=0):
    return Operation(label, "SOCKET", 0, Args(family=family, type=type_, protocol=proto))


def _conn(label, family, port=0, addr=None):
    return Operation(label, "CONNECT", 0, Args(family=family, port=port, v4_addr=addr))


def _nop(label, flags=0):
    return Operation(label, "NOP", flags)


RULE = "r"       # every rule's reason: the tests judge decisions, not prose
CASES = {
    "opcodes and SQE flags": (
        [{"op": "NOP", "reason": RULE, "constraints": {"sqe_flags_allowed": ["IO_LINK"]}}],
        [_nop("+ nop"), _nop("+ nop link", LINK), _nop("- nop drain", DRAIN),
         _nop("- nop async", ASYNC), _nop("- nop link|async", LINK | ASYNC),
         _open("- openat: opcode not allowed", os.O_RDONLY),
         _sock("- socket: opcode not allowed", socket.AF_UNIX, socket.SOCK_STREAM)]),
    "reads only": (
        [{"op": "OPENAT", "reason": RULE, "constraints": {
            "open_flags_allowed": ["O_CLOEXEC", "O_NONBLOCK"], "open_mode_allowed": 0}}],
        [_open("+ rdonly", os.O_RDONLY), _open("+ rdonly|cloexec", os.O_CLOEXEC),
         _open("+ cloexec|nonblock", os.O_CLOEXEC | os.O_NONBLOCK),
         _open("- wronly", os.O_WRONLY), _open("- rdwr", os.O_RDWR),
         _open("- creat|wronly", os.O_CREAT | os.O_WRONLY, 0o644, "created"),
         _open("- creat alone", os.O_CREAT, 0o600, "created"),
         _open("- directory", os.O_DIRECTORY, 0, "."), _open("- nofollow", os.O_NOFOLLOW),
         _open("- noatime", os.O_NOATIME), _open("- path", os.O_PATH),
         _open("- openat2: opcode not allowed", os.O_RDONLY, op="OPENAT2")]),
    "create with modes": (
        [{"op": "OPENAT", "reason": RULE, "constraints": {
            "open_flags_allowed": ["O_CREAT", "O_WRONLY"], "open_mode_allowed": 0o644}}],
        [_open("+ creat 0644", os.O_CREAT | os.O_WRONLY, 0o644, "created"),
         _open("+ creat 0600", os.O_CREAT | os.O_WRONLY, 0o600, "created"),
         _open("- creat 0755", os.O_CREAT | os.O_WRONLY, 0o755, "created"),
         _open("- creat 04644", os.O_CREAT | os.O_WRONLY, 0o4644, "created"),
         _open("- trunc", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644, "created"),
         _open("+ rdonly", os.O_RDONLY)]),
    "resolve beneath": (
        [{"op": "OPENAT2", "reason": RULE, "constraints": {
            "open_resolve_required": ["RESOLVE_BENEATH"]}}],
        [_open("+ beneath", 0, op="OPENAT2", resolve=0x08),
         _open("+ beneath|no_symlinks", 0, op="OPENAT2", resolve=0x0C),
         _open("- no resolve", 0, op="OPENAT2"),
         _open("- no_xdev", 0, op="OPENAT2", resolve=0x01),
         _open("- in_root", 0, op="OPENAT2", resolve=0x10)]),
    "sockets": (
        [{"op": "SOCKET", "reason": RULE, "constraints": {
            "socket_families": ["AF_UNIX", "AF_INET6"], "socket_types": ["SOCK_STREAM"],
            "socket_protocols": [0]}}],
        [_sock("+ unix stream", socket.AF_UNIX, socket.SOCK_STREAM),
         _sock("+ inet6 stream", socket.AF_INET6, socket.SOCK_STREAM),
         _sock("+ unix stream cloexec|nonblock", socket.AF_UNIX,
               socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK),
         _sock("- inet stream", socket.AF_INET, socket.SOCK_STREAM),
         _sock("- unix dgram", socket.AF_UNIX, socket.SOCK_DGRAM),
         _sock("- inet6 stream tcp", socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP),
         _sock("- netlink", socket.AF_NETLINK, socket.SOCK_RAW)]),
    "connects": (
        [{"op": "CONNECT", "reason": RULE, "constraints": {
            "connect_families": ["AF_INET", "AF_UNIX"], "connect_ports": [PORT],
            "connect_v4_addrs": ["127.0.0.1"]}}],
        [_conn("+ inet listener", socket.AF_INET, PORT, "127.0.0.1"),
         _conn("- inet next port", socket.AF_INET, PORT + 1, "127.0.0.1"),
         _conn("- inet port byte-swapped", socket.AF_INET,
               int.from_bytes(PORT.to_bytes(2, "little"), "big"), "127.0.0.1"),
         _conn("- inet other address", socket.AF_INET, PORT, "127.0.0.2"),
         _conn("+ unix", socket.AF_UNIX),
         _conn("- inet6", socket.AF_INET6, PORT)]),
}


def policy_doc(sqe_ops: list[dict]) -> dict:
    """A policy document allowing sqe_ops and nothing else."""
    return {"kind": "uringwatch-policy", "version": 1, "generated": "", "recordings": [],
            "scope": {}, "register_ops": [], "sqe_ops": sqe_ops,
            "restrictions": {"register_ops": [], "sqe_ops": [], "sqe_flags_allowed": [],
                             "sqe_flags_required": [], "note": ""},
            "sysctl": {"io_uring_disabled": 2, "io_uring_group": -1, "users": [], "reason": ""},
            "seccomp": {"containers": [], "syscalls": [], "reason": ""}}


def context(o: Operation) -> bytes:
    """struct io_uring_bpf_ctx as the kernel fills it for o (bpf_filter.c
    and the ops' populate functions): open flags with O_LARGEFILE forced,
    port and address in network order, the rest zero."""
    a = o.args or Args()
    if o.op in ("OPENAT", "OPENAT2"):
        large = 0 if a.open_flags & os.O_PATH else O_LARGEFILE
        pdu = struct.pack("=QQQ", a.open_flags | large, a.open_mode, a.open_resolve)
    elif o.op == "SOCKET":
        pdu = struct.pack("=III", a.family, a.type, a.protocol)
    elif o.op == "CONNECT":
        addr = socket.inet_aton(a.v4_addr) if a.family == socket.AF_INET else \
            socket.inet_pton(socket.AF_INET6, "::1") if a.family == socket.AF_INET6 else b""
        pdu = struct.pack("=I", a.family) + struct.pack(">H", a.port) + b"\0\0" + addr
    else:
        pdu = b""
    return struct.pack("=QBBB5x", 1, OP[o.op], o.sqe_flags, len(pdu)) + pdu.ljust(24, b"\0")


def perform(ring, o: Operation, env: dict) -> int:
    """Submit o on ring, its CQE's result. env: "dir" a directory for files
    made and opened, "devfd" an O_PATH fd of /dev and "dirfd" of "dir"
    (OPENAT2 opens below them), "unix" a listening Unix socket's path; a
    TCP listener on 127.0.0.1:PORT."""
    keep = []
    a = o.args or Args()
    sqe = {"flags": o.sqe_flags}
    if o.op in ("OPENAT", "OPENAT2"):
        path = os.path.join("/dev" if o.path == "null" else env["dir"], o.path)
        if o.op == "OPENAT":
            keep.append(ctypes.create_string_buffer(path.encode()))
            sqe.update(fd=AT_FDCWD, length=a.open_mode, op_flags=a.open_flags)
        else:           # struct open_how {u64 flags, mode, resolve}, a path below dirfd
            keep.append(ctypes.create_string_buffer(o.path.encode()))
            how = ctypes.create_string_buffer(struct.pack("=QQQ", a.open_flags, a.open_mode,
                                                          a.open_resolve))
            keep.append(how)
            sqe.update(fd=env["devfd"] if o.path == "null" else env["dirfd"],
                       off=ctypes.addressof(how), length=24)
        sqe["addr"] = ctypes.addressof(keep[0])
    elif o.op == "SOCKET":
        sqe.update(fd=a.family, off=a.type, length=a.protocol)
    elif o.op == "CONNECT":
        # the filter sees the address, not the socket: an AF_INET one serves
        # the AF_INET6 address too (IPv6 may be off in a guest)
        s = socket.socket(socket.AF_UNIX if a.family == socket.AF_UNIX else socket.AF_INET)
        keep.append(s)
        if a.family == socket.AF_UNIX:
            raw = struct.pack("=H", a.family) + env["unix"].encode() + b"\0"
        elif a.family == socket.AF_INET:
            raw = uring.sockaddr_in(a.port, a.v4_addr).raw
        else:
            raw = struct.pack("=H", a.family) + struct.pack(">HI", a.port, 0) + \
                socket.inet_pton(socket.AF_INET6, "::1") + bytes(4)
        addr = ctypes.create_string_buffer(raw, len(raw))
        keep.append(addr)
        sqe.update(fd=s.fileno(), addr=ctypes.addressof(addr), off=len(raw))
    ring.put(0, OP[o.op], **sqe)
    res = ring.submit(1)
    if o.op in ("OPENAT", "OPENAT2", "SOCKET") and res >= 0:
        os.close(res)
    return res
