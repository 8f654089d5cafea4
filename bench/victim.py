#!/usr/bin/env python3
"""The victim of a flood, for bench/run.py: a process that makes ordinary,
distinct registrations (REGISTER_FILES of a growing array, then
UNREGISTER_FILES) every 0.1 s, while another process floods. Every one of
its calls should be reported.

    victim.py SECONDS

Prints its pid, waits for a line on stdin, runs, prints one JSON line:
{"register_calls": N}. SIGINT or SIGTERM ends it early.
"""

import ctypes
import json
import os
import signal
import sys
import time

NR_SETUP, NR_REGISTER = 425, 427
REGISTER_FILES, UNREGISTER_FILES = 2, 3
MAX_FDS = 64

libc = ctypes.CDLL(None, use_errno=True)
stopping = False


def _stop(signum, frame):
    global stopping
    stopping = True


def register(ring: int, opcode: int, arg, nr: int) -> int:
    return libc.syscall(ctypes.c_long(NR_REGISTER), ctypes.c_int(ring), ctypes.c_uint(opcode),
                        arg, ctypes.c_uint(nr))


def main() -> None:
    seconds = float(sys.argv[1])
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(os.getpid(), flush=True)
    sys.stdin.readline()
    params = (ctypes.c_uint32 * 30)()
    ring = libc.syscall(ctypes.c_long(NR_SETUP), ctypes.c_uint(8), params)
    fds = (ctypes.c_int32 * MAX_FDS)(*([0] * MAX_FDS))
    calls, i = 0, 0
    deadline = time.monotonic() + seconds
    while not stopping and time.monotonic() < deadline:
        n = i % MAX_FDS + 1
        register(ring, REGISTER_FILES, fds, n)
        register(ring, UNREGISTER_FILES, None, 0)
        calls += 2
        i += 1
        time.sleep(0.1)
    print(json.dumps({"register_calls": calls}), flush=True)


if __name__ == "__main__":
    main()
