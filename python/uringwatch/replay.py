"""Reading dump files back into the same Events the live tracer yields.

Needs no root, no BPF and no libbpf: only Python and msgspec."""

from __future__ import annotations

import collections
import itertools
import mmap
import os
from typing import Iterator

from . import dump, headers, layout
from .decode import DECODERS, Runs, decode_many
from .events import Action, AnyEvent, Event, Op, Repeat
from .filters import Filters
from .ringbuf import BUSY, DISCARD, HDR as RING_HDR, record_step
from .rings import Ledger


_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


class _Contexts(dict):
    """cgroup id -> (path, container id) from a dump's CONTEXT frames, and
    (None, None) for an id it does not describe; looked up in C."""

    def __missing__(self, cgroup_id: int) -> tuple:
        return None, None


def _mapped(path: str, populate: bool):
    """The file's bytes, mapped (b"" if empty); OSError names the file."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        flags = mmap.MAP_SHARED | (_POPULATE if populate else 0)
        return mmap.mmap(f.fileno(), 0, flags, mmap.PROT_READ) if size else b""


def _header(path: str, data) -> tuple[dump.Meta, int]:
    """dump.read_header(), and DumpError for a record ABI with no decoder."""
    meta, start = dump.read_header(data, path)
    if meta.record_abi not in DECODERS:
        raise dump.DumpError(path, 0, dump.EXIT_UNKNOWN_ABI,
                             f"record ABI {meta.record_abi} is not known here")
    return meta, start


class Reader:
    """Events from one or more dump files, with what else they hold."""

    def __init__(self, paths: list[str], filters: Filters | None = None,
                 since_ns: int | None = None, until_ns: int | None = None):
        self.paths = paths
        self.filters = filters if filters and filters.active else None
        self.since_ns, self.until_ns = since_ns, until_ns
        self.problems: list[dump.DumpError] = []
        self.counters: dict[str, dump.Counters] = {}    # run_id -> last counters seen
        self.done_bytes = 0
        self.total_bytes = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
        self._runs: dict[str, Runs] = {}        # run_id -> repeat counting
        self._ledgers: dict[str, Ledger] = {}   # run_id -> registrations seen
        self._others: list[AnyEvent] = []       # --stats: records not calls, decoded
        self.meta: dump.Meta | None = None      # the header of the file being read

    def events(self) -> Iterator[AnyEvent]:
        for path in self.paths:
            for batch in self._file(path, stats=False):
                yield from batch

    def batches(self) -> Iterator[list[AnyEvent]]:
        """The events in lists, one per stretch of the file (for writers)."""
        for path in self.paths:
            for batch in self._file(path, stats=False):
                if batch:
                    yield batch

    def json_batches(self) -> Iterator[list]:
        """Like batches(), for a JSON Lines writer: an event whose line can
        be written from its record's template comes as that line (bytes,
        as decode_many(lines=True) makes them)."""
        for path in self.paths:
            for batch in self._file(path, stats=False, lines=True):
                if batch:
                    yield batch

    def stats(self) -> dict:
        """summary() of the events, counted on the records' fixed headers:
        nothing is decoded but records of another kind or ABI."""
        kept: collections.Counter = collections.Counter()
        for path in self.paths:
            for counts in self._file(path, stats=True):
                kept.update(counts)
        scan = headers.Scan(self.filters, self.since_ns, self.until_ns, 0, True)
        calls, others = Tally(), Tally()
        for row in scan.counted(kept):
            calls.add(*row)
        for ev in self._others:
            others.add_event(ev)
        self._others = []
        return calls.merge(others).report()

    def check(self) -> None:
        """Before anything is printed: OSError for the first file that can't
        be read, and when no file's header reads, that DumpError too (a
        file with a good header is replayed, then the problems reported)."""
        problems = []
        for path in self.paths:
            try:
                _header(path, _mapped(path, populate=False))
            except dump.DumpError as e:
                problems.append(e)
        if problems and len(problems) == len(self.paths):
            raise problems[0]

    def _file(self, path: str, stats: bool, lines: bool = False) -> Iterator[list]:
        # mapped in one go (MAP_POPULATE): a fault per page costs a third of
        # a replay's time
        data = _mapped(path, populate=True)
        try:
            meta, start = _header(path, data)
        except dump.DumpError as e:
            self.problems.append(e)
            return
        self.meta = meta
        yield from self._frames(path, data, start, meta, stats, lines)
        self.done_bytes += len(data)

    def _frames(self, path, data, start, meta, stats, lines) -> Iterator[list]:
        """Per RECORD or RING frame, a list of its kept events, or with
        stats of their header tuples. Headers are read in place (no copy),
        filtered, and only kept records are decoded."""
        context = _Contexts()
        to_wall, run = meta.boot_to_wall_ns, meta.run_id
        scan = headers.Scan(self.filters, self.since_ns, self.until_ns, to_wall, stats)

        runs = self._runs.setdefault(run, Runs())   # rotated files share a run
        ledger = self._ledgers.setdefault(run, Ledger())   # joins ops to registrations

        context_of = context.__getitem__

        def decode_spans(buf, spans, frame, as_lines=lines) -> list:
            """The events of the records at spans, in order, without the
            repeats already counted (as_lines: some as their JSON lines);
            each record that can't be decoded is a problem noted."""
            events, errors = decode_many(buf, spans, to_wall, context_of, runs=runs,
                                         lines=as_lines, follow=ledger.feed)
            for e in errors:
                self.problems.append(dump.DumpError(path, frame.offset, dump.EXIT_DAMAGED,
                                                    str(e)))
            return events

        def kept(ev) -> bool:
            return (self.filters is None or self.filters.matches(ev)) and self._in_time(ev)

        for frame in dump.frames(data, start, path, self.problems):
            if frame.kind in (dump.RECORD, dump.RING):
                yield self._records(frame, path, scan, stats, decode_spans, kept)
            elif frame.kind == dump.CONTEXT:
                c = self._json(path, frame)
                if c is not None:
                    context[c.cgroup_id] = (c.path, c.container_id)
            elif frame.kind in (dump.STATS, dump.END):
                c = self._json(path, frame)
                if c is not None:
                    self.counters[run] = c
            else:
                self.problems.append(dump.DumpError(path, frame.offset,
                                                    dump.EXIT_UNKNOWN_FRAME,
                                                    f"unknown frame kind {frame.kind}"))

    def _records(self, frame, path, scan, stats, decode_spans, kept):
        """The kept records of one frame: a list of events, or with stats a
        Counter of their header tuples (ring-shaped: a length word first, as
        scan.ring reads)."""
        buf, out = frame.payload, []
        if stats and frame.kind == dump.RING:
            counts = self._ring_counts(buf, scan)
            if counts is not None:
                return counts
        elif frame.kind == dump.RING:
            spans = self._uniform_kept(buf, scan)
            if spans is not None:
                return decode_spans(buf, spans, frame) if spans else []

        def careful(off, size):     # another kind or ABI, or damage: decode, then judge
            ev = next(iter(decode_spans(buf, [(off, size)], frame, as_lines=False)), None)
            if ev is None or not kept(ev):
                return
            if stats and not isinstance(ev, Event):
                self._others.append(ev)     # summarised apart: Tally.merge()
            else:
                out.append(scan.header_of(ev) if stats else ev)

        if frame.kind == dump.RECORD:
            size = len(buf)
            h = (size, *scan.record.unpack_from(buf)) if size >= scan.record.size else ()
            if scan.valid(h, size):
                if scan.keep is None or scan.keep(h):
                    out += [h] if stats else decode_spans(buf, [(0, size)], frame)
            else:
                careful(0, size)
        else:
            self._ring(buf, frame, path, scan, stats, out, careful, decode_spans)
        return collections.Counter(out) if stats else out

    @staticmethod
    def _ring_counts(buf, scan) -> collections.Counter | None:
        """--stats over a RING frame, fastest: every record's header tuple
        counted in C, then each distinct value judged (valid, kept) once.
        None when any record needs care (a short tail, another kind, damage):
        the caller then takes the record-by-record loop."""
        size_mask = ~(BUSY | DISCARD)
        counts = Reader._uniform_counts(buf, scan)
        if counts is None:
            rows = Reader._walk_rows(buf, scan)
            if rows is None:
                return None
            counts = collections.Counter(rows)
        if not scan.all_valid(counts, size_mask):
            return None
        if scan.keep is not None:
            counts = collections.Counter({h: n for h, n in counts.items() if scan.keep(h)})
        return counts

    @staticmethod
    def _uniform(buf, scan) -> tuple | None:
        """When every entry of the frame may have the first one's length
        word (a flood of one kind of call): (its step, the length word,
        the header tuples read at that step, in C). Only every tuple having
        that length word proves the fixed step was the true walk (by
        induction from the first entry): the caller checks."""
        at, n = RING_HDR.size, len(buf)
        if n < at:
            return None
        first = RING_HDR.unpack_from(buf, 0)[0]
        _, step = record_step(first)
        if first & DISCARD or n % step or step < scan.ring.size:
            return None
        return step, first, scan.stepped(step).iter_unpack(buf)

    @staticmethod
    def _uniform_counts(buf, scan) -> collections.Counter | None:
        """--stats of a uniform frame: its header tuples counted in C."""
        uniform = Reader._uniform(buf, scan)
        if uniform is None:
            return None
        _, first, rows = uniform
        counts = collections.Counter(rows)
        return counts if all(h[0] == first for h in counts) else None

    @staticmethod
    def _uniform_kept(buf, scan) -> list | None:
        """A pass over a uniform frame: the (offset, size) of each kept
        record, each distinct header tuple judged (valid, kept) once.
        None when the frame is not uniform or a record needs care."""
        uniform = Reader._uniform(buf, scan)
        if uniform is None:
            return None
        step, first, rows = uniform
        rows = list(rows)
        distinct = set(rows)
        if (any(h[0] != first for h in distinct)
                or not scan.all_valid(distinct, ~(BUSY | DISCARD))):
            return None
        size, _ = record_step(first)
        at = range(RING_HDR.size, len(buf), step)
        if scan.keep is None:
            return list(zip(at, itertools.repeat(size, len(at))))
        keep = {h: scan.keep(h) for h in distinct}
        return [(pos, size) for pos in itertools.compress(at, map(keep.__getitem__, rows))]

    @staticmethod
    def _walk_rows(buf, scan):
        """The header tuples of a RING frame's entries, walked one by one;
        None if the walk does not end exactly at the frame's end."""
        unpack, last, out = scan.ring.unpack_from, len(buf) - scan.ring.size, []
        append, pad = out.append, RING_HDR.size + 7
        pos = 0
        # a discarded entry's DISCARD bit sends pos past the end: None, and
        # the careful loop skips it
        while pos <= last:
            h = unpack(buf, pos)
            append(h)
            pos = (pos + h[0] + pad) & ~7
        return out if pos == len(buf) else None

    def _ring(self, buf, frame, path, scan, stats, out, careful, decode_spans) -> None:
        """The fast loop over a RING frame: one unpack per record reads the
        ring header's length word and the header fields this pass needs;
        scan.valid() is written out inline (a call per record costs as much
        as the test). Kept records are decoded in runs, in order: up to the
        next record that needs care, or the frame's end."""
        unpack, need, keep, lens = scan.ring.unpack_from, scan.ring.size, scan.keep, scan.lens
        kind, abi, call = layout.KIND_CALL, layout.ABI_VERSION, headers.CALL_SIZE
        at_kind, at_abi, at_size = scan.at["kind"], scan.at["abi"], scan.at["size"]
        at, discard, size_mask = RING_HDR.size, DISCARD, ~(BUSY | DISCARD)
        pos, n, spans = 0, len(buf), []     # spans: kept records not decoded yet
        while pos < n:
            if pos + need <= n:
                h = unpack(buf, pos)
            elif pos + at <= n:         # a record shorter than the header, at the end
                h = RING_HDR.unpack_from(buf, pos)
            else:
                self._damaged(path, frame, "ring frame ends mid-header")
                break
            length = h[0]
            size = length & size_mask
            end = pos + at + size
            if end > n:
                self._damaged(path, frame, "a record runs past its ring frame's end")
                break
            if length & discard:
                pass
            elif (len(h) > 2 and h[at_kind] == kind and h[at_abi] == abi
                  and h[at_size] == size >= call
                  and (lens is None or headers.data_len(h, lens) == size - call)):
                if keep is None or keep(h):
                    if stats:
                        out.append(h)
                    else:
                        spans.append((pos + at, size))
            else:
                if spans:
                    out += decode_spans(buf, spans, frame)
                    spans = []
                careful(pos + at, size)
            pos = (end + 7) & ~7
        if spans:
            out += decode_spans(buf, spans, frame)

    def _damaged(self, path, frame, what) -> None:
        self.problems.append(dump.DumpError(path, frame.offset, dump.EXIT_DAMAGED, what))

    def _json(self, path, frame):
        """The frame's Struct, or None with the problem noted."""
        try:
            return dump.read_json(frame, path)
        except dump.DumpError as e:
            self.problems.append(e)
            return None

    def _in_time(self, ev: Event) -> bool:
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
            total.update(dump.counts(c, dump.COUNTS))
        return dict(total)

    def process_drops(self) -> dict[str, dict]:
        """"pid comm" -> calls coalesced and dropped by cause, summed over
        the recorded runs (each run's latest); most dropped first."""
        total: dict[str, collections.Counter] = {}
        for c in self.counters.values():
            for p in c.processes or ():     # UNSET in files from before fairness
                total.setdefault(f"{p.pid} {p.comm}", collections.Counter()).update(
                    dump.counts(p, dump.PROCESS_COUNTS))
        return _ranked(total)

    def aggregate_drops(self) -> dict[str, dict]:
        """"uid cgroup_id" -> its processes' calls coalesced and dropped by
        cause, and how many of them ended, summed over the recorded runs
        (each run's latest); most dropped first."""
        total: dict[str, collections.Counter] = {}
        for c in self.counters.values():
            for a in c.aggregates or ():    # UNSET in files from before aggregates
                total.setdefault(f"{a.uid} {a.cgroup_id}", collections.Counter()).update(
                    dump.counts(a, ("ended", *dump.PROCESS_COUNTS)))
        return _ranked(total)


def _ranked(total: dict[str, collections.Counter]) -> dict[str, dict]:
    """Most dropped first (coalesced calls and ended processes are no drops)."""
    ranked = sorted(total.items(), key=lambda kv: -sum(
        v for k, v in kv[1].items() if k not in ("coalesced", "ended")))
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
    tally = Tally()
    for ev in events:
        tally.add_event(ev)
    return tally.report()


class Tally:
    """--stats of events, or of calls counted on their records' headers
    (Reader.stats()): what summary() reports."""

    def __init__(self):
        self.events = self.changed = 0
        self.by_op, self.by_proc, self.errors, self.repeats = (
            collections.Counter() for _ in range(4))

    def add(self, op: str, process: str, changed: bool, error: str | None, n: int = 1,
            op_n: int | None = None) -> None:
        """n events of one opcode name ("SETUP", "OP_..." for rings and
        operations) and process ("pid comm"); op_n: counted by opcode
        instead of n."""
        self.events += n
        self.by_op[op] += n if op_n is None else op_n
        self.by_proc[process] += n
        self.changed += n if changed else 0
        if error:
            self.errors[error] += n

    def add_event(self, ev: AnyEvent) -> None:
        if isinstance(ev, Repeat):
            self.repeats[f"{ev.pid} {ev.comm}"] += ev.count
            return
        op, op_n = ev.opcode_name if isinstance(ev, Event) else "SETUP", None
        if isinstance(ev, Op):      # operations counted once, by their counts
            op, op_n = f"OP_{ev.opcode_name}", ev.count if ev.reason == "count" else 0
        elif isinstance(ev, Action):    # counted by their ops' counts already
            op, op_n = f"OP_{ev.opcode_name}", 0
        toctou = getattr(ev, "toctou", None)
        self.add(op, f"{ev.pid} {ev.comm}", bool(toctou and toctou.changed),
                 getattr(ev, "error", None), op_n=op_n)

    def merge(self, other: Tally) -> Tally:
        """This tally and another; where counts tie, this one's names come
        first, by rank (as replay has always printed them)."""
        self.events += other.events
        self.changed += other.changed
        for mine, theirs in ((self.by_op, other.by_op), (self.by_proc, other.by_proc),
                             (self.errors, other.errors), (self.repeats, other.repeats)):
            ranked = mine.most_common()
            mine.clear()
            mine.update(dict(ranked))
            mine.update(theirs)
        return self

    def report(self) -> dict:
        def ranked(c):
            return dict(c.most_common())
        return {"events": self.events, "toctou_changed": self.changed,
                "errors": ranked(self.errors), "by_opcode": ranked(self.by_op),
                "by_process": ranked(self.by_proc),
                "coalesced_by_process": ranked(self.repeats)}
