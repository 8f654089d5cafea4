"""A BPF ring buffer consumer that reads the map's memory directly.

libbpf's ring_buffer__poll calls back into Python once per record (about
200 ns before any work); reading the shared pages ourselves hands the
decoder whole batches. Layout (kernel/bpf/ringbuf.c): page 0 holds the
consumer position (we write it), page 1 the producer position, then the
data pages mapped twice in a row so a record that wraps reads contiguously.
Each record starts with an 8-byte header: u32 length with BUSY and DISCARD
bits, u32 page offset; records are 8-byte aligned.
"""

from __future__ import annotations

import mmap
import select
import struct

_BUSY = 1 << 31
_DISCARD = 1 << 30
_HDR = struct.Struct("<II")
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
        self._pending = -1

    def fileno(self) -> int:
        """An fd that polls readable while records are queued (for event loops)."""
        return self._epoll.fileno()

    def wait(self, timeout: float) -> None:
        """Sleep until the kernel wakes us or `timeout` seconds pass."""
        self._epoll.poll(timeout)

    def available(self) -> int:
        """Bytes queued and not yet consumed."""
        return _POS.unpack_from(self._prod, 0)[0] - _POS.unpack_from(self._cons, 0)[0]

    def spans(self, limit: int = 4096) -> list[tuple[int, int]]:
        """(offset into self.data, length) of up to `limit` committed records.

        The memory stays valid until release() is called."""
        cons = _POS.unpack_from(self._cons, 0)[0]
        prod = _POS.unpack_from(self._prod, 0)[0]
        out = []
        while cons < prod and len(out) < limit:
            off = cons & self._mask
            length, _ = _HDR.unpack_from(self.data, off)
            if length & _BUSY:
                break  # still being written; its successors wait too
            size = length & ~(_BUSY | _DISCARD)
            if not length & _DISCARD:
                out.append((off + 8, size))
            cons += (size + 8 + 7) & ~7
        self._pending = cons
        return out

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
