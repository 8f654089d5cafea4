"""Run inside ci/wheel-chroot-test's bare Debian: make known
io_uring_register(2) calls, then check what uringwatch printed about them.
Standard library only: the chroot has python3 and nothing else.

    python3 chroot-calls.py call DIR    # write DIR/expected.json, wait for DIR/go, call
    python3 chroot-calls.py check DIR   # DIR/events.jsonl against DIR/expected.json
"""

import ctypes
import json
import os
import sys
import time
from ctypes import byref, c_int32, c_long, c_uint32

SYS_io_uring_setup, SYS_io_uring_register = 425, 427
REGISTER_FILES, UNREGISTER_FILES, REGISTER_EVENTFD, UNREGISTER_EVENTFD = 2, 3, 4, 5

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = c_long


def syscall(nr, *args):
    ret = libc.syscall(c_long(nr), *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syscall {nr}: {os.strerror(err)}")
    return ret


def register(ring, opcode, arg, nr):
    return syscall(SYS_io_uring_register, c_int32(ring), c_uint32(opcode), arg, c_uint32(nr))


def call(d):
    ring = syscall(SYS_io_uring_setup, c_uint32(8), (ctypes.c_uint8 * 120)())
    efd = os.eventfd(0)
    fds = (c_int32 * 3)(0, 1, -1)
    expected = {"pid": os.getpid(), "events": [
        {"opcode_name": "REGISTER_FILES", "nr_args": 3, "payload": {"fds": [0, 1, -1]}},
        {"opcode_name": "REGISTER_EVENTFD", "nr_args": 1, "payload": {"eventfd": efd}},
        {"opcode_name": "UNREGISTER_EVENTFD", "nr_args": 0, "payload": None},
        {"opcode_name": "UNREGISTER_FILES", "nr_args": 0, "payload": None},
    ]}
    for e in expected["events"]:
        e.update(fd=ring, ret=0, pid=os.getpid())
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f)
    # the go file appears once uringwatch has attached
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(d, "go")):
        if time.monotonic() > deadline:
            sys.exit("chroot-calls: no go file after 60 s")
        time.sleep(0.02)
    register(ring, REGISTER_FILES, byref(fds), 3)
    register(ring, REGISTER_EVENTFD, byref(c_int32(efd)), 1)
    register(ring, UNREGISTER_EVENTFD, None, 0)
    register(ring, UNREGISTER_FILES, None, 0)


def check(d):
    with open(os.path.join(d, "expected.json")) as f:
        expected = json.load(f)["events"]
    with open(os.path.join(d, "events.jsonl")) as f:
        seen = [json.loads(line) for line in f]
    if len(seen) != len(expected):
        sys.exit(f"chroot-calls: {len(seen)} events, expected {len(expected)}: {seen}")
    for want, got in zip(expected, seen):
        payload = got["payload"]
        if payload is not None:   # compare the decoded fields only
            payload = {k: payload[k] for k in (want["payload"] or {})}
        actual = {k: got[k] for k in want if k != "payload"} | {"payload": payload}
        if actual != want:
            sys.exit(f"chroot-calls: expected {want}\n  got {actual}")
        print(f"chroot-calls: ok {want['opcode_name']} fd={want['fd']} "
              f"payload={want['payload']}")


if __name__ == "__main__":
    {"call": call, "check": check}[sys.argv[1]](sys.argv[2])
