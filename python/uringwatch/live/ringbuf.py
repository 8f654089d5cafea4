"""A BPF ring buffer consumer that reads the map's memory directly.

libbpf's ring_buffer__poll calls back into Python once per record (about
200 ns before any work); reading the shared pages ourselves hands the
decoder whole batches. Layout (kernel/bpf/ringbuf.c): page 0 holds the
consumer position (we write it), page 1 the producer position, then the
data pages mapped twice in a row so a record that wraps reads contiguously.
The records are walked by ringscan.walk(), as a dump's RING frames are.
"""

from __future__ import annotations

import mmap
import select
import struct

from ..record import ringscan
from ..record.ringscan import BUSY, DISCARD, HDR  # noqa: F401  (read here by the reader and tests)

_POS = struct.Struct("<Q")


class RingBuffer:
    def __init__(self, map_fd: int, size: int):
        page = mmap.PAGESIZE
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED,
                               mmap.PROT_READ, offset=page)
        self.data = memoryview(self._prod)[page:]
        self._mask = size - 1
        self.size = size
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)
        self._start = self._pending = -1
        self._taken: ringscan.Entries | None = None     # the last walk, for taken_index()

    def fileno(self) -> int:
        """An fd that polls readable while records are queued (for event loops)."""
        return self._epoll.fileno()

    def wait(self, timeout: float) -> None:
        """Sleep until the kernel wakes us or `timeout` seconds pass."""
        self._epoll.poll(timeout)

    def available(self) -> int:
        """Bytes queued and not yet consumed."""
        return _POS.unpack_from(self._prod, 0)[0] - _POS.unpack_from(self._cons, 0)[0]

    def spans(self, limit: int = 4096, max_bytes: int = 0) -> list[tuple[int, int]]:
        """(offset into self.data, length) of up to `limit` committed records
        (and, with max_bytes, no more ring bytes than that past the first).

        The memory stays valid until release() is called; taken() is the
        same records as one byte range."""
        return self._walk(limit, max_bytes, None).spans()

    def peek(self, limit: int, max_bytes: int, fields: struct.Struct) -> list[tuple]:
        """Like spans(), for copying rather than decoding: `fields` unpacked
        at each committed record's ring header (discarded ones included:
        their length word has DISCARD set)."""
        return self._walk(limit, max_bytes, fields).rows

    def _walk(self, limit: int, max_bytes: int, fields) -> ringscan.Entries:
        """ringscan.walk() from the consumer position: the data pages are
        mapped twice in a row, so the queued bytes read as one region."""
        cons = _POS.unpack_from(self._cons, 0)[0]
        prod = _POS.unpack_from(self._prod, 0)[0]
        off = cons & self._mask
        end = off + prod - cons
        stop = off + max_bytes if max_bytes else end
        got = ringscan.walk(self.data, off, end, fields, limit, stop)
        self._start, self._pending = cons, cons + got.end - off
        self._taken = got
        return got

    def taken(self) -> memoryview:
        """The ring bytes of the last spans() or peek(), ring headers
        included: contiguous, as the data pages are mapped twice."""
        off = self._start & self._mask
        return self.data[off:off + self._pending - self._start]

    def taken_index(self) -> bytes:
        """The entry offsets in taken() (ringscan.Entries.index()): a dump
        stores them beside the bytes, so replay need not walk them."""
        return self._taken.index(self._start & self._mask)

    def release(self) -> None:
        """Hand the space of the records from the last spans() back."""
        if self._pending >= 0:
            _POS.pack_into(self._cons, 0, self._pending)
            self._pending = -1

    def close(self) -> None:
        self._epoll.close()
        self.data.release()
        self._prod.close()
        self._cons.close()
