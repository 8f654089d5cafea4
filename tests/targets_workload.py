"""A process that acts only through its ring (tests/test_targets.py): it
opens and reads a file, makes a socket and connects it, creates, writes
and unlinks a file, renames, makes a directory and a symlink, and fails
an open, each as one SQE, no syscall naming a path or an address.

Its plan comes hex-encoded in argv[1] (JSON: dir, port) and its results go
out hex-encoded on stdout, so that a `strace -f` of it shows neither; it
prints its pid and waits for a byte on stdin before acting."""

import ctypes
import json
import os
import socket
import struct
import sys

import uring

O_CREAT, O_WRONLY, O_RDONLY = os.O_CREAT, os.O_WRONLY, os.O_RDONLY
RESOLVE_NO_SYMLINKS = 0x04


def cstr(text: str):
    return ctypes.create_string_buffer(text.encode())


def main() -> None:
    plan = json.loads(bytes.fromhex(sys.argv[1]))
    d, port = plan["dir"], plan["port"]
    print(os.getpid(), flush=True)
    sys.stdin.buffer.read(1)
    r = uring.Ring(16)
    keep, out = [], {}

    def path(name):
        b = cstr(f"{d}/{name}")
        keep.append(b)
        return ctypes.addressof(b)

    cwd = uring.AT_FDCWD
    buf = ctypes.create_string_buffer(64)
    fd = out["open"] = r.do(uring.OP_OPENAT, fd=cwd, addr=path("secret"), op_flags=O_RDONLY)
    out["read"] = r.do(uring.OP_READ, fd=fd, addr=ctypes.addressof(buf), length=64)
    r.do(uring.OP_CLOSE, fd=fd)
    s = out["socket"] = r.do(uring.OP_SOCKET, fd=socket.AF_INET, off=socket.SOCK_STREAM)
    sa = uring.sockaddr_in(port)
    out["connect"] = r.do(uring.OP_CONNECT, fd=s, addr=ctypes.addressof(sa), off=16)
    r.do(uring.OP_CLOSE, fd=s)
    w = out["create"] = r.do(uring.OP_OPENAT, fd=cwd, addr=path("new"),
                             op_flags=O_CREAT | O_WRONLY, length=0o600)
    out["write"] = r.do(uring.OP_WRITE, fd=w, addr=ctypes.addressof(buf), length=8)
    r.do(uring.OP_CLOSE, fd=w)
    out["unlink"] = r.do(uring.OP_UNLINKAT, fd=cwd, addr=path("new"))
    out["rename"] = r.do(uring.OP_RENAMEAT, fd=cwd, addr=path("a"), length=cwd & 0xFFFFFFFF,
                         off=path("b"))
    out["mkdir"] = r.do(uring.OP_MKDIRAT, fd=cwd, addr=path("dir"), length=0o700)
    out["symlink"] = r.do(uring.OP_SYMLINKAT, fd=cwd, addr=path("secret"), off=path("link"))
    out["missing"] = r.do(uring.OP_OPENAT, fd=cwd, addr=path("missing"), op_flags=O_RDONLY)
    how = ctypes.create_string_buffer(struct.pack("<QQQ", O_RDONLY, 0, RESOLVE_NO_SYMLINKS), 24)
    out["openat2"] = r.do(uring.OP_OPENAT2, fd=cwd, addr=path("link"), length=24,
                          off=ctypes.addressof(how))
    r.close()
    print(json.dumps(out).encode().hex(), flush=True)


if __name__ == "__main__":
    main()
