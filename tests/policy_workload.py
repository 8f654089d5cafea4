"""A small io_uring workload for tests/test_policy.py and
test_policy_kernel.py, on raw io_uring calls (tests/uring.py; Debian's
liburing has no SOCKET or OPENAT2 helpers): registers a file, then a NOP and
a fixed-file READ; `extra` adds an OPENAT, `socket` a SOCKET of AF_UNIX
and one of AF_INET; `reads` an OPENAT of /dev/null for reading and a SOCKET
of AF_UNIX, `forbidden` those and an OPENAT with O_CREAT of argv[3] and a
SOCKET of AF_INET; with listening ports after those (`reads PORT`,
`forbidden TARGET PORT OTHER`), a CONNECT to 127.0.0.1 at each (`CONNECT`,
`CONNECT_OTHER_PORT`). Names itself (comm) as argv[1], prints each
operation's result as JSON."""

import ctypes
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import uring  # noqa: E402

PR_SET_NAME = 15
OP_OPENAT, OP_SOCKET = 18, 45
AT_FDCWD = -100


def connect(ring, port: int) -> int:
    """A CONNECT through the ring of a socket made by socket(2) (the
    SOCKET operation of AF_INET is a forbidden action of its own)."""
    with socket.socket(socket.AF_INET) as s:
        addr = uring.sockaddr_in(port)
        ring.put(0, uring.OP_CONNECT, fd=s.fileno(), addr=ctypes.addressof(addr), off=len(addr))
        return ring.submit(1)


def main(comm: str, extra: bool, sockets: bool, reads: bool = False,
         forbidden: str | None = None, ports: list[int] = ()) -> dict:
    ctypes.CDLL(None).prctl(PR_SET_NAME, comm.encode(), 0, 0, 0)
    ring = uring.Ring(8)
    zero = os.open("/dev/zero", os.O_RDONLY)
    fds = uring.ints(zero)
    assert uring.register(ring.fd, uring.REGISTER_FILES, fds, 1) == 0
    buf = ctypes.create_string_buffer(64)
    results = {}
    ring.put(0, uring.OP_NOP)
    results["NOP"] = ring.submit(1)
    ring.put(0, uring.OP_READ, fd=0, addr=ctypes.addressof(buf), length=64,
             flags=uring.SQE_FIXED_FILE)
    results["READ"] = ring.submit(1)
    if extra:
        path = ctypes.create_string_buffer(b"/dev/null")
        ring.put(0, OP_OPENAT, fd=AT_FDCWD, addr=ctypes.addressof(path))
        results["OPENAT"] = ring.submit(1)
    if sockets:
        for name, family in (("SOCKET_UNIX", socket.AF_UNIX), ("SOCKET_INET", socket.AF_INET)):
            ring.put(0, OP_SOCKET, fd=family, off=socket.SOCK_STREAM)
            results[name] = ring.submit(1)
    if reads or forbidden:
        opens = [("OPENAT_RDONLY", b"/dev/null", os.O_RDONLY | os.O_CLOEXEC, 0)]
        socks = [("SOCKET_UNIX", socket.AF_UNIX)]
        if forbidden:
            opens.append(("OPENAT_CREAT", forbidden.encode(), os.O_CREAT | os.O_WRONLY, 0o600))
            socks.append(("SOCKET_INET", socket.AF_INET))
        for name, path, flags, mode in opens:
            buf = ctypes.create_string_buffer(path)
            ring.put(0, OP_OPENAT, fd=AT_FDCWD, addr=ctypes.addressof(buf), length=mode,
                     op_flags=flags)
            results[name] = ring.submit(1)
        for name, family in socks:
            ring.put(0, OP_SOCKET, fd=family, off=socket.SOCK_STREAM)
            results[name] = ring.submit(1)
        for name, port in zip(("CONNECT", "CONNECT_OTHER_PORT"), ports):
            results[name] = connect(ring, port)
    ring.close()
    return results          # what the ring opened closes at exit


if __name__ == "__main__":
    mode = sys.argv[2:3]
    forbid = sys.argv[3] if mode == ["forbidden"] else None
    ports = [int(p) for p in sys.argv[4 if forbid else 3:]]
    print(json.dumps(main(sys.argv[1], mode == ["extra"], mode == ["socket"],
                          mode == ["reads"], forbid, ports)))
