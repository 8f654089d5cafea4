"""A workload for tests/test_containers.py, in a container or on the host:
takes the command name given (so a tracer can filter on it), says who it
is in its own namespaces (pid, hostname), then on a line on stdin sets up
a ring and makes one io_uring_register call (opcode 9999), and says done."""

import ctypes
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import uring  # noqa: E402

PR_SET_NAME = 15
ctypes.CDLL(None).prctl(PR_SET_NAME, sys.argv[1].encode(), 0, 0, 0)
print(os.getpid(), socket.gethostname(), flush=True)
sys.stdin.readline()
ring = uring.setup()
uring.register(ring, 9999, None, 0)
print("done", flush=True)
