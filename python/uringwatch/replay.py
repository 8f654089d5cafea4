"""Reading dump files back into the same Events the live tracer yields.

Needs no root, no BPF and no libbpf: only Python and msgspec."""

from __future__ import annotations

import collections
import json
import mmap
import os
from typing import Callable, Iterator

from . import dump
from .decode import DECODERS, RecordError, Runs
from .events import AnyEvent, Event, Op, Repeat
from .filters import Filters
from .rings import Ledger



class Reader:
    """Events from one or more dump files, with what else they hold."""

    def __init__(self, paths: list[str], filters: Filters | None = None,
                 since_ns: int | None = None, until_ns: int | None = None):
        self.paths = paths
        self.filters = filters if filters and filters.active else None
        self.since_ns, self.until_ns = since_ns, until_ns
        self.problems: list[dump.DumpError] = []
        self.counters: dict[str, dict] = {}     # run_id -> last counters seen
        self._runs: dict[str, Runs] = {}        # run_id -> repeat counting
        self._ledgers: dict[str, Ledger] = {}   # run_id -> registrations seen
        self.done_bytes = 0
        self.total_bytes = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))

    def events(self) -> Iterator[AnyEvent]:
        for path in self.paths:
            yield from self._file(path)

    def _file(self, path: str) -> Iterator[AnyEvent]:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        try:
            meta, start = dump.read_header(data, path)
        except dump.DumpError as e:
            self.problems.append(e)
            return
        abi = meta.get("record_abi")
        if abi not in DECODERS:
            self.problems.append(dump.DumpError(path, 0, dump.EXIT_UNKNOWN_ABI,
                                                f"record ABI {abi} is not known here"))
            return
        yield from self._frames(path, data, start, meta, DECODERS[abi])
        self.done_bytes += size

    def _frames(self, path, data, start, meta, decoder) -> Iterator[AnyEvent]:
        context: dict[int, tuple] = {}
        to_wall = int(meta.get("boot_to_wall_ns", 0))
        run = str(meta.get("run_id", path))
        runs = self._runs.setdefault(run, Runs())   # rotated files share a run
        match = self.filters.matches if self.filters else None
        ledger = self._ledgers.setdefault(run, Ledger())   # joins ops to registrations
        for frame in dump.frames(data, start, path, self.problems):
            if frame.kind == dump.RECORD:
                try:
                    ev = ledger.feed(decoder(frame.payload, 0, len(frame.payload), to_wall,
                                             lambda cg: context.get(cg, (None, None)),
                                             runs=runs))
                except RecordError as e:
                    self.problems.append(dump.DumpError(path, frame.offset,
                                                        dump.EXIT_DAMAGED, str(e)))
                    continue
                if ev is not None and (match is None or match(ev)) and self._in_time(ev):
                    yield ev
            elif frame.kind == dump.CONTEXT:
                c = self._json(path, frame)
                if c is not None:
                    context[c.get("cgroup_id")] = (c.get("path"), c.get("container_id"))
            elif frame.kind in (dump.STATS, dump.END):
                c = self._json(path, frame)
                if c is not None:
                    self.counters[run] = c
            else:
                self.problems.append(dump.DumpError(path, frame.offset,
                                                    dump.EXIT_UNKNOWN_FRAME,
                                                    f"unknown frame kind {frame.kind}"))

    def _json(self, path, frame):
        try:
            obj = json.loads(frame.payload)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self.problems.append(dump.DumpError(path, frame.offset, dump.EXIT_DAMAGED,
                                                "frame is not a JSON object"))
            return None
        return obj

    def _in_time(self, ev: AnyEvent) -> bool:
        return ((self.since_ns is None or ev.ts >= self.since_ns)
                and (self.until_ns is None or ev.ts <= self.until_ns))

    def raise_problems(self) -> None:
        """The first problem, saying how many more there were."""
        if self.problems:
            first = self.problems[0]
            more = len(self.problems) - 1
            if more:
                first.args = (f"{first.args[0]} (and {more} more problems)",)
            raise first

    def drops(self) -> dict[str, int]:
        """Counters summed over the recorded runs (each run's latest)."""
        total: collections.Counter = collections.Counter()
        for c in self.counters.values():
            total.update({k: v for k, v in c.items() if isinstance(v, int)})
        return dict(total)

    def process_drops(self) -> dict[str, dict]:
        """"pid comm" -> calls coalesced and dropped by cause, summed over
        the recorded runs (each run's latest); most dropped first."""
        total: dict[str, collections.Counter] = {}
        for c in self.counters.values():
            for p in c.get("processes", []) if isinstance(c.get("processes"), list) else []:
                if isinstance(p, dict):
                    key = f"{p.get('pid')} {p.get('comm')}"
                    total.setdefault(key, collections.Counter()).update(
                        {k: v for k, v in p.items() if k not in ("pid", "comm")
                         and isinstance(v, int)})
        ranked = sorted(total.items(), key=lambda kv: -sum(
            v for k, v in kv[1].items() if k != "coalesced"))
        return {k: dict(v) for k, v in ranked}


def replay(*paths: str, filters: Filters | None = None) -> Iterator[AnyEvent]:
    """The events of dump files, in order; raises DumpError after the last
    one it could decode if any file is damaged."""
    r = Reader(list(paths), filters)
    yield from r.events()
    r.raise_problems()


def summary(events: Iterator[AnyEvent]) -> dict:
    """--stats: counts per opcode and process, TOCTOU changes, errors;
    calls coalesced into repeat records per process."""
    by_op, by_proc, errors, repeats = (collections.Counter() for _ in range(4))
    n = changed = 0
    for ev in events:
        if isinstance(ev, Repeat):
            repeats[f"{ev.pid} {ev.comm}"] += ev.count
            continue
        n += 1
        if isinstance(ev, Op):      # operations counted once, by their counts
            by_op[f"OP_{ev.opcode_name}"] += ev.count if ev.reason == "count" else 0
        else:
            by_op[ev.opcode_name if isinstance(ev, Event) else "SETUP"] += 1
        by_proc[f"{ev.pid} {ev.comm}"] += 1
        changed += bool(getattr(ev, "toctou", None) and ev.toctou.changed)
        if getattr(ev, "error", None):
            errors[ev.error] += 1
    return {"events": n, "toctou_changed": changed, "errors": dict(errors.most_common()),
            "by_opcode": dict(by_op.most_common()), "by_process": dict(by_proc.most_common()),
            "coalesced_by_process": dict(repeats.most_common())}
