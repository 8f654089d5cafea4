#!/usr/bin/env python3
"""Coverage-guided fuzzing of the record decoder with atheris, for runs
longer than the suite's hypothesis tests. Only RecordError may escape.

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/atheris_decode.py -max_total_time=600
"""

import os
import struct
import sys

import atheris

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
with atheris.instrument_imports():
    from uringwatch import RecordError, decode
    from uringwatch.record import layout
    from test_decode import FILES_REGIONS, call_record


def one(data: bytes) -> None:
    # A valid header half the time, so the fuzzer spends its effort on the
    # regions and payload decoders rather than on the size check.
    if len(data) >= 8 and data[0] & 1:
        data = struct.pack("<HHI", layout.KIND_CALL, layout.ABI_VERSION, len(data)) + data[8:]
    try:
        decode(data, 0, len(data), 0)
    except RecordError:
        pass


if __name__ == "__main__":
    seed_dir = os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(seed_dir, exist_ok=True)
    with open(os.path.join(seed_dir, "files_record"), "wb") as f:
        f.write(call_record(regions=FILES_REGIONS))
    atheris.Setup(sys.argv + [seed_dir], one)
    atheris.Fuzz()
