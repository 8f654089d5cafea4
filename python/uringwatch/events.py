"""The events uringwatch emits: msgspec Structs, the same live and replayed."""

from __future__ import annotations

import msgspec

from .payloads import Payload


class Toctou(msgspec.Struct, frozen=True, gc=False):
    """What happened to the argument's memory while the kernel read it.

    `changed` true proves a writer raced the kernel; false does not prove
    the kernel read what the tracer saw (see README, TOCTOU)."""
    window_ns: int            # enter -> exit: when the kernel copies
    changed: bool
    changes: list[str]        # changed fields or elements, bounded
    more: bool                # more changes than listed
    exit_unreadable: bool     # the memory could not be re-read at exit
    checked: bool             # False: this kernel can't re-read (no bpf_loop)


class Event(msgspec.Struct, frozen=True, gc=False, tag_field="kind", tag="call"):
    """One io_uring_register(2) call."""
    ts: int                   # wall clock at entry, ns since the epoch
    pid: int
    tid: int
    ppid: int | None          # None where this kernel can't provide it
    uid: int
    gid: int
    comm: str
    cgroup_id: int
    fd: int                   # a ring index when registered_ring
    opcode: int               # bit 31 stripped
    opcode_name: str
    registered_ring: bool     # IORING_REGISTER_USE_REGISTERED_RING was set
    arg: int
    nr_args: int
    ret: int
    duration_ns: int
    payload: Payload | None
    error: str | None = None  # errno name when ret < 0
    blind: bool = False       # fd == -1: no ring (QUERY, SEND_MSG_RING)
    pidns: int | None = None
    mntns: int | None = None
    toctou: Toctou | None = None
    cgroup_path: str | None = None   # below the cgroup2 root, live only
    container_id: str | None = None  # from the cgroup path's runtime naming
    nspid: int | None = None         # pid in the caller's pid namespace (None: unreadable)
    nstid: int | None = None         # tid in the caller's pid namespace
    hostname: str | None = None      # the caller's UTS nodename (a container's hostname)
