#!/usr/bin/env python3
"""Makes golden-abi<N>.uwd with the real tracer (as root) and, as its
expected output, the live `--json` lines of the same run. Run once per
record ABI version; old goldens stay, so old dumps must keep decoding.

    .venv/bin/python tests/data/make_golden.py
"""

import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
import uring  # noqa: E402
from uringwatch import layout  # noqa: E402


def main():
    base = HERE / f"golden-abi{layout.ABI_VERSION}"
    p = subprocess.Popen([sys.executable, "-m", "uringwatch", "--json", "-w",
                          f"{base}.uwd", "--count", "6", "-p", str(os.getpid())],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "tracing" in p.stderr.readline()
    ring = uring.setup()
    efd = os.eventfd(0)
    uring.register(ring, 2, uring.ints(0, 1, -1), 3)         # FILES
    uring.register(ring, 4, uring.ints(efd), 1)              # EVENTFD
    uring.register(ring, 8, uring.Probe(), 8)                # PROBE (output)
    uring.register(ring, 19, (uring.ctypes.c_uint32 * 2)(2, 4), 2)  # in/out
    uring.register(ring, 9999, None, 0)                      # unknown opcode
    uring.register(ring, 2, 0x10, 2)                         # unreadable arg
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    (base.with_suffix(".jsonl")).write_text(out)
    print(f"wrote {base}.uwd and {base}.jsonl ({len(out.splitlines())} events)")


if __name__ == "__main__":
    main()
