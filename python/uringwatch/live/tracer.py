"""The Tracer: load the BPF object, attach it, and turn ring-buffer
records into Events. A thin front: each part is a module of its own
(docs/ARCHITECTURE.md, How it works)."""

from __future__ import annotations

import os
import time
import uuid
from typing import AsyncIterator, Callable, Iterator

import msgspec

from ..record import before
from ..probe import hooks
from ..system import libbpf
from ..probe.bpfobject import BpfObject
from ..system.containers import CgroupResolver
from .counters import CounterMaps
from ..record.events import AnyEvent
from ..record.filters import Filters
from ..probe.filtersets import FilterSets
from ..probe.loader import Loader
from ..probe.options import TracerOptions
from ..record.reports import AggregateCounts, Features, ProcessCounts, Stats
from .reader import BATCH, EventReader
from .ringbuf import RingBuffer
from ..record.rings import FreedRings, PendingUses, UseCounts
from ..record.targets import Pending
from ..errors import TracerError


def _option(name: str) -> property:
    return property(lambda self: getattr(self.options, name),
                    doc=f"The {name} option (TracerOptions.{name}).")


class Tracer:
    """A live tracer. Use as a context manager; iterate for events.

    Tracer(filters, **options) takes TracerOptions' fields as keyword
    arguments (cap=..., fair=..., ...); a bad one raises TracerError.
    findings=True (or a findings.Ruleset) adds Finding events after the
    events they rest on, and traces rings unless rings=False is given."""

    hook = _option("hook")
    resolve = _option("resolve")
    btf_path = _option("btf_path")
    flush_interval = _option("flush_interval")
    count_interval = _option("count_interval")

    def __init__(self, filters: Filters | None = None, findings=False, **options):
        if findings:
            options.setdefault("rings", True)
        self.options = TracerOptions(**options)
        self.filters = filters or Filters()
        self.features: Features | None = None    # what open() chose
        self.run_id = uuid.uuid4().hex      # ties a recording's rotated files together
        self.object_sha256: str | None = None
        self._context = None
        self._cgroups: CgroupResolver | None = None
        if self.options.containers:
            self._cgroups = CgroupResolver()
            self._context = self._cgroups.context
        self._reader = EventReader(self.options.flush_interval, self._context)
        self.findings = None        # the findings.Engine, with findings on
        if findings:
            from ..analysis.findings import Engine
            self.findings = Engine(None if findings is True else findings, live=True)
            self._reader.findings = self.findings.feed
        self._obj: BpfObject | None = None
        self._sets: FilterSets | None = None
        self._counters: CounterMaps | None = None

    # -- lifecycle -------------------------------------------------------

    def open(self) -> "Tracer":
        """Load and attach; on any failure, nothing stays behind."""
        try:
            return self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> "Tracer":
        obj, self.features = Loader(self.options, self.filters).load()
        self._obj, self.object_sha256 = obj, obj.sha256
        uses = None
        if any(p.startswith("tp_btf__") for p in obj.programs):
            uses = UseCounts((obj.map_fd("uses"), obj.map_fd("spills")),
                             self.options.count_interval,
                             PendingUses(obj.map_fd("opc_slots"), obj.value_size("opc_slots"),
                                         obj.map_fd("opc_epochs")))
        self._sets = FilterSets(obj, self.filters)
        self._counters = CounterMaps(obj)
        boot_to_wall = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        if self._cgroups:     # before the first call: its cgroup may be gone when read
            self._cgroups.watch()
        self.features.cgroups = self._cgroups.found_by if self._cgroups else "off"
        probe = self._probe_ring(obj)
        try:
            obj.attach()
            self._reader.start(RingBuffer(obj.map_fd("events"), obj.max_entries("events")),
                               boot_to_wall, uses, self._counters.procs,
                               Pending(obj.map_fd("pending"), obj.map_fd("act_runs")) if uses else None,
                               FreedRings(obj.map_fd("rings_freed"), self.options.count_interval))
            if probe is not None:
                self._find_before(obj, probe)
        finally:
            if probe is not None:
                os.close(probe)
        return self

    def _probe_ring(self, obj: BpfObject) -> int | None:
        """A ring of the tracer's own, made before attaching, that tells
        the iterator's io_uring files apart (before.own_ring); None when
        rings from before are not looked for, or it can't be made (said)."""
        if hooks.RING_BEFORE_PROGRAM not in obj.programs:
            return None
        fd = before.own_ring()
        if fd < 0:
            self.features.rings_before_error = f"no ring of its own: {os.strerror(-fd)}"
            return None
        return fd

    def _find_before(self, obj: BpfObject, probe: int) -> None:
        """The rings made before tracing, after attaching (a ring made since
        has its ring event): reported first. A failure costs only them."""
        try:
            raw = obj.iterate(hooks.RING_BEFORE_PROGRAM)
        except libbpf.LibbpfError as e:
            self.features.rings_before_error = str(e)
            return
        self._reader.found_before(before.found(raw, probe, self._keeps))

    def _keeps(self, ev):
        """An event made here (a ring from before) with its cgroup context,
        if the filters keep it; else None."""
        if self._context is not None:
            path, container = self._context(ev.cgroup_id)
            ev = msgspec.structs.replace(ev, cgroup_path=path, container_id=container)
        return ev if self.filters.matches(ev) else None

    def detach(self) -> None:
        """Stop tracing; what is queued can still be polled."""
        if self._obj and self._obj.detach():
            self._reader.detached = True

    def close(self) -> None:
        """Detach everything; safe to call twice and from another thread
        than the one reading events (that one then stops)."""
        self.detach()
        self._reader.close()
        if self._cgroups:
            self._cgroups.close()
        obj, self._obj, self._sets, self._counters = self._obj, None, None, None
        if obj:
            obj.close()

    def __enter__(self) -> "Tracer":
        return self.open() if self._obj is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    def _opened(self, part):
        if part is None:
            raise TracerError("tracer is not open")
        return part

    # -- filter sets changeable while tracing --------------------------------

    def add_pid(self, pid: int) -> None:
        self._opened(self._sets).add_pid(pid)

    def remove_pid(self, pid: int) -> None:
        self._opened(self._sets).remove_pid(pid)

    def add_cgroup(self, cgroup_id: int) -> None:
        self._opened(self._sets).add_cgroup(cgroup_id)

    def remove_cgroup(self, cgroup_id: int) -> None:
        self._opened(self._sets).remove_cgroup(cgroup_id)

    # -- events ------------------------------------------------------------

    def poll(self, timeout: float | None = None) -> list[AnyEvent]:
        """Events available now, waiting up to `timeout` (default: the flush
        interval) for the kernel to queue some. After detach(): what is
        queued, then once the repeat runs still pending in the kernel."""
        return self._reader.poll(timeout)

    def poll_lines(self, timeout: float | None = None) -> list:
        """Like poll(), for JSON Lines output: an event whose line can be
        written from its record's template (a call repeated with only its
        timestamps changed) comes as that line, bytes with its newline;
        output.Writer(json=True) writes both, the same bytes as for the
        events. With on_ring set, events only."""
        return self._reader.poll(timeout, lines=True)

    def poll_raw(self, sink: Callable[[memoryview, set, int, bytes], object],
                 timeout: float | None = None, limit: int = BATCH) -> int:
        """Like poll(), for recording: nothing is decoded. sink gets the ring
        bytes of up to `limit` records as they lie in the ring (each behind
        its 8-byte ring header; a dump's RING frame), the cgroup ids of the
        call records among them, how many records there are (discarded
        ones not counted) and the entries' offsets (ringscan.Entries.index(),
        which a dump stores). Returns that count."""
        return self._reader.poll_raw(sink, timeout, limit)

    def __iter__(self) -> Iterator[AnyEvent]:
        return iter(self._reader)

    def run(self, callback: Callable[[AnyEvent], object],
            duration: float | None = None) -> None:
        """Calls callback for every event until close() or `duration` seconds.
        An exception from the callback stops the loop and propagates."""
        self._reader.run(callback, duration)

    def aevents(self) -> AsyncIterator[AnyEvent]:
        """Events on the running asyncio loop, woken by the ring buffer's
        epoll fd (batched wakeups) or the flush interval, whichever first."""
        return self._reader.aevents()

    @property
    def on_ring(self) -> Callable[[memoryview, set, int, bytes], object] | None:
        """Sees each batch's ring bytes, the cgroups in it and its record count."""
        return self._reader.on_ring

    @on_ring.setter
    def on_ring(self, fn: Callable[[memoryview, set, int, bytes], object] | None) -> None:
        self._reader.on_ring = fn

    # -- what was seen -----------------------------------------------------

    @property
    def rings(self) -> bool:
        """Whether rings' creation and operations are traced."""
        return self.options.ring_events

    @property
    def boot_to_wall(self) -> int:
        """Add to the kernel's CLOCK_BOOTTIME stamps for wall-clock ns."""
        return self._reader.boot_to_wall

    def context(self, cgroup_id: int) -> tuple[str | None, str | None]:
        """(cgroup path, container id), as events carry them."""
        return self._context(cgroup_id) if self._context else (None, None)

    def ring_usage(self) -> tuple[int, int]:
        """(bytes queued and not yet read, the ring's size)."""
        return self._reader.ring_usage()

    def processes(self) -> list[ProcessCounts]:
        """Per process (tgid) with anything coalesced or dropped: pid, comm,
        calls coalesced, and calls dropped by cause; most dropped first."""
        return self._opened(self._counters).processes()

    def aggregates(self) -> list[AggregateCounts]:
        """Per aggregate (uid, cgroup_id) with anything coalesced or
        dropped: the counts of all its processes, running or `ended`."""
        return self._opened(self._counters).aggregates()

    def stats(self) -> Stats:
        """Counters summed over CPUs, plus records user space could not
        decode; "processes": processes() (the top PROCESSES_IN_STATS),
        "aggregates": aggregates() (the top AGGREGATES_IN_STATS)."""
        return self._opened(self._counters).stats(decode_errors=self._reader.decode_errors,
                                                  ledger_evicted=self._reader.ledger.evicted,
                                                  ledger_freed=self._reader.ledger.freed,
                                                  repeat_events=self._reader.repeat_events,
                                                  runs_skipped=sum((self._obj.runs_skipped()
                                                                    or {}).values()))
