"""Recording a live tracer's raw records into dump files, with rotation."""

from __future__ import annotations

import os
import struct
import sys

from . import dump, layout
from .output import WholeWriter

_CGROUP = struct.Struct("<Q")
_KIND = struct.Struct("<H")
# where each record kind keeps its cgroup id
_CGROUP_AT = {layout.KIND_CALL: layout.CALL.offsets["cgroup_id"],
              layout.KIND_RING: layout.RING.offsets["cgroup_id"],
              layout.KIND_OP: layout.OP.offsets["cgroup_id"]}


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
    """Attach to an open Tracer: `Recorder(path, tracer)`; every raw record
    it reads is written, with the cgroup context replay needs to produce the
    same events. `-` writes to stdout. With rotate_bytes, files roll over
    like tcpdump -C (FILE, FILE.1, ...); with max_files, only the newest
    that many are kept (-W). `stop` (cli._Stop) lets signals end a write
    to a blocked stdout."""

    def __init__(self, path: str, tracer, rotate_bytes: int = 0, max_files: int = 0,
                 stop=None):
        self.stop = stop
        self.path, self.tracer = path, tracer
        self.rotate_bytes, self.max_files = rotate_bytes, max_files
        self.meta = dump.metadata(tracer, tracer.object_sha256, layout.ABI_VERSION)
        self.index = 0
        self.records = 0
        self._open()
        tracer.on_raw = self.record

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
        self._writer = dump.Writer(self._file, {**self.meta, "file_index": self.index})
        self._seen: set[int] = set()    # context is per file: each stands alone

    def record(self, raw: memoryview) -> None:
        # rotated when the next record comes, so no file is left without one
        if self.rotate_bytes and self._writer.size >= self.rotate_bytes and self.path != "-":
            self._writer.write_json(dump.STATS, self.tracer.stats())
            self._file.close()
            self.index += 1
            self._open()
        at = _CGROUP_AT.get(_KIND.unpack_from(raw)[0]) if len(raw) >= 2 else None
        if at is not None and len(raw) >= at + 8:
            cg = _CGROUP.unpack_from(raw, at)[0]
            if cg not in self._seen:
                self._seen.add(cg)
                path, cid = self.tracer.context(cg)
                self._writer.write_json(dump.CONTEXT, {"cgroup_id": cg, "path": path,
                                                       "container_id": cid})
        self._writer.write(dump.RECORD, bytes(raw))
        self.records += 1

    def write_stats(self) -> None:
        """The tracer's counters so far (the CLI does this every second)."""
        self._writer.write_json(dump.STATS, self.tracer.stats())

    def close(self) -> None:
        try:
            self._writer.write_json(dump.END, self.tracer.stats())
            self._writer.flush()
        except KeyboardInterrupt:       # signals stopped a blocked stdout
            pass
        if self.path != "-":
            self._file.close()
        self.tracer.on_raw = None
