"""Recording a live tracer's raw records into dump files, with rotation."""

from __future__ import annotations

import os
import sys

import msgspec

from . import dump, layout
from .output import WholeWriter


class _Stdout:
    """`-w -`: frames gathered into chunks, each written whole (a short
    write continued; signals as output.WholeWriter says)."""
    CHUNK = 64 << 10

    def __init__(self, stop=None):
        sys.stdout.flush()
        self._out = WholeWriter(sys.stdout.fileno(), stop)
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        try:
            self._out.write(self._buf, unit=None)
        finally:
            self._buf.clear()


class Recorder:
    """Attach to an open Tracer: `Recorder(path, tracer)`; every batch of
    raw records it reads is copied as it lay in the ring (one RING frame),
    with the cgroup context replay needs to produce the same events. Use
    `tracer.poll_raw(recorder.write_ring)` to record without decoding;
    `tracer.poll()` records too, and decodes. `-` writes to stdout. With
    rotate_bytes, files roll over like tcpdump -C (FILE, FILE.1, ...); with
    max_files, only the newest that many are kept (-W). `stop` (cli._Stop)
    lets signals end a write to a blocked stdout."""

    def __init__(self, path: str, tracer, rotate_bytes: int = 0, max_files: int = 0,
                 stop=None):
        self.stop = stop
        self.path, self.tracer = path, tracer
        self.rotate_bytes, self.max_files = rotate_bytes, max_files
        self.meta = dump.metadata(tracer, tracer.object_sha256, layout.ABI_VERSION)
        self.index = 0
        self.records = 0
        self._open()
        tracer.on_ring = self.write_ring

    def _name(self, index: int) -> str:
        return self.path if index == 0 else f"{self.path}.{index}"

    def _open(self) -> None:
        if self.path == "-":
            self._file = _Stdout(self.stop)
        else:
            self._file = open(self._name(self.index), "wb")
            if self.max_files and self.index >= self.max_files:
                old = self._name(self.index - self.max_files)
                if os.path.exists(old):
                    os.unlink(old)
        self._writer = dump.Writer(self._file, msgspec.structs.replace(
            self.meta, file_index=self.index))
        self._seen: set[int] = set()    # context is per file: each stands alone

    def write_ring(self, ring: memoryview, cgroups: set, records: int) -> None:
        """A batch of ring bytes (records behind their ring headers), after
        the context of any cgroup this file has not described yet. Files
        roll over between batches, before one, so none is left empty."""
        if self.rotate_bytes and self._writer.size >= self.rotate_bytes and self.path != "-":
            self.write_stats()
            self._file.close()
            self.index += 1
            self._open()
        for cg in sorted(cgroups - self._seen):
            self._seen.add(cg)
            path, cid = self.tracer.context(cg)
            self._writer.write_json(dump.CONTEXT, dump.Context(cg, path, cid))
        self._writer.write_ring(ring)
        self.records += records

    def write_stats(self) -> None:
        """The tracer's counters so far (the CLI does this every second)."""
        self._writer.write_json(dump.STATS, dump.counters(self.tracer.stats()))

    def close(self) -> None:
        try:
            self._writer.write_json(dump.END, dump.counters(self.tracer.stats()))
            self._writer.flush()
        except KeyboardInterrupt:       # signals stopped a blocked stdout
            pass
        if self.path != "-":
            self._file.close()
        self.tracer.on_ring = None
