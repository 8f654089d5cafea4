"""Recording a live tracer's raw records into dump files, with rotation."""

from __future__ import annotations

import argparse
import grp
import os
import stat
import sys

import msgspec

from . import dump
from ..record import layout
from ..outputs.output import WholeWriter


# Recordings hold what processes registered (paths, credentials, buffer
# addresses): their owner alone reads them, whatever the umask, unless a
# group is named (--group), which may then read them too.
FILE_MODE = 0o600
GROUP_FILE_MODE = 0o640


def create(path: str, mode: int = FILE_MODE, gid: int | None = None) -> int:
    """An fd open for writing at path, emptied. A new file gets exactly
    `mode` and group `gid`; it is made with no more than owner bits, so it
    is never wider than asked while its group is set. An existing regular
    file keeps its owner and group and loses the bits `mode` lacks, never
    gaining one; anything else (/dev/null, a FIFO) is left as it is."""
    flags = os.O_WRONLY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode & 0o600)
    except FileExistsError:
        fd = os.open(path, flags | os.O_TRUNC)
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) & ~mode:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & mode)
        except BaseException:
            os.close(fd)
            raise
        return fd
    try:
        if gid is not None:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, mode)
    except OSError as e:
        os.close(fd)
        os.unlink(path)
        raise OSError(e.errno, e.strerror, path) from None      # fchown names no file
    return fd


def file_mode(text: str) -> int:
    """--file-mode: permission bits in octal (0640)."""
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode from 0 to 0777")
    return mode


def group_id(text: str) -> int:
    """--group: a group's name or number."""
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no group named {text!r}") from None


class _Stdout:
    """`-w -`: frames gathered into chunks, each written whole (a short
    write continued; signals as output.WholeWriter says). Once signals
    stopped a write, nothing more is written (`stopped`): what follows a
    cut frame could not be read anyway."""
    CHUNK = 64 << 10

    def __init__(self, stop=None):
        sys.stdout.flush()
        self._out = WholeWriter(sys.stdout.fileno(), stop)
        self._buf = bytearray()
        self.stopped = False

    def write(self, data: bytes) -> None:
        if not self.stopped:
            self._buf += data
            if len(self._buf) >= self.CHUNK:
                self.flush()

    def flush(self) -> None:
        if not self.stopped:
            self.stopped = not self._out.write(self._buf, unit=None).whole
        self._buf.clear()


class Recorder:
    """Attach to an open Tracer: `Recorder(path, tracer)`; every batch of
    raw records it reads is copied as it lay in the ring (one RING frame),
    with the cgroup context replay needs to produce the same events. Use
    `tracer.poll_raw(recorder.write_ring)` to record without decoding;
    `tracer.poll()` records too, and decodes. `-` writes to stdout. With
    rotate_bytes, files roll over like tcpdump -C (FILE, FILE.1, ...); with
    max_files, only the newest that many are kept (-W). `stop` (cli._Stop)
    lets signals end a write to a blocked stdout. Files are made as
    create() says: `mode` (default 0600, or 0640 with a `gid`), group
    `gid`."""

    def __init__(self, path: str, tracer, rotate_bytes: int = 0, max_files: int = 0,
                 stop=None, mode: int | None = None, gid: int | None = None):
        self.stop = stop
        self.gid = gid
        self.mode = mode if mode is not None else FILE_MODE if gid is None else GROUP_FILE_MODE
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
            self._file = os.fdopen(create(self._name(self.index), self.mode, self.gid), "wb")
            if self.max_files and self.index >= self.max_files:
                old = self._name(self.index - self.max_files)
                if os.path.exists(old):
                    os.unlink(old)
        self._writer = dump.DumpWriter(self._file, msgspec.structs.replace(
            self.meta, file_index=self.index))
        self._seen: set[int] = set()    # context is per file: each stands alone

    def write_ring(self, ring: memoryview, cgroups: set, records: int,
                   index: bytes | None = None) -> None:
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
        self._writer.write_ring(ring, index)
        self.records += records

    def write_stats(self) -> None:
        """The tracer's counters so far (the CLI does this every second)."""
        self._writer.write_json(dump.STATS, dump.counters(self.tracer.stats()))

    @property
    def stopped(self) -> bool:
        """Whether signals stopped a write to a blocked stdout."""
        return isinstance(self._file, _Stdout) and self._file.stopped

    def close(self) -> None:
        self._writer.write_json(dump.END, dump.counters(self.tracer.stats()))
        self._writer.flush()
        if self.path != "-":
            self._file.close()
        self.tracer.on_ring = None
