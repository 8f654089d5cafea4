"""Which calls to keep: applied in the kernel when tracing live, and to
decoded events when replaying, with the same meaning."""

from __future__ import annotations

import msgspec

from .events import AnyEvent, Event, Repeat

COMM_LEN = 16


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

    def matches(self, ev: AnyEvent) -> bool:
        """As the kernel applies them. A repeat record carries no uid or
        cgroup: with those filters it never matches (live, the kernel
        filtered its calls already). A ring's creation and operations are
        not register calls: no opcode filter or --failed keeps them."""
        if isinstance(ev, Repeat) and (self.uid is not None or self.cgroups is not None):
            return False
        call = isinstance(ev, (Event, Repeat))
        return ((self.pids is None or ev.pid in self.pids)
                and (self.uid is None or ev.uid == self.uid)
                and (self.cgroups is None or ev.cgroup_id in self.cgroups)
                and (self.comm is None or ev.comm == self.comm)
                and (self.opcodes is None or (call and ev.opcode in self.opcodes))
                and (not self.failed or (call and ev.ret < 0)))

    def opcode_mask(self) -> int:
        return sum(1 << op for op in self.opcodes) if self.opcodes else 0


def _split(values) -> list[str]:
    """"1,2" and repeated flags alike: -p 1,2 -p 3."""
    return [v for item in values or () for v in item.split(",") if v]


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
