"""Argument constraints of a policy rule: what the kernel's io_uring filter
context shows of an operation (struct io_uring_bpf_ctx: OPENAT/OPENAT2
flags, mode, resolve; SOCKET family, type, protocol; CONNECT family, port,
IPv4 address), written with the kernel's names, generated from recorded
arguments (action events' targets), compiled to a cbpf.Rule, and decided
offline.

The offline decision (`deny_reason`) is written from these semantics, not
by running the compiled program: tests/test_policy_kernel.py holds the
two against each other, with the kernel as the judge."""

from __future__ import annotations

import ipaddress
import os
import platform
import socket
from typing import Iterable

import msgspec

from . import cbpf
from ..record import opcodes

# The kernel's O_* bits (glibc's O_LARGEFILE is 0 on 64-bit; the kernel's
# is not, and io_uring's open prep forces it on 64-bit for every open but
# O_PATH ones: rules always allow it).
O_LARGEFILE = {"x86_64": 0o100000, "aarch64": 0o400000}.get(platform.machine(), 0o100000)
OPEN_FLAGS = {n: getattr(os, n) for n in (
    "O_WRONLY", "O_RDWR", "O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK",
    "O_DSYNC", "O_ASYNC", "O_DIRECT", "O_DIRECTORY", "O_NOFOLLOW", "O_NOATIME", "O_CLOEXEC",
    "O_SYNC", "O_PATH", "O_TMPFILE") if hasattr(os, n)}
OPEN_FLAGS["O_LARGEFILE"] = O_LARGEFILE
# include/uapi/linux/openat2.h
RESOLVE = {"RESOLVE_NO_XDEV": 0x01, "RESOLVE_NO_MAGICLINKS": 0x02, "RESOLVE_NO_SYMLINKS": 0x04,
           "RESOLVE_BENEATH": 0x08, "RESOLVE_IN_ROOT": 0x10, "RESOLVE_CACHED": 0x20}
SOCK_TYPE_MASK = 0xF     # type's low bits; SOCK_NONBLOCK, SOCK_CLOEXEC above them
FAMILIES = {f.name: int(f) for f in socket.AddressFamily}
TYPES = {t.name: int(t) for t in socket.SocketKind if int(t) <= SOCK_TYPE_MASK}
INET = (socket.AF_INET, socket.AF_INET6)
SQE_FLAGS = {f"{p}{n}": 1 << i for i, n in enumerate(opcodes.SQE_FLAGS) for p in ("", "IOSQE_")}


class Constraints(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """Argument checks a rule makes; a field left out checks nothing.
    `evidence` says, per allowed item, which recorded operations needed it."""
    sqe_flags_allowed: list[str] | None = None   # IOSQE_* names; others denied
    open_flags_allowed: list[str] | None = None  # O_* names (or hex); any other bit denied
    open_flags_denied: int | None = None         # O_* bits denied
    open_mode_allowed: int | None = None         # mode bits allowed (0 without O_CREAT)
    open_resolve_required: list[str] | None = None   # RESOLVE_* every open must set
    socket_families: list[int | str] | None = None   # AF_* allowed
    socket_types: list[int | str] | None = None      # SOCK_* allowed (type & 0xf)
    socket_protocols: list[int] | None = None
    connect_families: list[int | str] | None = None  # AF_* a CONNECT may reach
    connect_ports: list[int] | None = None           # AF_INET/AF_INET6 destinations only
    connect_v4_addrs: list[str] | None = None        # AF_INET destinations only
    evidence: dict[str, str] | None = None


class Args(msgspec.Struct, frozen=True, omit_defaults=True):
    """An operation's arguments as the kernel's filter sees them (the
    context's union); None: not seen."""
    open_flags: int | None = None
    open_mode: int | None = None
    open_resolve: int | None = None
    family: int | None = None
    type: int | None = None
    protocol: int | None = None
    port: int | None = None           # host order
    v4_addr: str | None = None


class ConstraintError(ValueError):
    pass


def _named(table: dict[str, int], names: Iterable[int | str], what: str) -> int:
    """OR of names (or hex/decimal strings, or ints) from table."""
    bits = 0
    for n in names:
        if isinstance(n, int):
            bits |= n
        elif n.upper() in table:
            bits |= table[n.upper()]
        else:
            try:
                bits |= int(n, 0)
            except ValueError:
                raise ConstraintError(f"unknown {what} {n!r}") from None
    return bits


def _values(table: dict[str, int], names: Iterable[int | str], what: str,
            limit: int = 0xFFFFFFFF) -> tuple[int, ...]:
    out = tuple(sorted({_named(table, [n], what) for n in names}))
    if any(not 0 <= v <= limit for v in out):
        raise ConstraintError(f"{what} out of range (0..{limit}): {list(out)}")
    return out


def names(table: dict[str, int], bits: int) -> list[str]:
    """bits as table names, composite names first (O_SYNC holds O_DSYNC),
    what no name covers in hex."""
    out = []
    for n, v in sorted(table.items(), key=lambda kv: -bin(kv[1]).count("1")):
        if v and bits & v == v:
            out.append(n)
            bits &= ~v
    return out + ([hex(bits)] if bits else [])


def to_rule(opcode: int, c: Constraints) -> cbpf.Rule:
    """The compiler's view of a rule (ConstraintError on a bad name)."""
    def opt(x, f):
        return None if x is None else f(x)
    return cbpf.Rule(
        opcode, opt(c.sqe_flags_allowed, lambda v: _named(SQE_FLAGS, v, "SQE flag")),
        c.open_flags_denied, opt(c.socket_families, lambda v: _values(
            FAMILIES, v, "address family")),
        open_flags_allowed=opt(c.open_flags_allowed,
                               lambda v: _named(OPEN_FLAGS, v, "open flag") | O_LARGEFILE),
        open_mode_allowed=opt(c.open_mode_allowed, lambda v: _values({}, [v], "mode")[0]),
        open_resolve_required=opt(c.open_resolve_required,
                                  lambda v: _named(RESOLVE, v, "resolve flag")),
        socket_types=opt(c.socket_types, lambda v: _values(TYPES, v, "socket type")),
        socket_protocols=opt(c.socket_protocols, lambda v: _values({}, v, "protocol")),
        connect_families=opt(c.connect_families,
                             lambda v: _values(FAMILIES, v, "address family")),
        connect_ports=opt(c.connect_ports, lambda v: _values({}, v, "port", 0xFFFF)),
        connect_v4_addrs=opt(c.connect_v4_addrs, lambda v: tuple(
            sorted({int(_v4(a)) for a in v}))))


def _v4(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ConstraintError(f"not an IPv4 address: {text!r}") from None


def deny_reason(rule: cbpf.Rule, sqe_flags: int, args: Args | None) -> str | None:
    """Why the kernel would deny an operation under rule (None: allowed);
    `unknown` where the rule checks arguments the operation does not show."""
    if rule.sqe_flags_allowed is not None and sqe_flags & ~rule.sqe_flags_allowed:
        return f"SQE flags {opcodes.sqe_flag_names(sqe_flags)} not allowed"
    for check in (_open_reason, _socket_reason, _connect_reason):
        why = check(rule, args or Args())
        if why:
            return why
    return None


UNKNOWN = "unknown"


def _need(*values) -> bool:
    return all(v is not None for v in values)


def _open_reason(r: cbpf.Rule, a: Args) -> str | None:
    if r.open_flags_denied is None and r.open_flags_allowed is None \
            and r.open_mode_allowed is None and r.open_resolve_required is None:
        return None
    if not _need(a.open_flags, a.open_mode, a.open_resolve):
        return UNKNOWN
    flags = a.open_flags | (0 if a.open_flags & os.O_PATH else O_LARGEFILE)
    if r.open_flags_denied is not None and flags & r.open_flags_denied:
        return f"open flags {'|'.join(names(OPEN_FLAGS, flags & r.open_flags_denied))} denied"
    if r.open_flags_allowed is not None and flags & ~r.open_flags_allowed:
        bad = flags & ~r.open_flags_allowed
        return f"open flags {'|'.join(names(OPEN_FLAGS, bad))} not allowed"
    if r.open_mode_allowed is not None and a.open_mode & ~r.open_mode_allowed:
        return f"open mode {a.open_mode:#o} not allowed"
    req = r.open_resolve_required
    if req is not None and a.open_resolve & req != req:
        return f"resolve {'|'.join(names(RESOLVE, req & ~a.open_resolve))} required"
    return None


def _socket_reason(r: cbpf.Rule, a: Args) -> str | None:
    checks = [(r.socket_families, a.family, "family", _name(FAMILIES)),
              (r.socket_types, None if a.type is None else a.type & SOCK_TYPE_MASK, "type",
               _name(TYPES)),
              (r.socket_protocols, a.protocol, "protocol", str)]
    return _one_of(checks)


def _connect_reason(r: cbpf.Rule, a: Args) -> str | None:
    why = _one_of([(r.connect_families, a.family, "family", _name(FAMILIES))])
    if why or r.connect_ports is None and r.connect_v4_addrs is None:
        return why
    if a.family is None:
        return UNKNOWN
    if a.family not in INET:
        return None                  # the kernel shows no port or address for it
    checks = [(r.connect_ports, a.port, "port", str)]
    if a.family == socket.AF_INET:
        checks.append((r.connect_v4_addrs, None if a.v4_addr is None else int(_v4(a.v4_addr)),
                       "address", lambda v: str(ipaddress.IPv4Address(v))))
    return _one_of(checks)


def _name(table: dict[str, int]):
    by_value = {v: n for n, v in table.items()}
    return lambda v: by_value.get(v, str(v))


def _one_of(checks) -> str | None:
    for allowed, value, what, show in checks:
        if allowed is None:
            continue
        if value is None:
            return UNKNOWN
        if value not in allowed:
            return f"{what} {show(value)} not allowed"
    return None


# which constraints each operation's context can carry
_OPEN = ("open_flags_allowed", "open_flags_denied", "open_mode_allowed", "open_resolve_required")
_SOCKET = ("socket_families", "socket_types", "socket_protocols")
_CONNECT = ("connect_families", "connect_ports", "connect_v4_addrs")
ARGUMENTS = {"OPENAT": _OPEN, "OPENAT2": _OPEN, "SOCKET": _SOCKET, "CONNECT": _CONNECT}


def check_fits(op: str, c: Constraints) -> None:
    """A constraint on arguments the operation's context does not carry is
    an error, not a check that never runs."""
    for field in (*_OPEN, *_SOCKET, *_CONNECT):
        if getattr(c, field) is not None and field not in ARGUMENTS.get(op, ()):
            raise ConstraintError(f"{op}: the kernel's filter sees no {field.split('_')[0]} "
                                  f"arguments of this operation ({field})")


def op_args(ev) -> Args | None:
    """The arguments an `action` event shows of its operation (its
    `target`, as the kernel took it at submission), or None: an op record,
    or a target that could not be read."""
    t = getattr(ev, "target", None)
    if t is None or getattr(t, "unread", None):
        return None
    name = opcodes.sqe_op_name(ev.opcode)
    if name in ("OPENAT", "OPENAT2"):
        return Args(open_flags=t.flags, open_mode=t.mode, open_resolve=t.resolve or 0)
    family = _number(FAMILIES, t.family)
    if name == "SOCKET":
        return Args(family=family, type=_number(SOCK_TYPES, t.type), protocol=t.protocol)
    if name != "CONNECT":
        return None
    port, v4 = None, None
    if family in INET and t.address:
        host, _, p = t.address.rpartition(":")
        port, v4 = int(p), (host if family == socket.AF_INET else None)
    return Args(family=family, port=port, v4_addr=v4)


SOCK_TYPES = TYPES | {"SOCK_NONBLOCK": socket.SOCK_NONBLOCK, "SOCK_CLOEXEC": socket.SOCK_CLOEXEC}


def _number(table: dict[str, int], text: str | None) -> int | None:
    """A name like AF_INET, AF_46 or SOCK_STREAM|SOCK_CLOEXEC as its number."""
    if text is None:
        return None
    try:
        return _named(table, [n if n in table else "0x%x" % int(n.split("_")[-1])
                              for n in text.split("|")], "name")
    except (ValueError, ConstraintError):
        return None


_NEEDS = {"OPENAT": ("open_flags", "open_mode", "open_resolve"),
          "OPENAT2": ("open_flags", "open_mode", "open_resolve"),
          "SOCKET": ("family", "type", "protocol"), "CONNECT": ("family",)}


def complete(op: str, args: Args | None) -> bool:
    """Whether args hold all the kernel's filter would see of op."""
    if args is None or any(getattr(args, f) is None for f in _NEEDS.get(op, ())):
        return False
    return op != "CONNECT" or args.family not in INET or (
        args.port is not None and (args.family != socket.AF_INET or args.v4_addr is not None))


def generate(op: str, seen: list[tuple[Args, object]], who) -> Constraints | None:
    """The narrowest constraints that allow every (args, event) seen, with
    `who(events)` as each item's evidence; None when op has no arguments."""
    if op not in ARGUMENTS or not seen:
        return None
    gen = {"SOCKET": _gen_socket, "CONNECT": _gen_connect}.get(op, _gen_open)
    fields, items = gen(seen)
    evidence = {item: who(evs) for item, evs in sorted(items.items())}
    return Constraints(**fields, evidence=evidence)


def _group(seen, key) -> dict[str, list]:
    out: dict[str, list] = {}
    for args, ev in seen:
        for item in key(args):
            out.setdefault(item, []).append(ev)
    return out


def _gen_open(seen):
    # O_RDONLY is 0: said of every open whose access mode it is
    flags = _group(seen, lambda a: ([] if a.open_flags & 3 else ["O_RDONLY"])
                   + names(OPEN_FLAGS, a.open_flags & ~O_LARGEFILE))
    resolve = None
    for a, _ in seen:
        resolve = a.open_resolve if resolve is None else resolve & a.open_resolve
    mode = 0
    for a, _ in seen:
        mode |= a.open_mode
    items = {**flags, **_group(seen, lambda a: [f"mode {a.open_mode:#o}"] if a.open_mode else [])}
    fields = {"open_flags_allowed": sorted(n for n in flags if n != "O_RDONLY"),
              "open_mode_allowed": mode}
    if resolve:
        fields["open_resolve_required"] = names(RESOLVE, resolve)
        items.update(_group(seen, lambda a: names(RESOLVE, a.open_resolve & resolve)))
    return fields, items


def _gen_socket(seen):
    fams = _group(seen, lambda a: [_name(FAMILIES)(a.family)])
    types = _group(seen, lambda a: [_name(TYPES)(a.type & SOCK_TYPE_MASK)])
    protos = _group(seen, lambda a: [f"protocol {a.protocol}"])
    return ({"socket_families": sorted(fams), "socket_types": sorted(types),
             "socket_protocols": sorted({a.protocol for a, _ in seen})},
            {**fams, **types, **protos})


def _gen_connect(seen):
    fams = _group(seen, lambda a: [_name(FAMILIES)(a.family)])
    inet = [(a, e) for a, e in seen if a.family in INET]
    fields = {"connect_families": sorted(fams)}
    items = dict(fams)
    if inet:
        ports = _group(inet, lambda a: [f"port {a.port}"])
        fields["connect_ports"] = sorted({a.port for a, _ in inet})
        items.update(ports)
    v4 = [(a, e) for a, e in inet if a.family == socket.AF_INET]
    if v4:
        fields["connect_v4_addrs"] = sorted({a.v4_addr for a, _ in v4}, key=_v4)
        items.update(_group(v4, lambda a: [a.v4_addr]))
    return fields, items
