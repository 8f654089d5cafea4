"""Reading dump files back into the same Events the live tracer yields.

Needs no root, no BPF and no libbpf: only Python, msgspec and xxhash."""

from __future__ import annotations

import collections
import itertools
import mmap
import os
from operator import itemgetter
from typing import Iterator

from . import dump
from ..record import headers, ringscan
from ..record.decode import DECODERS, Runs, decode_many
from ..record.events import Action, AnyEvent, Event, Op, Repeat
from ..record.filters import Filters
from ..record.headers import CARE, KEEP, SKIP
from ..record.reports import Summary
from ..record.rings import Ledger


_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_length = itemgetter(0)


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

    def stats(self) -> Summary:
        """What stats_of() gives for the events, counted on the records' fixed headers:
        nothing is decoded but records of another kind or ABI."""
        kept: collections.Counter = collections.Counter()
        for path in self.paths:
            for counts in self._file(path, stats=True):
                for part in counts:
                    kept.update(part)
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
        list of parts to count, in order: Counters or lists of their header
        tuples (ring-shaped: a length word first, as scan.ring reads)."""
        buf = frame.payload
        out: list = []

        def careful(off, size):
            """Another kind or ABI, or damage: decoded, then judged. The
            event kept, or with stats a call's header tuple; else None."""
            ev = next(iter(decode_spans(buf, [(off, size)], frame, as_lines=False)), None)
            if ev is None or not kept(ev):
                return None
            if stats and not isinstance(ev, Event):
                self._others.append(ev)     # summarised apart: Tally.merge()
                return None
            return scan.header_of(ev) if stats else ev

        if frame.kind == dump.RECORD:
            size = len(buf)
            h = (size, *scan.record.unpack_from(buf)) if size >= scan.record.size else ()
            if not scan.valid(h, size):
                got = careful(0, size)
                kept_here = [] if got is None else [got]
            elif scan.keep is None or scan.keep(h):
                kept_here = [h] if stats else decode_spans(buf, [(0, size)], frame)
            else:
                kept_here = []
            return [kept_here] if stats else kept_here
        for got in self._entries(path, frame, scan):
            if stats:
                out.append(self._count(got, scan, careful))
            else:
                self._keep(buf, frame, got, scan, out, careful, decode_spans)
        return out

    def _entries(self, path, frame, scan) -> Iterator[ringscan.Entries]:
        """A RING frame's entries: from its index in one go, checked in C
        (format 3), or walked (older formats, or an index that does not
        match, which is damage said aloud); a walk's damage noted after
        the entries before it."""
        buf = frame.payload
        if frame.index is not None:
            got = ringscan.indexed(buf, frame.index, scan.ring)
            if got is not None:
                yield got
                return
            self._damaged(path, frame, "ring frame's index does not match its records")
        pos, n = 0, len(buf)
        while pos < n:
            got = ringscan.walk(buf, pos, n, scan.ring)
            yield got
            if got.ended:
                self._damaged(path, frame, got.ended)
                return
            pos = got.end

    @staticmethod
    def _count(got, scan, careful) -> collections.Counter | list:
        """--stats of walked entries, for a Counter to count in C: their
        header tuples counted in C and each distinct one judged once;
        where the decoder must judge some, the kept tuples in order, with
        those it judged."""
        counts = collections.Counter(got.each_row())
        judged = scan.verdicts(list(counts))
        if CARE not in judged:
            return collections.Counter(dict(itertools.compress(counts.items(), judged))) \
                if SKIP in judged else counts
        rows = got.rows
        judged = scan.verdicts(rows)
        out = []
        for at, h, ok in zip(got.at, rows, judged):
            if ok == KEEP:
                out.append(h)
            elif ok == CARE and (h := careful(at, h[0])) is not None:
                out.append(h)
        return out

    @staticmethod
    def _keep(buf, frame, got, scan, out: list, careful, decode_spans) -> None:
        """The events of walked entries: each distinct header tuple judged
        once, kept records decoded in runs, in order, up to the next that
        needs the decoder's judgement."""
        rows = got.rows
        judged = scan.verdicts(rows)
        if CARE not in judged:
            if KEEP not in judged:
                return
            if SKIP not in judged:
                spans = got.spans()
            else:
                spans = list(zip(itertools.compress(got.at, judged),
                                 map(_length, itertools.compress(rows, judged))))
            if spans:
                out += decode_spans(buf, spans, frame)
            return
        spans = []
        for at, h, ok in zip(got.at, rows, judged):
            if ok == KEEP:
                spans.append((at, h[0]))
            elif ok == CARE:
                if spans:
                    out += decode_spans(buf, spans, frame)
                    spans = []
                if (ev := careful(at, h[0])) is not None:
                    out.append(ev)
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


def stats_of(events: Iterator[AnyEvent]) -> Summary:
    """--stats: counts per opcode and process, TOCTOU changes, errors;
    calls coalesced into repeat records per process."""
    tally = Tally()
    for ev in events:
        tally.add_event(ev)
    return tally.report()


class Tally:
    """--stats of events, or of calls counted on their records' headers
    (Reader.stats()): what stats_of() reports."""

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

    def report(self) -> Summary:
        def ranked(c):
            return dict(c.most_common())
        return Summary(events=self.events, toctou_changed=self.changed,
                       errors=ranked(self.errors), by_opcode=ranked(self.by_op),
                       by_process=ranked(self.by_proc),
                       coalesced_by_process=ranked(self.repeats))
