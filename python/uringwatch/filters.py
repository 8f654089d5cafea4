"""Which calls to keep: applied in the kernel when tracing live, and to
decoded events when replaying, with the same meaning."""

from __future__ import annotations

import argparse

import msgspec

from .events import AnyEvent, Event, Op, Repeat

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
        not register calls: no opcode filter or --failed keeps them. An
        operation is kept for its ring's creator too when pids are the only
        filter (live, the kernel also judges the creator's uid, cgroup and
        comm, which a record lacks)."""
        if isinstance(ev, Repeat) and (self.uid is not None or self.cgroups is not None):
            return False
        call = isinstance(ev, (Event, Repeat))
        if isinstance(ev, Op) and ev.creator_pid in (self.pids or ()) \
                and self == Filters(pids=self.pids):
            return True
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
