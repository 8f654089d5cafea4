"""A process for tests/test_export.py's two hosts: prints its pid, waits
for a line on stdin, does what argv names, prints "done".

  personality  registers a personality as root (a root one, where it runs)
  same-page    registers four iovecs over one page (a finding)
  handoff      a forked child submits NOPs to the ring this process made
"""

import ctypes
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import uring  # noqa: E402


def personality(r):
    assert uring.register(r.fd, uring.REGISTER_PERSONALITY, None, 0) > 0


def same_page(r):
    page = ctypes.create_string_buffer(8192)
    base = (ctypes.addressof(page) + 4095) & ~4095
    iovs = (uring.Iovec * 4)(*[uring.Iovec(base, 4096)] * 4)
    assert uring.register(r.fd, uring.REGISTER_BUFFERS, iovs, 4) == 0


def handoff(r):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ring = uring.Ring.attach(r.fd, r)
            ring.put(0, uring.OP_NOP)
            ring.submit(1)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


print(os.getpid(), flush=True)
sys.stdin.readline()
ring = uring.Ring(8)
for what in sys.argv[1:]:
    {"personality": personality, "same-page": same_page, "handoff": handoff}[what](ring)
print("done", flush=True)
sys.stdin.readline()        # the ring stays open until the recording is stopped
