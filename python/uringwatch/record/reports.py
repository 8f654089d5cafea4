"""The typed contracts of what the tracer reports about itself: the
features it chose, its counters (Tracer.stats()), what `uringwatch probe`
finds and what `replay --stats` sums. Each is a msgspec Struct whose JSON
is the dict it replaces, key for key and in the same order; item access
(`stats["emitted"]`, `.get`, `.items()`) stays for code written against
those dicts."""

from __future__ import annotations

from typing import Literal

import msgspec

from . import layout
from ..dictlike import DictLike

# Where the tracer attaches, preferred first (probe.hooks.HOOKS: each one's
# programs): named once here, below Features and the options that take it.
Hook = Literal["syscalls", "kprobes", "raw_syscalls"]


class Features(DictLike, kw_only=True, omit_defaults=True):
    """What a Tracer chose for this kernel (Tracer.features; a recording's
    header keeps it)."""
    task_btf: bool          # tasks read through BTF (ppid, namespaces)
    tracefs: str
    bpf_loop: bool          # the TOCTOU re-read and fairness's hash
    hook: Hook
    resolve: layout.ResolvePath
    hooks: list[str]        # the call programs' sections
    rings: list[str]        # the ring programs' sections
    cgroups: str            # how new cgroups are found, or "off"
    rings_before_error: str | None = None   # why rings from before are missing


# what each process or aggregate lists: calls coalesced and dropped by
# cause, then its ring and op records not sent (layout.py, from the C enums)
COUNTS = ("coalesced", *layout.DROPS, *layout.REC_DROPS)
_COUNTS = [(n, int, 0) for n in COUNTS]

ProcessCounts = msgspec.defstruct(
    "ProcessCounts", [("pid", int), ("comm", str), *_COUNTS], bases=(DictLike,),
    module=__name__, kw_only=True, gc=False)
ProcessCounts.__doc__ = "A process (tgid) with anything coalesced or dropped."

AggregateCounts = msgspec.defstruct(
    "AggregateCounts", [("uid", int), ("cgroup_id", int), ("ended", int, 0), *_COUNTS],
    bases=(DictLike,), module=__name__, kw_only=True, gc=False)
AggregateCounts.__doc__ = ("An aggregate (uid, cgroup id): the counts of its processes, "
                           "running or ended (`ended` of them).")

# the tracer's own counts, after the kernel's
USER_SPACE = ("decode_errors", "ledger_evicted", "ledger_freed", "repeat_events",
              "runs_skipped")

Stats = msgspec.defstruct(
    "Stats", [*((n, int, 0) for n in (*layout.COUNTERS, *USER_SPACE)),
              ("processes", list[ProcessCounts], msgspec.field(default_factory=list)),
              ("aggregates", list[AggregateCounts], msgspec.field(default_factory=list))],
    bases=(DictLike,), module=__name__, kw_only=True)
Stats.__doc__ = ("Tracer.stats(): the kernel's counters summed over CPUs (layout.COUNTERS), "
                 "the tracer's own (USER_SPACE), then the processes and aggregates that "
                 "lost most.")


class RingsProbe(DictLike, kw_only=True, gc=False):
    """Which parts of a ring's life this kernel shows."""
    setup: bool
    register_ring_id: bool
    operations: str | None
    before: bool
    action_targets: list[str]
    send_destinations: list[str]
    action_results: str | None
    refused: str | None = None


class Probe(DictLike, kw_only=True, gc=False):
    """Everything `uringwatch probe` prints."""
    kernel: str
    arch: str
    btf: bool
    lockdown: str
    tracefs: str | None
    ringbuf: bool
    bpf_loop: bool
    coalesce: str
    fentry_prog_type: bool
    probe_read_kernel: bool
    register_opcodes: int | None
    hooks: dict[str, bool]
    rings: RingsProbe | None
    chosen: str | None
    resolve: dict[str, bool]
    resolve_chosen: str | None


class Summary(DictLike, kw_only=True, gc=False):
    """--stats of events: counts by opcode and process (most first), TOCTOU
    changes, errors, calls coalesced into repeat records by process."""
    events: int
    toctou_changed: int
    errors: dict[str, int]
    by_opcode: dict[str, int]
    by_process: dict[str, int]
    coalesced_by_process: dict[str, int]


class ReplayStats(Summary, kw_only=True, gc=False):
    """`replay --stats`: the Summary, then the recorded counters summed
    over runs, overall, by "pid comm" and by "uid cgroup_id"."""
    drops: dict[str, int]
    drops_by_process: dict[str, dict[str, int]]
    drops_by_aggregate: dict[str, dict[str, int]]
