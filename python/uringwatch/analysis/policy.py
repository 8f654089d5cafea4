"""From a recording to a policy: what a workload's io_uring use needs,
written as a reviewable, versioned JSON document, and the events of a
recording that a policy would deny.

A policy is built only from what recordings hold: operations (`--rings`
op events: opcode, fixed file, provided-buffer group), the arguments the
kernel's filter sees of them where action events show them (their
`target`: OPENAT/OPENAT2 flags, mode, resolve; SOCKET family, type,
protocol; CONNECT family, port, address), register calls and ring
creations. An opcode whose every recorded operation has its arguments
shown gets the narrowest constraints that allow them (constraints.py);
otherwise the whole opcode is allowed and its note says so.
cbpf.py compiles the rules."""

from __future__ import annotations

import collections
import datetime
import time
from typing import Iterable, Literal

import msgspec

from . import cbpf, constraints
from ..record import opcodes
from .constraints import Constraints
from ..record.events import AnyEvent, Event, Op, Repeat, Ring

VERSION = 1
KIND = "uringwatch-policy"
SQE_FIXED_FILE, SQE_BUFFER_SELECT = 1 << 0, 1 << 5
URING_SYSCALLS = ["io_uring_setup", "io_uring_enter", "io_uring_register"]


class Scope(msgspec.Struct, frozen=True, omit_defaults=True):
    """Which recorded processes the policy is about (all when empty).
    Events carry the command name, not the executable: `exe` is matched
    against comm, the file name's first 15 bytes."""
    pids: list[int] | None = None
    comm: str | None = None
    container: str | None = None     # container id or prefix
    exe: str | None = None

    def matches(self, ev: AnyEvent) -> bool:
        container = getattr(ev, "container_id", None)
        return ((not self.pids or ev.pid in self.pids)
                and (self.comm is None or ev.comm == self.comm)
                and (self.exe is None or ev.comm == self.exe.rsplit("/", 1)[-1][:15])
                and (self.container is None
                     or bool(container and container.startswith(self.container))))


class SqeRule(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """One allowed operation (IORING_OP_*), and why."""
    op: str
    reason: str
    operations: int = 0                  # how many the recordings saw
    constraints: Constraints | None = None
    note: str | None = None


class RegisterRule(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """One allowed io_uring_register(2) opcode, and why."""
    op: str
    reason: str
    calls: int = 0


class Restrictions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """IORING_REGISTER_RESTRICTIONS entries (5.10+), for the application to
    register on its own rings created with IORING_SETUP_R_DISABLED."""
    register_ops: list[str]
    sqe_ops: list[str]
    sqe_flags_allowed: list[str]
    sqe_flags_required: list[str]
    note: str


class User(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    uid: int
    gid: int
    comm: str


class Sysctl(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """kernel.io_uring_disabled (6.6+): 0 all, 1 only io_uring_group and
    CAP_SYS_ADMIN may create rings, 2 nobody."""
    io_uring_disabled: int
    io_uring_group: int     # -1: no single group covers the users (see reason)
    users: list[User]
    reason: str


class Seccomp(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An OCI runtime spec `linux.seccomp.syscalls` entry per container that
    used io_uring (Docker's default profile denies these three)."""
    containers: list[str]
    syscalls: list[dict]
    reason: str


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: Literal["uringwatch-policy"]
    version: int
    generated: str                  # ISO 8601, UTC
    recordings: list[str]
    scope: Scope
    sqe_ops: list[SqeRule]
    register_ops: list[RegisterRule]
    restrictions: Restrictions
    sysctl: Sysctl
    seccomp: Seccomp


class PolicyError(ValueError):
    pass


def dumps(policy: Policy) -> bytes:
    return msgspec.json.format(msgspec.json.encode(policy), indent=2) + b"\n"


def load(path: str) -> Policy:
    with open(path, "rb") as f:
        return load_bytes(f.read(), path)


def load_bytes(data: bytes, path: str = "policy") -> Policy:
    """A policy document, checked: kind, version, names and constraints."""
    try:
        head = msgspec.json.decode(data, type=dict)
        if head.get("kind") != KIND or head.get("version") != VERSION:
            raise PolicyError(f"{path}: not a {KIND} version {VERSION} document")
        policy = msgspec.json.decode(data, type=Policy)
    except msgspec.DecodeError as e:
        raise PolicyError(f"{path}: {e}") from None
    try:
        rules(policy)               # every name known, every constraint compilable
    except constraints.ConstraintError as e:
        raise PolicyError(f"{path}: {e}") from None
    return policy


def sqe_opcode(name: str) -> int:
    key = name.upper().removeprefix("IORING_OP_")
    if key not in opcodes.SQE_OPS:
        raise PolicyError(f"unknown operation {name!r}")
    return opcodes.SQE_OPS.index(key)


def _flags_used(op: Op) -> int:
    """The IOSQE_* flags an op event proves (others are not recorded)."""
    return ((SQE_FIXED_FILE if op.fixed_file is not None else 0)
            | (SQE_BUFFER_SELECT if op.buffer_group is not None else 0))


def _when(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _n(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _who(evs: list) -> str:
    procs = sorted({(e.comm, e.pid) for e in evs})
    shown = ", ".join(f"{c} (pid {p})" for c, p in procs[:3])
    return shown + (f" and {len(procs) - 3} more" if len(procs) > 3 else "")


def generate(events: Iterable[AnyEvent], recordings: list[str], scope: Scope) -> Policy:
    """The policy that allows exactly what the scoped events used."""
    ops, calls, rings, acts = (collections.defaultdict(list) for _ in range(4))
    for ev in events:
        if not scope.matches(ev):
            continue
        if isinstance(ev, Op):
            ops[opcodes.sqe_op_name(ev.opcode)].append(ev)
        elif isinstance(ev, Event):
            calls[opcodes.name(ev.opcode)].append(ev)
        elif isinstance(ev, Ring) and ev.ret >= 0:
            rings[ev.ring_id].append(ev)
        elif is_action(ev):
            acts[opcodes.sqe_op_name(ev.opcode)].append(ev)
    sqe = [_sqe_rule(name, evs, acts[name]) for name, evs in sorted(ops.items())]
    reg = [RegisterRule(name, f"{_n(len(evs), 'call')} by {_who(evs)}, first at "
                              f"{_when(min(e.ts for e in evs))}", len(evs))
           for name, evs in sorted(calls.items())]
    flags = sorted({bit for evs in ops.values() for e in evs for bit in range(8)
                    if _flags_used(e) & (1 << bit)})
    used = [e for evs in (*rings.values(), *calls.values(), *ops.values()) for e in evs]
    return Policy(
        kind=KIND, version=VERSION, generated=_when(time.time_ns()), recordings=recordings,
        scope=scope, sqe_ops=sqe, register_ops=reg,
        restrictions=Restrictions(
            register_ops=[r.op for r in reg], sqe_ops=[r.op for r in sqe],
            sqe_flags_allowed=[opcodes.SQE_FLAGS[b] for b in flags], sqe_flags_required=[],
            note="for rings the application creates with IORING_SETUP_R_DISABLED, registers "
                 "these on, then enables; sqe_flags_allowed lists only the flags recordings "
                 "prove (FIXED_FILE, BUFFER_SELECT): IO_LINK, IO_DRAIN, ASYNC, "
                 "CQE_SKIP_SUCCESS are not recorded, add those the application sets"),
        sysctl=_sysctl(_users(used), bool(used)),
        seccomp=_seccomp(used))


def is_action(ev) -> bool:
    """An event that shows an operation's arguments (kind `action`: each
    open, socket, connect... with its target), beside the op records that
    count it. Not an SQE refused at prep: no filter saw it (they run after
    prep), so it needs no allowance and no filter would deny it."""
    return getattr(ev, "target", None) is not None and hasattr(ev, "opcode") \
        and getattr(ev, "completion", None) != "refused"


def _sqe_rule(name: str, evs: list[Op], acts: list) -> SqeRule:
    total = sum(weight(e) for e in evs)
    first = min(e.first_ts or e.ts for e in evs)
    reason = f"{_n(total, 'operation')} by {_who(evs)}, first at {_when(first)}"
    fixed = sum(1 for e in evs if e.fixed_file is not None)
    if fixed:
        reason += "; with registered files (FIXED_FILE)"
    if name not in constraints.ARGUMENTS:
        return SqeRule(name, reason, total, None,
                       "the kernel's filter sees only the opcode and SQE flags of this operation")
    seen = [(constraints.op_args(a), a) for a in acts]
    shown = sum(1 for a, _ in seen if constraints.complete(name, a))
    if shown < max(total, 1):
        return SqeRule(name, reason, total, None,
                       "the kernel's filter sees this operation's arguments, but the recording "
                       f"shows them for {shown} of {_n(total, 'operation')}: allowed without "
                       "argument constraints")
    c = constraints.generate(name, seen, _evidence)
    return SqeRule(name, reason, total, c, "arguments limited to those recorded")


def _evidence(evs: list) -> str:
    return f"{_n(len(evs), 'operation')} by {_who(evs)}"


def _users(evs: list) -> list[User]:
    seen = {}
    for e in evs:
        gid = getattr(e, "gid", None)
        if gid is not None:
            seen.setdefault((e.uid, gid), e.comm)
    return [User(u, g, c) for (u, g), c in sorted(seen.items())]


def _sysctl(users: list[User], used: bool) -> Sysctl:
    if not used:
        return Sysctl(2, -1, [], "nothing in scope used io_uring: disable it for everyone")
    groups = {u.gid for u in users if u.uid != 0}
    if not groups:
        return Sysctl(1, -1, users, "only root used io_uring: CAP_SYS_ADMIN is allowed with "
                                    "io_uring_disabled=1 whatever the group")
    if len(groups) == 1:
        (gid,) = groups
        return Sysctl(1, gid, users, f"every non-root user of io_uring recorded has gid {gid}")
    return Sysctl(1, -1, users, "the users of io_uring have different gids "
                                f"({', '.join(map(str, sorted(groups)))}): make one group "
                                "holding uids " + ", ".join(str(u.uid) for u in users if u.uid)
                                + " and set io_uring_group to it")


def _seccomp(evs: list) -> Seccomp:
    ids = sorted({e.container_id for e in evs if getattr(e, "container_id", None)})
    if not ids:
        return Seccomp([], [], "no container in scope used io_uring: keep denying these "
                               "syscalls in containers")
    return Seccomp(ids, [{"names": URING_SYSCALLS, "action": "SCMP_ACT_ALLOW"}],
                   "these containers made io_uring calls: their seccomp profile must allow them")


class Denial(msgspec.Struct, frozen=True):
    """One recorded event the policy would refuse, and by what."""
    by: str           # "bpf_filter" (an operation) or "restrictions" (a register call)
    what: str         # the operation or register opcode
    why: str
    event: AnyEvent

    @property
    def count(self) -> int:
        return weight(self.event)


def weight(ev: AnyEvent) -> int:
    """Operations or calls an event stands for: a first_use is counted again
    in its key's counts, a repeat stands for `count` calls."""
    if getattr(ev, "reason", None) == "first_use":
        return 0
    return getattr(ev, "count", 1)


def rules(policy: Policy) -> dict[int, cbpf.Rule]:
    """The compiled view: opcode -> what its filter checks."""
    out = {}
    for r in policy.sqe_ops:
        op = sqe_opcode(r.op)
        c = r.constraints or Constraints()
        constraints.check_fits(opcodes.sqe_op_name(op), c)
        out[op] = constraints.to_rule(op, c)
    return out


def decide(allowed: dict[int, cbpf.Rule], opcode: int, sqe_flags: int,
           args: constraints.Args | None) -> str | None:
    """Why the compiled policy (rules()) denies one operation, None when it
    allows it, constraints.UNKNOWN when that depends on arguments not given."""
    rule = allowed.get(opcode)
    if rule is None:
        return "operation not in the policy"
    return constraints.deny_reason(rule, sqe_flags, args)


def check(policy: Policy, events: Iterable[AnyEvent], scope: Scope | None = None) -> tuple[
        list[Denial], int, int]:
    """The scoped events the policy would deny, how many operations and
    calls were judged, and how many operations could not be. Op records
    are judged by opcode and the SQE flags they prove; where a rule checks
    arguments, by the `action` events that show them, one per operation:
    operations counted but without an action are not judged. A denied
    operation's first_use and its counts are all listed: together they
    give how many."""
    scope = scope or policy.scope
    allowed = rules(policy)
    register_ok = {r.op for r in policy.register_ops}
    denials, judged = [], 0
    unshown = collections.Counter()     # (pid, opcode): ops minus actions judged
    for ev in events:
        if not scope.matches(ev):
            continue
        if isinstance(ev, Op):
            why = decide(allowed, ev.opcode, _flags_used(ev), None)
            if why == constraints.UNKNOWN:
                unshown[ev.pid, ev.opcode] += weight(ev)
                continue
            judged += weight(ev)
            if why:
                denials.append(Denial("bpf_filter", opcodes.sqe_op_name(ev.opcode), why, ev))
        elif is_action(ev) and ev.opcode in allowed:
            rule = allowed[ev.opcode]._replace(sqe_flags_allowed=None)  # its op record's
            why = constraints.deny_reason(rule, 0, constraints.op_args(ev))
            if why == constraints.UNKNOWN:
                continue
            if not _has_argument_checks(rule):
                continue            # judged by its op record
            judged += 1
            unshown[ev.pid, ev.opcode] -= 1
            if why:
                denials.append(Denial("bpf_filter", opcodes.sqe_op_name(ev.opcode), why, ev))
        elif isinstance(ev, (Event, Repeat)):
            judged += weight(ev)
            name = opcodes.name(ev.opcode)
            if name not in register_ok:
                denials.append(Denial("restrictions", name, "register opcode not in the policy",
                                      ev))
    return denials, judged, sum(n for n in unshown.values() if n > 0)


def _has_argument_checks(rule: cbpf.Rule) -> bool:
    return any(v is not None for v in rule[2:])
