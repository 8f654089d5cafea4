"""Reading the ring buffer, in bounded batches: records decoded into
events, or handed on as they lie for recording; plus the records made
here (operations' counts, repeat runs still pending at stop), recorded
and decoded like the kernel's. poll() is the loop's step; iteration,
run() and aevents() are loops over it."""

from __future__ import annotations

import threading
import time
from typing import AsyncIterator, Callable, Iterator

from ..record import before, headers, layout, ringscan
from . import ringbuf
from ..record.decode import Runs, decode, decode_many
from ..errors import TracerError
from ..record.events import AnyEvent, Repeat
from .ringbuf import RingBuffer
from ..record.rings import FreedRings, Ledger, UseCounts
from ..record.targets import Pending

BATCH = 4096            # records decoded per poll
# ring bytes handed to on_ring / poll_raw's sink at once: a dump's RING frame,
# so also what one damaged frame can cost a replay
RING_BYTES = 64 << 10


class EventReader:
    """Reads one tracer's ring from start() to close(), from one thread
    (close() may come from another)."""

    def __init__(self, flush_interval: float, context: Callable | None):
        self.flush_interval = flush_interval
        self.decode_errors = 0
        self.boot_to_wall = 0
        self.detached = False           # no program runs: the ring holds all there is
        # sees each batch's ring bytes, the cgroups in it and its record count
        self.on_ring: Callable[[memoryview, set, int, bytes], object] | None = None
        # given each batch of events, returns the findings they make
        self.findings: Callable[[list], list] | None = None
        self._context = context         # cgroup id -> (path, container id)
        self._lock = threading.Lock()
        self._ring: RingBuffer | None = None
        self._uses: UseCounts | None = None
        self._actions: Pending | None = None
        self._freed: FreedRings | None = None
        self._procs: Callable[[], Iterator[tuple[int, dict]]] = lambda: iter(())
        self._runs = Runs()             # repeat records' totals -> counts
        self._runs_flushed = False
        self.ledger = Ledger()
        self._found: list[AnyEvent] = []   # made at start, first out of the next poll

    def start(self, ring: RingBuffer, boot_to_wall: int, uses: UseCounts | None,
              procs: Callable[[], Iterator[tuple[int, dict]]],
              actions: Pending | None = None, freed: FreedRings | None = None) -> None:
        """Reads `ring` from now on; `uses` gives the operations' counts,
        `procs` the kernel's per-process state (its pending repeat runs),
        `actions` the actions waiting for their completion at stop, `freed`
        the rings freed, for the ledger to let go of."""
        self._ring, self.boot_to_wall, self._uses, self._procs = ring, boot_to_wall, uses, procs
        self._actions, self._freed = actions, freed

    def found_before(self, events: list[AnyEvent]) -> None:
        """Events found at start (rings made before tracing): the next
        poll's first, fed to the ledger now, before any operation."""
        self._found = [self.ledger.feed(ev) for ev in events]

    def close(self) -> None:
        """Safe from another thread than the one reading (that one then stops)."""
        with self._lock:
            ring, self._ring = self._ring, None
            if ring:
                ring.close()

    def ring_usage(self) -> tuple[int, int]:
        """(bytes queued and not yet read, the ring's size)."""
        ring = self._ring
        if ring is None:
            raise TracerError("tracer is not open")
        return ring.available(), ring.size

    def _wait(self, timeout: float | None) -> bool:
        """Waits up to `timeout` (default: the flush interval) for the kernel
        to queue records; False if the tracer was closed meanwhile."""
        ring = self._ring
        if ring is None:
            raise TracerError("tracer is not open")
        try:
            if not ring.available() and not self._found:
                ring.wait(self.flush_interval if timeout is None else timeout)
        except (ValueError, OSError):   # closed by another thread meanwhile
            return False
        return True

    def poll(self, timeout: float | None = None, lines: bool = False) -> list:
        """Tracer.poll(): one batch of events, decoded; with lines, events
        that can come as their JSON line do (decode_many)."""
        if not self._wait(timeout):
            return []
        with self._lock:        # close() must not unmap the ring mid-decode
            return self._drain(lines) if self._ring is not None else []

    def poll_raw(self, sink: Callable[[memoryview, set, int, bytes], object],
                 timeout: float | None = None, limit: int = BATCH) -> int:
        """Tracer.poll_raw(): one batch of records handed to sink, undecoded."""
        if not self._wait(timeout):
            return 0
        with self._lock:
            return self._drain_raw(sink, limit) if self._ring is not None else 0

    def _drain_raw(self, sink, limit: int) -> int:
        ring = self._ring
        found = len(self._take_found())
        peeks = ring.peek(limit, RING_BYTES, headers.PEEK)
        if not peeks:
            return found + len(self._made_here(idle=True))
        kind, cg = headers.PEEK_AT["kind"], headers.PEEK_AT["cgroup_id"]
        live = [p for p in peeks if not p[0] & ringbuf.DISCARD]
        view = ring.taken()
        try:
            sink(view, {p[cg] for p in live if p[kind] == layout.KIND_CALL}, len(live),
                 ring.taken_index())
        finally:        # a view left alive would keep the ring from unmapping
            view.release()
        ring.release()
        return found + len(live) + len(self._made_here(idle=False))

    def _drain(self, lines: bool = False) -> list:
        """One batch: memory stays bounded when the caller is slow, and the
        ring backs up instead (the kernel then counts ring_full). Lines
        only where nothing needs the batch's events (on_ring)."""
        ring = self._ring
        found = self._take_found()
        spans = ring.spans(BATCH, RING_BYTES if self.on_ring else 0)
        out, errors = decode_many(ring.data, spans, self.boot_to_wall, self._context,
                                  proc=True, runs=self._runs,
                                  lines=lines and not self.on_ring and not self.findings,
                                  follow=self.ledger.feed)
        self.decode_errors += len(errors)
        if self.on_ring and spans:
            view = ring.taken()
            try:
                self.on_ring(view, {ev.cgroup_id for ev in out if hasattr(ev, "cgroup_id")},
                             len(spans), ring.taken_index())
            finally:
                view.release()
        ring.release()
        out = found + out + self._made_here(idle=not out and not found)
        return out + self.findings(out) if self.findings else out

    @property
    def repeat_events(self) -> int:
        """Repeat events yielded, pending ones included."""
        return self._runs.events

    def _take_found(self) -> list[AnyEvent]:
        """The rings from before, once: recorded as records of their own
        ahead of the batch, so that a replay knows them before the first
        operation on them, as the live ledger did."""
        found, self._found = self._found, []
        for ev in found:
            self._made(before.record(ev))
        return found

    def _made_here(self, idle: bool) -> list[AnyEvent]:
        """Records made here, not by the kernel: the operations' counts when
        due, and once detached with the ring empty (idle), the repeat runs
        still pending in the kernel."""
        out = self._counts() if self._uses and self._uses.due(final=self.detached) else []
        if self._freed:
            self.ledger.forget(self._freed.take())
        if idle and self.detached and not self._runs_flushed:
            self._runs_flushed = True
            out += self._pending_runs()
            if self._actions:
                out += self._pending_actions()
        return out

    def _pending_actions(self) -> list:
        """Actions still waiting for their completion at stop."""
        out = []
        for raw in self._actions.records():
            self._made(raw)
            out.append(decode(raw, 0, len(raw), self.boot_to_wall, self._context))
        return out

    def _made(self, raw: bytes) -> bytes:
        """A record made here, not by the kernel (an operations count, a
        repeat run read at stop): recorded as the ring's are, behind a ring
        header of its own (ringscan.made_entry), which it returns."""
        entry = ringscan.made_entry(raw)
        if self.on_ring:
            self.on_ring(memoryview(entry), set(), 1, ringscan.index_of(entry))
        return entry

    def _counts(self) -> list:
        """The operations' counts since the last, as records of their own:
        recorded and decoded like the kernel's."""
        out = []
        for raw in self._uses.records():
            self._made(raw)
            out.append(self.ledger.feed(
                decode(raw, 0, len(raw), self.boot_to_wall, self._context)))
        return out

    def _pending_runs(self) -> list[Repeat]:
        """Repeat runs no record reported (the last run of each process, or
        a summary lost to a full ring), read from the kernel's map once no
        program runs: made into repeat records, so recordings get them too."""
        out = []
        for pid, p in self._procs():
            if p["coalesced"] <= self._runs.seen.get(pid, 0):
                continue
            last = p["run_last"]
            raw = layout.REPEAT.struct.pack(
                layout.KIND_REPEAT, layout.ABI_VERSION, layout.REPEAT.size,
                p["run_first"] or last, last, p["coalesced"], p["ret"], pid, p["tid"],
                p["fd"], p["opcode"], p["comm"])
            # decoded behind its header, as replay meets it: at_stop is set
            entry = self._made(raw)
            ev = decode(entry, ringbuf.HDR.size, len(raw), self.boot_to_wall, None,
                        runs=self._runs)
            if ev is not None:
                out.append(ev)
        return out

    def __iter__(self) -> Iterator[AnyEvent]:
        while self._ring is not None:
            try:
                events = self.poll()
            except TracerError:     # closed between the check and the poll
                return
            yield from events

    def run(self, callback: Callable[[AnyEvent], object],
            duration: float | None = None) -> None:
        """Tracer.run()."""
        deadline = None if duration is None else time.monotonic() + duration
        while self._ring is not None and (deadline is None or time.monotonic() < deadline):
            for ev in self.poll():
                callback(ev)

    async def aevents(self) -> AsyncIterator[AnyEvent]:
        """Tracer.aevents()."""
        import asyncio      # here: a fifth of the CLI's imports, for the async API only
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        fd = self._ring.fileno()
        loop.add_reader(fd, ready.set)
        try:
            while self._ring is not None:
                with self._lock:
                    events = self._drain() if self._ring is not None else []
                for ev in events:
                    yield ev
                try:
                    await asyncio.wait_for(ready.wait(), self.flush_interval)
                except asyncio.TimeoutError:
                    pass
                ready.clear()
        finally:
            loop.remove_reader(fd)

