"""Which calls to keep: applied in the kernel when tracing live, and to
decoded events or to call records' headers when replaying, with the same
meaning. RULES is the one definition: Filters.matches(), the header test of
replay's fast path and the BPF object's filter knobs are all made from it
(bpf/filters.h applies the knobs)."""

from __future__ import annotations

import argparse
import functools
import typing
from typing import Any, Callable, Container, NamedTuple

import msgspec

from .events import Action, AnyEvent, Event, Op, Repeat
from .layout import cstr
from .opcodes import USE_REGISTERED_RING

COMM_LEN = 16
ANY_UID = 0xFFFFFFFF        # targ_uid without a uid filter


class _Comm:
    """The records whose comm field reads as one command name. Without a
    NUL or U+FFFD (what bytes that are not UTF-8 read as) in the name,
    those are the fields that start with its bytes and a NUL: a test in C
    instead of a decode."""

    def __init__(self, comm: str):
        self.comm, self.prefix = comm, comm.encode() + b"\0"
        self.plain = not {"\0", "\ufffd"} & set(comm)

    def __contains__(self, raw: bytes) -> bool:
        return raw.startswith(self.prefix) if self.plain else cstr(raw) == self.comm


def _any_ring(opcodes: frozenset[int]) -> frozenset[int]:
    """Opcodes as records carry them: with or without the registered-ring
    bit (a set lookup, faster than masking the bit off first)."""
    return frozenset(op | bit for op in opcodes for bit in (0, USE_REGISTERED_RING))


def _mask(opcodes) -> int:
    return sum(1 << op for op in opcodes) if opcodes else 0


NEGATIVE = range(-(1 << 63), 0)     # a ret that is an error, tested by `in` (in C)


class Rule(NamedTuple):
    """One filter: the Filters field, the call record field it tests (the
    events' attribute of the same name), the values it keeps (from the
    filter's value, a container that `in` tests), and the BPF object's
    knobs it sets."""
    attr: str
    field: str
    keeps: Callable[[Any], Container]
    knobs: Callable[[Any], dict]    # value (None or False: off) -> .rodata.cfg fields
    calls_only: bool = False        # no ring or operation passes
    # the values kept as a record's header carries them, where not as events do
    in_records: Callable[[Any], Container] | None = None


# tested in this order: comm, which decodes, last
RULES = (
    Rule("pids", "pid", lambda v: v, lambda v: {"targ_pids": int(v is not None)}),
    Rule("uid", "uid", lambda v: {v}, lambda v: {"targ_uid": ANY_UID if v is None else v}),
    Rule("cgroups", "cgroup_id", lambda v: v,
         lambda v: {"targ_cgroups": int(v is not None)}),
    Rule("opcodes", "opcode", lambda v: v, lambda v: {"targ_opcodes": _mask(v)},
         calls_only=True, in_records=_any_ring),
    Rule("failed", "ret", lambda v: NEGATIVE, lambda v: {"targ_failed": int(v)},
         calls_only=True),
    Rule("comm", "comm", lambda v: {v}, lambda v: {"targ_comm": (v or "").encode()},
         in_records=_Comm),
)
_CALLS = (Event, Repeat)


class Filters(msgspec.Struct, frozen=True):
    """None (or False) means no filter on that field."""
    pids: frozenset[int] | None = None       # tgids
    uid: int | None = None
    cgroups: frozenset[int] | None = None    # cgroup v2 ids
    comm: str | None = None                  # exact, as the kernel truncates it
    opcodes: frozenset[int] | None = None    # without the registered-ring bit
    failed: bool = False                     # only calls that returned an error

    def __post_init__(self):
        if self.comm is not None and len(self.comm.encode()) >= COMM_LEN:
            raise ValueError(f"comm {self.comm!r} is longer than the kernel's "
                             f"{COMM_LEN - 1} characters")
        if self.opcodes and any(not 0 <= op < 64 for op in self.opcodes):
            raise ValueError("opcode filters take opcodes 0..63")

    @property
    def active(self) -> bool:
        return self != Filters()

    def applied(self) -> list[tuple[Rule, Any]]:
        """The rules that filter, with their values (uid 0 does)."""
        return [(r, v) for r in RULES
                if (v := getattr(self, r.attr)) is not None and v is not False]

    def matches(self, ev: AnyEvent) -> bool:
        """As the kernel applies them. A repeat record carries no uid or
        cgroup: with those filters it never matches (live, the kernel
        filtered its calls already). A ring's creation and operations are
        not register calls: no opcode filter or --failed keeps them. An
        operation is kept for its ring's creator too when pids are the only
        filter (live, the kernel also judges the creator's uid, cgroup and
        comm, which a record lacks)."""
        if isinstance(ev, (Op, Action)) and ev.creator_pid in (self.pids or ()) \
                and self == Filters(pids=self.pids):
            return True
        test = _event_test(self)
        return test is None or test(ev)

    def record_fields(self) -> set[str]:
        """The call record fields header_test() reads."""
        return {r.field for r, _ in self.applied()}

    def header_tests(self, at: dict[str, int]) -> list[tuple]:
        """matches() of a call record as tests on a tuple of its header
        fields as headers.py reads them (field -> index in `at`), for
        header_test()."""
        return [(at[r.field], (r.in_records or r.keeps)(v)) for r, v in self.applied()]

    def knobs(self) -> dict:
        """The BPF object's filter knobs, .rodata.cfg's targ_* fields (the
        pid and cgroup sets are maps: filtersets.py)."""
        return {k: v for r in RULES for k, v in r.knobs(getattr(self, r.attr)).items()}

    def opcode_mask(self) -> int:
        return _mask(self.opcodes)


def header_test(tests: list[tuple]) -> Callable | None:
    """One predicate on header tuples h, true when h[index] is in keep for
    each (index, keep) of tests, tried in order; None for no tests. A call
    per test: about as fast as one expression made with eval, and nothing
    from the command line is compiled."""
    then = None
    for i, keep in reversed(tests):
        then = _link(i, keep, then)
    return then


def _link(i: int, keep: Container, then: Callable | None) -> Callable:
    if then is None:
        return lambda h: h[i] in keep
    return lambda h: h[i] in keep and then(h)


@functools.lru_cache(maxsize=64)
def _event_test(f: Filters) -> Callable | None:
    tests = [_on_event(r, v) for r, v in f.applied()]
    return (lambda ev: all(t(ev) for t in tests)) if tests else None


def _on_event(rule: Rule, want) -> Callable:
    """A rule on events: only the kinds that carry its field pass it."""
    kinds = tuple(k for k in (_CALLS if rule.calls_only else typing.get_args(AnyEvent))
                  if rule.field in k.__struct_fields__)
    field, keep = rule.field, rule.keeps(want)
    return lambda ev: isinstance(ev, kinds) and getattr(ev, field) in keep


def _split(values) -> list[str]:
    """"1,2" and repeated flags alike: -p 1,2 -p 3."""
    return [v for item in values or () for v in item.split(",") if v]


def add_options(ap: argparse.ArgumentParser, live: bool) -> None:
    """The filter options of `uringwatch` (live) and `uringwatch replay`,
    which from_args() reads. Only live takes cgroup paths and --container:
    a recording's paths are its host's."""
    f = ap.add_argument_group("filters (applied in the kernel)") if live else ap
    f.add_argument("-p", "--pid", action="append", metavar="PID[,PID]",
                   help="only these processes (tgids)" if live else None)
    f.add_argument("-u", "--uid", type=int, help="only this user id" if live else None)
    if live:
        f.add_argument("--cgroup", action="append", metavar="PATH|ID",
                       help="only this cgroup v2 (path below the cgroup2 root, or id) and below")
        f.add_argument("--container", metavar="ID",
                       help="only this container (id or unique prefix)")
    else:
        f.add_argument("--cgroup", action="append", metavar="ID", type=int,
                       help="cgroup v2 id (paths are the recording host's)")
    f.add_argument("-c", "--comm", help="only this command name (exact)" if live else None)
    f.add_argument("--opcode", action="append", metavar="NAME[,NAME]",
                   help="only these opcodes (FILES, REGISTER_FILES, or numbers)" if live else None)
    f.add_argument("--failed", action="store_true",
                   help="only calls that returned an error" if live else None)


def from_args(args, cgroups=None) -> Filters:
    """The filters of the command line's -p, -u, -c, --opcode, --failed (the
    same for live tracing and replay); ValueError on bad values."""
    from . import opcodes
    return Filters(
        pids=frozenset(int(p) for p in _split(args.pid)) if args.pid else None,
        uid=args.uid, cgroups=None if cgroups is None else frozenset(cgroups),
        comm=args.comm,
        opcodes=frozenset(opcodes.parse(o) for o in _split(args.opcode))
        if args.opcode else None,
        failed=args.failed)
