"""Run inside ci/arm64-proof's arm64 guest: trace known io_uring_register(2)
calls made here and a TOCTOU race, recording them, then check what
uringwatch printed and that replaying the recording prints the same.
Standard library only: the guest's python3 runs it; uringwatch is the
wheel's, installed in a venv.

    python3 arm64-calls.py DIR UWBIN     # writes DIR/live.jsonl, DIR/cap.uwd

The calls: files, buffers, eventfd, probe, an opcode no kernel knows, the
ring's own fd registered, a call through that registered index, and the
matching unregisters; then REGISTER_FILES of CALL fds while another thread
on another CPU flips one of them, until uringwatch flags the change. Then
three calls through each of the other two hooks (kprobes, raw_syscalls).
"""

import ctypes
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from ctypes import byref, c_int32, c_long, c_uint8, c_uint16, c_uint32, c_uint64

SYS_io_uring_setup, SYS_io_uring_register = 425, 427   # the same on arm64
(REGISTER_BUFFERS, UNREGISTER_BUFFERS, REGISTER_FILES, UNREGISTER_FILES,
 REGISTER_EVENTFD, UNREGISTER_EVENTFD) = 0, 1, 2, 3, 4, 5
REGISTER_PROBE, REGISTER_RING_FDS, UNREGISTER_RING_FDS = 8, 20, 21
USE_REGISTERED_RING = 1 << 31
NO_SUCH_OPCODE = 200
CAP = 1024            # elements captured and compared (uringwatch --cap)
CALL = 16384          # fds the racing call registers: a long copy
RACE_TRIES = 500
TIMEOUT = 300         # seconds for anything to happen: TCG is slow

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = c_long


def syscall(nr, *args):
    ret = libc.syscall(c_long(nr), *args)
    return ret if ret >= 0 else -ctypes.get_errno()


def register(ring, opcode, arg, nr):
    return syscall(SYS_io_uring_register, c_int32(ring), c_uint32(opcode), arg, c_uint32(nr))


class Iovec(ctypes.Structure):
    _fields_ = [("base", c_uint64), ("len", c_uint64)]


class ProbeOp(ctypes.Structure):
    _fields_ = [("op", c_uint8), ("resv", c_uint8), ("flags", c_uint16), ("resv2", c_uint32)]


class Probe(ctypes.Structure):
    _fields_ = [("last_op", c_uint8), ("ops_len", c_uint8), ("resv", c_uint16),
                ("resv2", c_uint32 * 3), ("ops", ProbeOp * 64)]


class RsrcUpdate(ctypes.Structure):
    _fields_ = [("offset", c_uint32), ("resv", c_uint32), ("data", c_uint64)]


def expect(events, name, ring, ret, nr, payload=None, registered=False):
    events.append({"opcode_name": name, "fd": ring, "ret": ret, "nr_args": nr,
                   "registered_ring": registered, "payload": payload})


def calls():
    """The known calls; returns what uringwatch must print for each
    (payload: the decoded fields to compare; None: no payload)."""
    ring = syscall(SYS_io_uring_setup, c_uint32(8), (c_uint8 * 120)())
    assert ring >= 0, f"io_uring_setup: {os.strerror(-ring)}"
    ev = []
    fds = (c_int32 * 3)(0, 1, -1)
    expect(ev, "REGISTER_FILES", ring, register(ring, REGISTER_FILES, byref(fds), 3), 3,
           {"fds": [0, 1, -1]})
    bufs = [ctypes.create_string_buffer(4096) for _ in range(2)]
    iov = (Iovec * 2)(*[Iovec(ctypes.addressof(b), 4096) for b in bufs])
    expect(ev, "REGISTER_BUFFERS", ring, register(ring, REGISTER_BUFFERS, byref(iov), 2), 2,
           {"iovecs": [{"base": v.base, "len": v.len} for v in iov]})
    efd = os.eventfd(0)
    expect(ev, "REGISTER_EVENTFD", ring,
           register(ring, REGISTER_EVENTFD, byref(c_int32(efd)), 1), 1, {"eventfd": efd})
    probe = Probe()
    ret = register(ring, REGISTER_PROBE, byref(probe), 64)
    expect(ev, "REGISTER_PROBE", ring, ret, 64,
           {"last_op": probe.last_op, "ops_len": probe.ops_len,
            "supported": [o.op for o in probe.ops[:probe.ops_len] if o.flags & 1]})
    expect(ev, f"UNKNOWN_{NO_SUCH_OPCODE}", ring,
           register(ring, NO_SUCH_OPCODE, None, 0), 0)
    ev[-1].pop("payload")       # whatever the decoder makes of no arg: not compared
    upd = RsrcUpdate(0xFFFFFFFF, 0, ring)
    ret = register(ring, REGISTER_RING_FDS, byref(upd), 1)
    slot = upd.offset           # the kernel writes the index it chose back
    expect(ev, "REGISTER_RING_FDS", ring, ret, 1,
           {"entries": [{"offset": 0xFFFFFFFF, "data": ring}], "assigned": [slot]})
    # kernels before 6.3 refuse the flag (EINVAL), but the call is made
    ret = register(slot, UNREGISTER_EVENTFD | USE_REGISTERED_RING, None, 0)
    expect(ev, "UNREGISTER_EVENTFD", slot, ret, 0, registered=True)
    assert ret in (0, -errno.EINVAL), f"UNREGISTER_EVENTFD by registered index: {ret}"
    if ret:
        expect(ev, "UNREGISTER_EVENTFD", ring,
               register(ring, UNREGISTER_EVENTFD, None, 0), 0)
    expect(ev, "UNREGISTER_BUFFERS", ring, register(ring, UNREGISTER_BUFFERS, None, 0), 0)
    expect(ev, "UNREGISTER_FILES", ring, register(ring, UNREGISTER_FILES, None, 0), 0)
    for e in ev:
        want = {"REGISTER_RING_FDS": 1, f"UNKNOWN_{NO_SUCH_OPCODE}": -errno.EINVAL}.get(
            e["opcode_name"], 0)
        assert e["ret"] == want or e["registered_ring"], \
            f"{e['opcode_name']} returned {e['ret']}, not {want}"
    os.close(efd)
    os.close(ring)
    return ev


def race(live):
    """REGISTER_FILES of CALL fds while a thread on the other CPU flips
    fds[CAP - 1]; stops once uringwatch has printed a change."""
    need = CALL + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    ring = syscall(SYS_io_uring_setup, c_uint32(8), (c_uint8 * 120)())
    fds = (c_int32 * CALL)()      # all fd 0
    stop = threading.Event()
    # separate CPUs: the caller's is busy in the kernel for the whole copy
    os.sched_setaffinity(0, {0})

    def writer():
        os.sched_setaffinity(0, {1})
        i = 0
        while not stop.is_set():
            i += 1
            fds[CAP - 1] = i % 2    # fds 0 and 1 are both open
    t = threading.Thread(target=writer)
    t.start()
    try:
        for tries in range(1, RACE_TRIES + 1):
            assert register(ring, REGISTER_FILES, byref(fds), CALL) == 0
            register(ring, UNREGISTER_FILES, None, 0)
            # the tracer prints a batch every 50 ms, slower under TCG: the
            # last try waits for what is still to come
            deadline = time.monotonic() + 10 * (tries == RACE_TRIES)
            while True:
                if any(flagged(e) for e in read_events(live)):
                    return
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
        events = read_events(live)
        racing = [e for e in events if e.get("nr_args") == CALL]
        sys.exit(f"arm64-calls: no TOCTOU change flagged in {RACE_TRIES} racing calls "
                 f"({len(events)} events printed, {len(racing)} of them racing calls; "
                 f"the last: {racing[-1]['toctou'] if racing else None})")
    finally:
        stop.set()
        t.join()
        os.close(ring)


def flagged(e):
    return (e.get("opcode_name") == "REGISTER_FILES" and e.get("nr_args") == CALL
            and e["toctou"]["changed"])


def read_events(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def check(expected, events):
    if len(events) < len(expected):
        sys.exit(f"arm64-calls: {len(events)} events, expected at least {len(expected)}")
    for want, got in zip(expected, events):
        payload = got["payload"]
        if "payload" in want and payload is not None and want["payload"] is not None:
            payload = {k: payload[k] for k in want["payload"]}
        actual = {k: got[k] for k in want if k != "payload"}
        if "payload" in want:
            actual["payload"] = payload
        if actual != want:
            sys.exit(f"arm64-calls: expected {want}\n  got {actual}")
        if not got["toctou"]["checked"] or got["toctou"]["changed"]:
            sys.exit(f"arm64-calls: {want['opcode_name']}: toctou {got['toctou']}")
        print(f"arm64-calls: ok {want['opcode_name']} fd={want['fd']} ret={want['ret']}"
              f" payload={want.get('payload', '(not compared)')}")
    # identities (record ABI 2): the ring's file, read through BTF on arm64
    first = events[0]
    if "files" in first:
        ring = [f for f in first["files"] or [] if f["role"] == "ring"]
        if not ring or ring[0]["kind"] != "io_uring":
            sys.exit(f"arm64-calls: the ring's identity is not io_uring: {first['files']}")
        print(f"arm64-calls: ok identities: ring fd {ring[0]['fd']} is {ring[0]['path']} "
              f"(source {ring[0]['source']}), {len(first['files'])} files")
    racing = [e for e in events[len(expected):] if e["nr_args"] == CALL]
    hit = next((e for e in racing if flagged(e)), None)
    if hit is None or f"fds[{CAP - 1}]" not in hit["toctou"]["changes"]:
        sys.exit(f"arm64-calls: no change of fds[{CAP - 1}] flagged: {hit}")
    print(f"arm64-calls: ok TOCTOU race flagged in racing call {racing.index(hit) + 1} of "
          f"{len(racing)}: changes={hit['toctou']['changes']} "
          f"window_ns={hit['toctou']['window_ns']}")


def other_hook(d, uw, hook):
    """The same arguments through another hook: kprobes reads them from the
    syscall wrapper's pt_regs (x0.. on arm64, not x86's di, si, ...),
    raw_syscalls from the generic syscall tracepoint."""
    out, err = os.path.join(d, f"{hook}.jsonl"), os.path.join(d, f"{hook}.stderr")
    with open(out, "w") as o, open(err, "w") as e:
        tracer = subprocess.Popen([uw, "--json", "--hook", hook, "--count", "3",
                                   "-p", str(os.getpid())], stdout=o, stderr=e)
    deadline = time.monotonic() + TIMEOUT
    while "tracing" not in open(err).read():
        if tracer.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"arm64-calls: uringwatch --hook {hook} did not start: {open(err).read()}")
        time.sleep(0.1)
    ring = syscall(SYS_io_uring_setup, c_uint32(8), (c_uint8 * 120)())
    efd = os.eventfd(0)
    fds = (c_int32 * 3)(0, 1, -1)
    want = []
    expect(want, "REGISTER_FILES", ring, register(ring, REGISTER_FILES, byref(fds), 3), 3,
           {"fds": [0, 1, -1]})
    expect(want, "REGISTER_EVENTFD", ring,
           register(ring, REGISTER_EVENTFD, byref(c_int32(efd)), 1), 1, {"eventfd": efd})
    expect(want, "UNREGISTER_FILES", ring, register(ring, UNREGISTER_FILES, None, 0), 0)
    if tracer.wait(timeout=TIMEOUT):
        sys.exit(f"arm64-calls: uringwatch --hook {hook} failed: {open(err).read()}")
    os.close(efd)
    os.close(ring)
    events = read_events(out)
    for w, got in zip(want, events):
        payload = got["payload"] and {k: got["payload"][k] for k in w["payload"] or {}}
        actual = {k: got[k] for k in w if k != "payload"} | {"payload": payload or None}
        if actual != w or len(events) != len(want):
            sys.exit(f"arm64-calls: --hook {hook}: expected {w}\n  got {actual}")
    how = open(err).read().split("tracing via ", 1)[1].split(";")[0]
    print(f"arm64-calls: ok --hook {hook} ({how}): {len(want)} calls, arguments and payloads")


def main():
    d, uw = sys.argv[1:]
    os.makedirs(d, exist_ok=True)
    live, err = os.path.join(d, "live.jsonl"), os.path.join(d, "stderr")
    with open(live, "w") as out, open(err, "w") as errf:
        tracer = subprocess.Popen([uw, "--json", "--cap", str(CAP), "-w",
                                   os.path.join(d, "cap.uwd"), "-p", str(os.getpid())],
                                  stdout=out, stderr=errf)
    deadline = time.monotonic() + TIMEOUT
    while "tracing" not in open(err).read():
        if tracer.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"arm64-calls: uringwatch did not start: {open(err).read()}")
        time.sleep(0.1)
    print(f"arm64-calls: {open(err).read().strip()}")
    expected = calls()
    race(live)
    tracer.send_signal(signal.SIGINT)
    if tracer.wait(timeout=TIMEOUT):
        sys.exit(f"arm64-calls: uringwatch failed: {open(err).read()}")
    print(f"arm64-calls: {open(err).read().strip().splitlines()[-1]}")
    check(expected, read_events(live))
    replay = subprocess.run([uw, "replay", "--json", os.path.join(d, "cap.uwd")],
                            capture_output=True, text=True)
    if replay.returncode or replay.stdout != open(live).read():
        sys.exit(f"arm64-calls: replay here differs from live (exit {replay.returncode}):"
                 f" {replay.stderr[-2000:]}")
    print(f"arm64-calls: ok replay of cap.uwd here prints the live JSON "
          f"({len(replay.stdout.splitlines())} events)")
    for hook in ("kprobes", "raw_syscalls"):
        other_hook(d, uw, hook)


if __name__ == "__main__":
    main()
