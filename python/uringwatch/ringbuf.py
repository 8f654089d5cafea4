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

import itertools
import mmap
import select
import struct

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = struct.Struct("<II")        # u32 length | flags, u32 page offset
_POS = struct.Struct("<Q")
_WORD = struct.Struct("<I")
_RUN_MIN = 64           # records of one length, fewer not worth a batch of their own


# The page offset of an entry made in user space (a repeat run read at stop,
# an operations count), recorded as the ring's are: the kernel's count pages
# from its ring's start, past the position pages, so it never writes 0.
MADE_PG_OFF = 0


def made_entry(raw: bytes) -> bytes:
    """A record made here, behind a ring header of its own, padded to 8."""
    return HDR.pack(len(raw), MADE_PG_OFF) + raw + bytes(-len(raw) % 8)


def is_made(buf, off: int, size: int) -> bool:
    """Whether the record at buf[off:off + size] sits behind made_entry()'s
    header (False for a record with no ring header before it)."""
    return off >= HDR.size and HDR.unpack_from(buf, off - HDR.size) == (size, MADE_PG_OFF)


def record_step(length: int) -> tuple[int, int]:
    """(record size, bytes to the next ring header) from a header's length word."""
    size = length & ~(BUSY | DISCARD)
    return size, (size + HDR.size + 7) & ~7


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
        cons = _POS.unpack_from(self._cons, 0)[0]
        prod = _POS.unpack_from(self._prod, 0)[0]
        stop = min(prod, cons + max_bytes) if max_bytes else prod
        out = self._same_length(cons, stop, limit)
        if out:
            return out
        start, mask, data = cons, self._mask, self.data
        unpack, pad = HDR.unpack_from, HDR.size + 7     # locals: this runs per record
        while cons < prod and len(out) < limit:
            off = cons & mask
            length, _ = unpack(data, off)
            if length & BUSY:
                break  # still being written; its successors wait too
            size = length & ~DISCARD
            step = (size + pad) & ~7                    # record_step(), inline
            if cons + step > stop and cons > start:
                break
            if not length & DISCARD:
                out.append((off + 8, size))
            cons += step
        self._start, self._pending = start, cons
        return out

    def _same_length(self, cons: int, stop: int, limit: int) -> list[tuple[int, int]]:
        """spans() of the records from cons that have the first one's
        length word (a flood of one call), found in C: the length words
        read at that step and compared with the first's, repeated. Stops
        before the first record that differs (busy, discarded, or of
        another length), which spans()'s loop takes next; [] where records
        of several lengths alternate, which the loop takes now."""
        off = cons & self._mask
        if stop - cons < HDR.size:
            return []
        first = HDR.unpack_from(self.data, off)[0]
        _, step = record_step(first)
        n = min(limit, (stop - cons) // step)
        if first & (BUSY | DISCARD) or n < 2:
            return []
        with self.data[off:off + n * step] as run, run.cast("I") as words:
            got = words[::step // 4].tobytes()
        want = _WORD.pack(first) * n
        if got != want:     # the run ends before n: find where, halving
            lo, hi = 1, n - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if got[:4 * mid] == want[:4 * mid]:
                    lo = mid
                else:
                    hi = mid - 1
            n = lo
            if n < _RUN_MIN:    # mixed lengths: the loop takes the batch
                return []
        self._start, self._pending = cons, cons + n * step
        return list(zip(range(off + HDR.size, off + HDR.size + n * step, step),
                        itertools.repeat(first, n)))

    def peek(self, limit: int, max_bytes: int, fields: struct.Struct) -> list[tuple]:
        """Like spans(), for copying rather than decoding: `fields` unpacked
        at each committed record's ring header (discarded ones included:
        their length word has DISCARD set), in one pass."""
        cons = _POS.unpack_from(self._cons, 0)[0]
        prod = _POS.unpack_from(self._prod, 0)[0]
        stop = min(prod, cons + max_bytes)
        start, out, mask, data = cons, [], self._mask, self.data
        unpack, pad = fields.unpack_from, HDR.size + 7
        while cons < prod and len(out) < limit:
            v = unpack(data, cons & mask)
            if v[0] & BUSY:
                break
            step = ((v[0] & ~DISCARD) + pad) & ~7     # record_step(), inline
            if cons + step > stop and cons > start:
                break
            out.append(v)
            cons += step
        self._start, self._pending = start, cons
        return out

    def taken(self) -> memoryview:
        """The ring bytes of the last spans() or peek(), ring headers
        included: contiguous, as the data pages are mapped twice."""
        off = self._start & self._mask
        return self.data[off:off + self._pending - self._start]

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
