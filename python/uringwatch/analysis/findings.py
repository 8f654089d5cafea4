"""Findings: events matched against rules held as data (rules.toml), with
conditions in CEL. A rule looks only at the event kinds and opcodes it
names (a dict lookup), so CEL, which costs a conversion of the event, runs
on candidates only (docs/BENCHMARKS.md, Findings)."""

from __future__ import annotations

import collections
import importlib.resources
import os
from typing import Iterable, Literal

import msgspec

from ..errors import TracerError
from ..record.events import AnyEvent, Evidence, Finding

EVIDENCE_MAX = 16       # evidence kept per finding: the newest
PARTIALS_MAX = 16       # a sequence's unfinished matches kept per key
ONCE_MAX = 1 << 16      # remembered once_per values per rule, oldest forgotten
Severity = Literal["info", "low", "medium", "high", "critical"]
Kind = Literal["call", "repeat", "ring", "op", "action"]
_KIND_OF = {"Event": "call", "Repeat": "repeat", "Ring": "ring", "Op": "op", "Action": "action"}


class RulesError(TracerError):
    """A rules file that can't be used: said in one line."""


class Count(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    at_least: int
    within_s: float
    per: str = "pid"


class Allow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    exe: list[str] = []
    comm: list[str] = []
    container: list[str] = []       # ids, or prefixes of them
    uid: list[int] = []

    def covers(self, ev, exe_of) -> bool:
        if self.comm and ev.comm in self.comm:
            return True
        if self.uid and getattr(ev, "uid", None) in self.uid:
            return True
        cid = getattr(ev, "container_id", None)
        if cid and any(cid.startswith(c) for c in self.container):
            return True
        return bool(self.exe) and exe_of(ev.pid) in self.exe


class Step(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kinds: list[Kind]
    when: str


class Unless(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An event that cancels the rule's later matches sharing its `same`
    fields' values (and its sequences' unfinished ones)."""
    kinds: list[Kind]
    same: list[str]
    when: str = "true"
    opcodes: list[str] = []


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    title: str
    severity: Severity
    technique: str
    explanation: str
    kinds: list[Kind]
    when: str = "true"
    opcodes: list[str] = []
    require: dict[str, bool | int | str] = {}   # field values, checked before CEL
    differ: list[str] = []          # two fields, both set and unequal, checked before CEL
    count: Count | None = None
    sequence: list[Step] = []
    per: str = "pid"                # a sequence's key field
    within_s: float = 60.0          # a sequence's window
    once_per: list[str] = []
    unless: list[Unless] = []
    allow: Allow = Allow()


class RulesFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: int = 0
    rule: list[Rule] = []
    disable: list[str] = []
    allow: Allow = Allow()


def shipped_text() -> str:
    return importlib.resources.files("uringwatch").joinpath("rules.toml").read_text()


def _parse(text: str, name: str) -> RulesFile:
    try:
        return msgspec.toml.decode(text, type=RulesFile)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise RulesError(f"rules {name}: {e}") from None


class Ruleset:
    """The shipped rules, with users' files applied in order."""

    def __init__(self, paths: Iterable[str] = ()):
        shipped = _parse(shipped_text(), "(shipped)")
        self.version = shipped.version
        rules = {r.id: r for r in shipped.rule}
        disabled, allows = set(shipped.disable), [shipped.allow]
        for path in paths:
            try:
                text = open(path, encoding="utf-8").read()
            except (OSError, UnicodeDecodeError) as e:
                raise RulesError(f"rules {path}: {getattr(e, 'strerror', None) or e}") from None
            extra = _parse(text, path)
            rules.update({r.id: r for r in extra.rule})
            disabled |= set(extra.disable)
            allows.append(extra.allow)
        unknown = disabled - rules.keys()
        if unknown:
            raise RulesError(f"rules: no rule to disable named {', '.join(sorted(unknown))}")
        self.rules = [r for r in rules.values() if r.id not in disabled]
        self.allows = allows


def facts(ev) -> dict:
    """What rules need that CEL can't compute cheaply."""
    out = {"overlapping_iovecs": 0}
    payload = getattr(ev, "payload", None)
    iovecs = getattr(payload, "iovecs", None)
    if iovecs:
        out["overlapping_iovecs"] = _overlapping(iovecs) + _same_backing(ev.memory or ())
    return out


def _overlapping(iovecs) -> int:
    """Iovecs whose bytes overlap an earlier one's (sorted by address).
    Adjacent buffers sharing a page do not count: fio's unaligned ones do."""
    repeats, reach = 0, None
    for start, end in sorted((v.base, v.base + v.len) for v in iovecs if v.len):
        if reach is not None and start < reach:
            repeats += 1
        reach = end if reach is None else max(reach, end)
    return repeats


def _same_backing(memory) -> int:
    """Buffers at another address backed by the same file bytes as an
    earlier one (one memfd page mapped many times over: CVE-2023-2598)."""
    seen, repeats = {}, 0
    for m in memory:
        if m.ino is None or m.offset is None:
            continue
        key = (m.dev, m.ino, m.offset)
        repeats += seen.get(key, m.addr) != m.addr
        seen.setdefault(key, m.addr)
    return repeats


def _data(ev) -> dict:
    """The event as CEL sees it."""
    data = msgspec.to_builtins(ev)
    data["facts"] = facts(ev)
    return data


def _index(kinds, opcodes):
    """The (kind, opcode) keys a rule or an unless is looked up by: calls
    and repeats by their opcode names, if it names any."""
    for kind in kinds:
        for op in (opcodes or [None]) if kind in ("call", "repeat") else [None]:
            yield kind, op


def _evidence(ev, kind: str) -> Evidence:
    return Evidence(kind, ev.ts, ev.pid, ev.tid, getattr(ev, "ring_id", None),
                    getattr(ev, "opcode_name", None))


class _Compiled:
    """One rule with its CEL programs and its state."""

    def __init__(self, rule: Rule, cel):
        self.rule = rule
        try:
            self.when = cel.compile(rule.when)
            self.steps = [cel.compile(s.when) for s in rule.sequence]
            self.unless = [cel.compile(u.when) for u in rule.unless]
        except Exception as e:          # the binding raises ValueError and its own
            raise RulesError(f"rule {rule.id}: {e}") from None
        self.windows: dict = collections.defaultdict(collections.deque)
        self.partials: dict = collections.defaultdict(list)
        self.once: dict = {}
        self.cancelled: list[dict] = [{} for _ in rule.unless]  # per unless: values seen
        if any(not u.same for u in rule.unless):
            raise RulesError(f"rule {rule.id}: an unless names the fields it shares (same)")
        self._require = tuple(rule.require.items())
        self._differ = tuple(rule.differ)
        if self._differ and len(self._differ) != 2:
            raise RulesError(f"rule {rule.id}: differ names two fields")
        self._first_kinds = frozenset(rule.sequence[0].kinds) if rule.sequence else None

    def cheap(self, ev, kind: str) -> bool:
        """Whether the event can match, by plain field reads (no CEL):
        loops, not generators, as this runs for every candidate."""
        for field, value in self._require:
            if getattr(ev, field, None) != value:
                return False
        if self._differ:
            a, b = getattr(ev, self._differ[0], None), getattr(ev, self._differ[1], None)
            if a is None or b is None or a == b:
                return False
        if self._first_kinds is not None and kind not in self._first_kinds:
            return bool(self.partials.get(getattr(ev, self.rule.per, None)))
        return True


    def cancel(self, i: int, data: dict) -> None:
        """Unless number i matched `data`: its values cancel later matches
        and the unfinished sequences that began with them."""
        fields = self.rule.unless[i].same
        key = tuple(data.get(f) for f in fields)
        if None in key:
            return
        seen = self.cancelled[i]
        if len(seen) >= ONCE_MAX:
            del seen[next(iter(seen))]
        seen[key] = True
        for per, partials in self.partials.items():
            self.partials[per] = [p for p in partials
                                  if tuple(p[0][1].get(f) for f in fields) != key]

    def is_cancelled(self, data: dict) -> bool:
        for u, seen in zip(self.rule.unless, self.cancelled):
            if seen and tuple(data.get(f) for f in u.same) in seen:
                return True
        return False


class Engine:
    """Feeds events to the rules; feed() returns the findings they make.
    `errors` counts, per rule id, evaluations that failed (a condition
    reading a field an event lacks)."""

    def __init__(self, ruleset: Ruleset | None = None, live: bool = False):
        try:
            import cel
        except ImportError:
            raise RulesError("findings need the CEL package: pip install "
                             "'uringwatch[findings]'") from None
        self._cel = cel
        self.ruleset = ruleset or Ruleset()
        self.errors: collections.Counter = collections.Counter()
        self.fired: collections.Counter = collections.Counter()
        self._live = live
        self._exes: dict[int, str | None] = {}
        self._by_kind: dict[tuple, list[_Compiled]] = collections.defaultdict(list)
        self._unless: dict[tuple, list[tuple]] = collections.defaultdict(list)
        for rule in self.ruleset.rules:
            c = _Compiled(rule, cel)
            for kind, op in _index(rule.kinds, rule.opcodes):
                self._by_kind[kind, op].append(c)
            for i, u in enumerate(rule.unless):
                for kind, op in _index(u.kinds, u.opcodes):
                    self._unless[kind, op].append((c, i))

    def feed(self, events: Iterable[AnyEvent]) -> list[Finding]:
        out: list[Finding] = []
        for ev in events:
            kind = _KIND_OF.get(type(ev).__name__)
            if kind is None:            # a finding, or a JSON line
                continue
            candidates = self._by_kind.get((kind, None), [])
            cancels = self._unless.get((kind, None), []) if self._unless else []
            op = getattr(ev, "opcode_name", None)
            if op is not None and kind in ("call", "repeat"):
                candidates = candidates + self._by_kind.get((kind, op), [])
                if self._unless:
                    cancels = cancels + self._unless.get((kind, op), [])
            data = self._cancel(ev, cancels) if cancels else None
            if candidates:
                self._match(ev, kind, candidates, out, data)
        return out

    def _cancel(self, ev, cancels: list[tuple]) -> dict:
        """Marks what the unless conditions the event matches cancel."""
        data = _data(ev)
        ctx = self._cel.Context({"event": data})
        for c, i in cancels:
            try:
                if c.unless[i].execute(ctx) is True:
                    c.cancel(i, data)
            except Exception:           # CEL's errors have no common base class
                self.errors[c.rule.id] += 1
        return data

    def _match(self, ev, kind: str, candidates: list[_Compiled], out: list,
               data: dict | None) -> None:
        candidates = [c for c in candidates if c.cheap(ev, kind)]
        if not candidates or any(a.covers(ev, self._exe) for a in self.ruleset.allows):
            return
        data = data or _data(ev)
        ctx = self._cel.Context({"event": data})
        for c in candidates:
            if c.rule.allow.covers(ev, self._exe) or (c.rule.unless and c.is_cancelled(data)):
                continue
            try:
                found = self._step(c, ev, kind, data, ctx)
            except Exception:           # CEL's errors have no common base class
                self.errors[c.rule.id] += 1
                continue
            if found:
                out.append(self._finding(c.rule, ev, found))

    def _step(self, c: _Compiled, ev, kind: str, data: dict, ctx) -> list | None:
        """The evidence when the rule fires on this event, else None."""
        r = c.rule
        if r.sequence:
            return self._sequence(c, ev, kind, data)
        if c.when.execute(ctx) is not True:
            return None
        if r.once_per:
            key = tuple(data.get(f) for f in r.once_per)
            if key in c.once:
                return None
            if len(c.once) >= ONCE_MAX:
                del c.once[next(iter(c.once))]
            c.once[key] = True
        if r.count is None:
            return [_evidence(ev, kind)]
        return self._counted(c, ev, kind, data)

    def _counted(self, c: _Compiled, ev, kind: str, data: dict) -> list | None:
        n = c.rule.count
        key = data.get(n.per)
        if key is None:             # nothing to count it with (a repeat has no ring id)
            return None
        window = c.windows[key]
        window.append((ev.ts, getattr(ev, "count", 1) if kind == "repeat" else 1,
                       _evidence(ev, kind)))
        while window and ev.ts - window[0][0] > n.within_s * 1e9:
            window.popleft()
        if sum(w for _, w, _ in window) < n.at_least:
            return None
        found = [e for _, _, e in window]
        window.clear()
        return found

    def _sequence(self, c: _Compiled, ev, kind: str, data: dict) -> list | None:
        r = c.rule
        key = data.get(r.per)
        if key is None:
            return None
        partials = [p for p in c.partials[key] if ev.ts - p[0][0] <= r.within_s * 1e9]
        found = None
        for p in list(partials):
            if kind not in r.sequence[len(p)].kinds:
                continue
            steps = [d for _, d, _ in p]
            ctx = self._cel.Context({"event": data, "steps": steps})
            if c.steps[len(p)].execute(ctx) is True:
                done = p + [(ev.ts, data, _evidence(ev, kind))]
                partials.remove(p)
                if len(done) == len(c.steps):
                    found = [e for _, _, e in done]
                    break
                partials.append(done)
        if found is None and kind in r.sequence[0].kinds and c.steps[0].execute(
                self._cel.Context({"event": data, "steps": []})) is True:
            partials = (partials + [[(ev.ts, data, _evidence(ev, kind))]])[-PARTIALS_MAX:]
        c.partials[key] = partials
        return found

    def _finding(self, rule: Rule, ev, evidence: list[Evidence]) -> Finding:
        self.fired[rule.id] += 1
        return Finding(ts=ev.ts, rule=rule.id, title=rule.title, severity=rule.severity,
                       technique=rule.technique, explanation=rule.explanation,
                       pid=ev.pid, comm=ev.comm, uid=getattr(ev, "uid", None),
                       ring_id=getattr(ev, "ring_id", None),
                       container_id=getattr(ev, "container_id", None),
                       evidence=evidence[-EVIDENCE_MAX:],
                       rules_version=self.ruleset.version)

    def _exe(self, pid: int) -> str | None:
        """The process's executable, live only (a recording has none)."""
        if not self._live:
            return None
        if pid not in self._exes:
            if len(self._exes) > ONCE_MAX:
                self._exes.clear()
            try:
                self._exes[pid] = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                self._exes[pid] = None
        return self._exes[pid]
