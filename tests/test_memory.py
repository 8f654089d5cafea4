"""What the tracer keeps in memory that it does not need (docs/BENCHMARKS.md,
Peak memory under the flood): modules the command line never uses, a
digest's library, a second copy of a batch. bench/flood_rss.py measures it."""

import hashlib
import os
import subprocess
import sys
import threading

import msgspec

from uringwatch.outputs.output import WRITE_LINES, Writer
from uringwatch.probe import bpfobject, loader

# each maps megabytes the tracer never uses: asyncio (with ssl, socket's
# friends) 3.3 MB, hashlib's OpenSSL (libcrypto) 3.7 MB
UNWANTED = ("asyncio", "ssl", "_ssl", "hashlib", "_hashlib")


def test_tracing_imports_neither_asyncio_nor_openssl():
    """The command line and the library as they trace: aevents() imports
    asyncio when called, the object's digest is CPython's own."""
    code = ("import sys, uringwatch, uringwatch.commands.main, uringwatch.live.tracer\n"
            f"print(','.join(m for m in {UNWANTED!r} if m in sys.modules))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert got == ""


def test_the_object_digest_is_its_sha256():
    data = loader.object_bytes()
    for d in (data, data[:1], b""):
        assert bpfobject.sha256(d) == hashlib.sha256(d).hexdigest()


class _Event(msgspec.Struct):
    n: int


def _written(items: list) -> tuple[bytes, int]:
    """What a Writer puts on a pipe for one batch (read meanwhile), and the
    lines it counts."""
    r, w = os.pipe()
    chunks = []
    reader = threading.Thread(target=lambda: [chunks.append(c) for c in
                                              iter(lambda: os.read(r, 1 << 16), b"")])
    reader.start()
    with os.fdopen(w, "w") as out:
        writer = Writer(out, True)
        assert writer.write(items)
    reader.join()
    os.close(r)
    return b"".join(chunks), writer.lines


def test_a_batch_written_in_parts_is_the_batch_whole():
    """Lines and events in runs that straddle the parts' edges come out in
    order, each once, and every line is counted."""
    n = 3 * WRITE_LINES + 7
    items = [b'{"line":%d}\n' % i if i % 5 else _Event(i) for i in range(n)]
    got, lines = _written(items)
    want = b"".join(i if isinstance(i, bytes) else msgspec.json.encode(i) + b"\n"
                    for i in items)
    assert got == want
    assert lines == n
