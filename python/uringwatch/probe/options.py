"""Every option of a Tracer, with its default, checked in one place."""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

from . import hooks
from ..record import layout
from ..record.reports import Hook
from ..errors import TracerError

# Fairness defaults (docs/ARCHITECTURE.md, Fairness): records per second each process may
# send past its first call of each opcode, and how many it may bank.
FAIR_RATE = 1000
FAIR_BURST = 5000
MAX_PROCS = 16384       # processes with fairness state; later ones go without
# An aggregate (uid and cgroup) may send AGG_SHARE times a process's rate,
# and a process's burst (which must stay under the ring's reserve line):
# every process under it spends its budget too, so forking does not
# multiply it.
AGG_SHARE = 4
# A light sender's allowance, past spent budgets and the ring's reserve line
# (half the ring): records per second, and at most (banked from its start).
LIGHT_RATE = 32
LIGHT_BURST = 32
MAX_USES = 16384        # keys of the operations' summary (and as many spilled)


HookOption = Literal[hooks.Auto, Hook]
ResolveOption = Literal[hooks.Auto, layout.ResolvePath]
OpsOption = Literal["summary", "all"]   # --ops: ring operations summarised, or each


class TracerOptions(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What Tracer(filters, **options) takes; recordings keep it in their
    header (msgspec.to_builtins)."""
    cap: int = layout.DEFAULT_CAP                   # array elements captured per region
    snap_bytes: int = layout.DEFAULT_SNAP_BYTES     # generic capture of unknown opcodes
    ring_bytes: int = layout.DEFAULT_RING_BYTES
    max_inflight: int = layout.DEFAULT_MAX_INFLIGHT     # calls between enter and exit
    wakeup_bytes: int = layout.DEFAULT_WAKEUP_BYTES     # queued bytes that wake the reader
    generic: bool = False           # snap_bytes at arg for every opcode, undecoded
    ops_all: bool = False           # every ring operation, not the first of each kind
    fair: bool = True
    rate: int = FAIR_RATE
    burst: int = FAIR_BURST
    max_procs: int = MAX_PROCS
    max_aggs: int = layout.DEFAULT_MAX_AGGS     # aggregates, the overflow one included
    flush_interval: float = 0.05    # seconds a lone record may wait in the ring
    btf_path: str | None = None     # the kernel's BTF, where it has none in sysfs
    containers: bool = True         # cgroup paths and container ids on events
    hook: HookOption = "auto"
    resolve: ResolveOption = "auto"
    rings: bool = False             # ring creation and operation events
    count_interval: float = 1.0     # operations' counts, seconds
    max_uses: int = MAX_USES

    def __post_init__(self):
        if not 1 <= self.cap <= layout.CAP_MAX:
            raise TracerError(f"cap must be 1..{layout.CAP_MAX}, not {self.cap}")
        if not 0 <= self.snap_bytes <= layout.HEAD_MAX:
            raise TracerError(f"snap_bytes must be 0..{layout.HEAD_MAX}")
        if self.ring_bytes < 4096 or self.ring_bytes & (self.ring_bytes - 1):
            raise TracerError("ring_bytes must be a power of two >= 4096")
        if self.rate < 0 or self.burst < 1 or self.max_procs < 1:
            raise TracerError("rate must be >= 0 (0: no budget), burst and max_procs >= 1")
        if self.max_aggs < 2:
            raise TracerError("max_aggs must be >= 2 (one is the overflow aggregate)")
        if self.max_uses < 1:
            raise TracerError("max_uses must be >= 1")
        for name, allowed in (("hook", get_args(HookOption)),
                              ("resolve", get_args(ResolveOption))):
            if getattr(self, name) not in allowed:
                raise TracerError(f"{name} must be auto or one of {', '.join(allowed[1:])}")

    @property
    def ring_events(self) -> bool:
        """Whether rings' creation and operations are traced: every
        operation implies them."""
        return self.rings or self.ops_all
