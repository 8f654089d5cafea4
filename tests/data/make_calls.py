#!/usr/bin/env python3
"""Makes calls-abi<N>.uwd.gz (root): a `record --rings` of this process while
it runs tests/test_opcodes.py and test_identity.py (every opcode, fds of
every kind, buffers, credentials), the benchmark's workloads (a run of
invalid-opcode calls, REGISTER_FILES of 8) and a raced REGISTER_FILES (as
tests/test_toctou.py races it); and, as its expected output, calls-abi<N>.jsonl: `replay --json` of it by the decoder of the day.
tests/test_decode_corpus.py holds later decoders to those bytes.

    .venv/bin/python tests/data/make_calls.py
"""

import ctypes
import gzip
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import threading

import pytest

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
import uring  # noqa: E402
from uringwatch import layout  # noqa: E402

UW = [sys.executable, "-m", "uringwatch"]


def workloads():
    ring = uring.setup()
    fds = uring.ints(*[os.open("/dev/null", os.O_RDONLY) for _ in range(8)])
    for _ in range(20):
        uring.register(ring, 9999, None, 0)
    for _ in range(20):
        uring.register(ring, uring.REGISTER_FILES, fds, 8)
        uring.register(ring, uring.UNREGISTER_FILES, None, 0)
    os.close(ring)


def raced(cap=layout.DEFAULT_CAP, call=16384):
    """REGISTER_FILES while a thread on the other CPU flips the last fd
    captured, until the tracer would see a change (or 50 tries)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (call + 64, call + 64))
    fds, stop = (ctypes.c_int32 * call)(), threading.Event()
    ring = uring.setup()
    os.sched_setaffinity(0, {0})

    def writer():
        os.sched_setaffinity(0, {1})
        while not stop.is_set():
            fds[cap - 1] ^= 1
    t = threading.Thread(target=writer)
    t.start()
    for _ in range(50):
        uring.register(ring, uring.REGISTER_FILES, fds, call)
        uring.register(ring, uring.UNREGISTER_FILES, None, 0)
    stop.set()
    t.join()
    os.close(ring)


def main():
    base = HERE / f"calls-abi{layout.ABI_VERSION}"
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "calls.uwd"
        p = subprocess.Popen(UW + ["record", "--rings", "-w", str(path),
                                   "-p", str(os.getpid())], stderr=subprocess.PIPE, text=True)
        assert "tracing" in p.stderr.readline()
        tests = HERE.parent
        pytest.main(["-q", "-p", "no:cacheprovider", str(tests / "test_opcodes.py"),
                     str(tests / "test_identity.py")])
        workloads()
        raced()
        p.send_signal(2)
        p.communicate(timeout=30)
        out = subprocess.run(UW + ["replay", "--json", str(path)], check=True,
                             capture_output=True).stdout
        # mtime 0: the same bytes make the same file
        with gzip.GzipFile(f"{base}.uwd.gz", "wb", mtime=0) as f:
            f.write(path.read_bytes())
    with gzip.GzipFile(f"{base}.jsonl.gz", "wb", mtime=0) as f:
        f.write(out)
    print(f"wrote {base}.uwd.gz and {base}.jsonl.gz ({len(out.splitlines())} events)")


if __name__ == "__main__":
    main()
