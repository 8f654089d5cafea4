"""Actions: operations that open or change something, each with what it
named (read in the kernel at submission, bpf/targets.h) and its result."""

from __future__ import annotations

import errno
import ctypes
import ipaddress
import platform
import socket

import msgspec

from . import layout
from .events import Action, Target, ring_id
from .identity import FileIdentity, file_fields, file_identity
from .layout import cstr
from .opcodes import sqe_op_name

# The opcodes bpf/targets.h reports each (its ACT_OPS), by name; tests/test_registry.py
# holds this and every op set below to the header's
ACTION_OPS = ("OPENAT", "OPENAT2", "STATX", "UNLINKAT", "RENAMEAT", "MKDIRAT", "SYMLINKAT",
              "LINKAT", "SOCKET", "CONNECT", "BIND", "LISTEN", "ACCEPT", "SETXATTR",
              "GETXATTR", "FSETXATTR", "FGETXATTR")
_PATHS = {"OPENAT", "OPENAT2", "STATX", "UNLINKAT", "MKDIRAT"}
_TWO_PATHS = {"RENAMEAT", "SYMLINKAT", "LINKAT"}
_ADDRESS = {"CONNECT", "BIND"}
_XATTR = {"SETXATTR", "GETXATTR", "FSETXATTR", "FGETXATTR"}
_XATTR_CREATE, _XATTR_REPLACE = 1, 2
# Fixed-buffer ops, reported each when of length 0 (its ACT_FIXED_OPS)
FIXED_OPS = ("READ_FIXED", "WRITE_FIXED")

# open(2) flags as the kernel numbers them (asm-generic/fcntl.h; arm64
# moves four). The C library's may differ: glibc's O_LARGEFILE is 0 on
# 64-bit, while the kernel adds its own to every open there.
_MOVED = {"aarch64": (0o200000, 0o400000, 0o40000, 0o100000)}
_DIRECT, _LARGEFILE, _DIRECTORY, _NOFOLLOW = _MOVED.get(
    platform.machine(), (0o40000, 0o100000, 0o200000, 0o400000))
_OPEN_FLAGS = [
    (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o4010000, "O_SYNC"), (0o10000, "O_DSYNC"),
    (0o20000, "FASYNC"), (_DIRECT, "O_DIRECT"), (_LARGEFILE, "O_LARGEFILE"),
    (0o20000000 | _DIRECTORY, "O_TMPFILE"), (_DIRECTORY, "O_DIRECTORY"),
    (_NOFOLLOW, "O_NOFOLLOW"), (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH")]
_ACCESS = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR", 3: "O_ACCMODE"}
_AT_REMOVEDIR, _AT_SYMLINK_FOLLOW, _AT_EMPTY_PATH = 0x200, 0x400, 0x1000
_SOCK_TYPE_MASK = 0xF
_SOCK_NONBLOCK, _SOCK_CLOEXEC = 0o4000, 0o2000000


def open_flag_names(flags: int) -> list[str]:
    """O_RDONLY, O_CREAT, ...: each flag whose bits are all set, the ones
    made of two bits (O_SYNC, O_TMPFILE) before their parts."""
    names = [_ACCESS[flags & 3]]
    rest = flags & ~3
    for bits, name in _OPEN_FLAGS:
        if rest & bits == bits:
            names.append(name)
            rest &= ~bits
    return names + ([f"{rest:#o}"] if rest else [])


def _family(n: int) -> str:
    try:
        return socket.AddressFamily(n).name
    except ValueError:
        return f"AF_{n}"


def _sock_type(n: int) -> str:
    try:
        name = socket.SocketKind(n & _SOCK_TYPE_MASK).name
    except ValueError:
        name = f"SOCK_{n & _SOCK_TYPE_MASK}"
    extra = [f for bit, f in ((_SOCK_NONBLOCK, "SOCK_NONBLOCK"), (_SOCK_CLOEXEC, "SOCK_CLOEXEC"))
             if n & bit]
    return "|".join([name] + extra)


def sockaddr(raw: bytes, length: int) -> tuple[str | None, str | None]:
    """(family name, address text) of a sockaddr's first `length` bytes."""
    raw = raw[:min(length, len(raw))]
    if len(raw) < 2:
        return None, None
    fam = int.from_bytes(raw[:2], "little")
    if fam == socket.AF_INET and len(raw) >= 8:
        return "AF_INET", f"{ipaddress.IPv4Address(raw[4:8])}:{int.from_bytes(raw[2:4], 'big')}"
    if fam == socket.AF_INET6 and len(raw) >= 24:
        return "AF_INET6", f"[{ipaddress.IPv6Address(raw[8:24])}]:{int.from_bytes(raw[2:4], 'big')}"
    if fam == socket.AF_UNIX:
        path = raw[2:]
        if path[:1] == b"\0":
            return "AF_UNIX", "@" + path[1:].decode(errors="replace")
        return "AF_UNIX", path.split(b"\0", 1)[0].decode(errors="replace")
    return _family(fam), _other_address(fam, raw)


def _u32(raw: bytes, at: int) -> int:
    return int.from_bytes(raw[at:at + 4], "little")


def _other_address(fam: int, raw: bytes) -> str | None:
    """The families a ring can reach beside inet and unix: netlink (the
    kernel's or a process's port, multicast groups), vsock (a VM's cid and
    port) and packet (interface and protocol); None for the rest."""
    if fam == socket.AF_NETLINK and len(raw) >= 12:        # struct sockaddr_nl
        return f"pid={_u32(raw, 4)}/groups={_u32(raw, 8):#x}"
    if fam == socket.AF_VSOCK and len(raw) >= 12:          # struct sockaddr_vm
        return f"cid={_u32(raw, 8)}/port={_u32(raw, 4)}"
    if fam == socket.AF_PACKET and len(raw) >= 8:          # struct sockaddr_ll
        ifindex = int.from_bytes(raw[4:8], "little", signed=True)
        return f"ifindex={ifindex}/protocol={int.from_bytes(raw[2:4], 'big'):#06x}"
    return None


def _path(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _file(v: dict, name: str) -> FileIdentity | None:
    """The file the action names by fd, read in the kernel (UW_ACT_FILE):
    the file an OPENAT opened (role "opened", its fd the result; into a
    fixed slot, fd -1: the slot is file_slot's, or with "any" the result),
    or an ACCEPT or SOCKET into a fixed slot, the directory of a relative
    path ("dfd"), the op's own file (F*XATTR: "fd"), the socket an ACCEPT
    listens on ("listener")."""
    if not v["flags"] & layout.ACT_FILE:
        return None
    f = file_fields(v["file"])
    role, fd = (("opened", -1 if v["file_slot"] else v["res"])
                if v["flags"] & layout.ACT_OPENED else
                ("listener", -1) if name == "ACCEPT" else ("fd", -1) if name in _XATTR else
                ("dfd", v["dfd2"] if name == "SYMLINKAT" else v["dfd"]))
    return msgspec.structs.replace(file_identity(f), fd=fd, role=role)


def _joined(given: str, d: FileIdentity | None) -> str | None:
    """The path the kernel reached, where it is known whole, for rules that
    match paths: the opened file's own, or a relative path joined to its
    directory's."""
    if d is None or d.path is None or d.path_truncated or not d.path.startswith("/"):
        return None
    if d.role == "opened":
        return d.path if d.path != given else None
    if given.startswith("/") or d.kind not in (None, "dir"):
        return None
    return d.path.rstrip("/") + ("/" + given if given else "")


def target(name: str, v: dict) -> Target:
    """What the action named, by its opcode's fields."""
    flags = v["flags"]
    arg0, arg1, arg2 = v["arg"]
    unread = ("no_kernel_reads" if flags & layout.ACT_NO_TARGET else
              "fault" if flags & layout.ACT_FAULT else None)
    slot = v["file_slot"] or None
    common = dict(unread=unread, truncated=bool(flags & (layout.ACT_PATH_TRUNC |
                                                         layout.ACT_PATH2_TRUNC)))
    if flags & layout.ACT_NO_TARGET:
        return Target(**common)
    file = _file(v, name)
    if flags & layout.ACT_REFUSED:
        return _refused(name, v, file, common)
    if name in _XATTR:
        t = dict(name=_path(v["path2"]), flags=arg0, size=arg1,
                 flag_names=_xattr_flags(arg0) if name.startswith(("S", "FS")) else None,
                 file=file, **common)
        if name in ("SETXATTR", "GETXATTR"):
            t.update(path=_path(v["path"]))
        return Target(**t)
    if name == "ACCEPT":
        fam, address = sockaddr(v["addr"], v["addr_len"])
        return Target(family=fam, address=address, flags=arg0 or None, file_slot=slot,
                      address_from="user" if flags & layout.ACT_ADDR_USER else None,
                      file=file, **common)
    if name in _PATHS or name in _TWO_PATHS:
        t = dict(path=_path(v["path"]), dfd=v["dfd"], **common)
        if name in _TWO_PATHS:
            t.update(path2=_path(v["path2"]), dfd2=v["dfd2"])
            if name == "SYMLINKAT":
                del t["dfd"]       # a symlink's target is not looked up
        if file is not None:
            t["file"] = file
            which = "path2" if name == "SYMLINKAT" else "path"
            full = _joined(t[which], file)
            if full is not None:
                t[which + "_given"] = t[which]
                t[which] = full
        if name in ("OPENAT", "OPENAT2"):
            t.update(flags=arg0, flag_names=open_flag_names(arg0), mode=arg1, resolve=arg2,
                     file_slot=slot)
        elif name == "MKDIRAT":
            t.update(mode=arg1)
        elif name == "STATX":
            t.update(flags=arg0, mask=arg1)
        elif arg0 or name == "UNLINKAT":
            t.update(flags=arg0, flag_names=_at_flags(arg0))
        return Target(**t)
    if name in FIXED_OPS:
        return Target(addr=arg0, len=arg1, buffer_index=v["key"][3], **common)
    if name == "SOCKET":
        return Target(family=_family(arg0), type=_sock_type(arg1), protocol=arg2,
                      file_slot=slot, file=file, **common)
    if name == "LISTEN":
        return Target(backlog=arg0, **_sock(arg1, arg2), **common)
    if name in _ADDRESS:
        fam, address = sockaddr(v["addr"], v["addr_len"])
        return Target(family=fam, address=address, **_sock(arg1, arg2),
                      address_from="user" if flags & layout.ACT_ADDR_USER else "kernel",
                      **common)
    return Target(**common)


def _refused(name: str, v: dict, file: FileIdentity | None, common: dict) -> Target:
    """A refused SQE's target: what it asked for, from the SQE and the
    caller's memory (the kernel took nothing of it)."""
    flags = v["flags"]
    if name in FIXED_OPS:       # prep refused its address (6.12 checks it there)
        return Target(addr=v["arg"][0], len=v["arg"][1], buffer_index=v["key"][3], **common)
    if not v["path"][:1].strip(b"\0") or not (name in _PATHS or name in _TWO_PATHS):
        return Target(dfd=v["dfd"], flags=v["arg"][0] or None, **common)
    t = dict(path=_path(v["path"]), dfd=v["dfd"], file=file, **common)
    if name in _TWO_PATHS:
        t.update(path2=_path(v["path2"]), dfd2=v["dfd2"])
    if name in ("OPENAT", "OPENAT2"):
        t.update(flags=v["arg"][0], flag_names=open_flag_names(v["arg"][0]))
    full = _joined(t["path"], file)
    if full is not None and not flags & layout.ACT_FAULT:
        t.update(path_given=t["path"], path=full)
    return Target(**t)


def _xattr_flags(flags: int) -> list[str]:
    names = [n for bit, n in ((_XATTR_CREATE, "XATTR_CREATE"), (_XATTR_REPLACE, "XATTR_REPLACE"))
             if flags & bit]
    rest = flags & ~(_XATTR_CREATE | _XATTR_REPLACE)
    return names + ([f"{rest:#x}"] if rest else [])


def _sock(kind: int, protocol: int) -> dict:
    return dict(type=_sock_type(kind), protocol=protocol) if kind else {}


def _at_flags(flags: int) -> list[str]:
    names = [n for bit, n in ((_AT_REMOVEDIR, "AT_REMOVEDIR"),
                              (_AT_SYMLINK_FOLLOW, "AT_SYMLINK_FOLLOW"),
                              (_AT_EMPTY_PATH, "AT_EMPTY_PATH")) if flags & bit]
    rest = flags & ~(_AT_REMOVEDIR | _AT_SYMLINK_FOLLOW | _AT_EMPTY_PATH)
    return names + ([f"{rest:#x}"] if rest else [])


def _completion(flags: int) -> str:
    if flags & layout.ACT_REFUSED:
        return "refused"
    if flags & layout.ACT_DONE:
        return "seen"
    if flags & layout.ACT_UNSEEN:
        return "not_seen"
    if flags & layout.ACT_AT_STOP:
        return "at_stop"
    return "unjoined"


def decode_action(buf, off: int, boot_to_wall: int, errno_name, context) -> Action:
    v = layout.ACTION.unpack(buf, off)
    (ring, cred_id, slot, _buf, euid, _pid, op, kflags, _, uid) = v["key"]
    name = sqe_op_name(op, unknown="OP_")
    done = bool(v["flags"] & layout.ACT_DONE)
    res = v["res"] if done else None
    return Action(
        v["ts"] + boot_to_wall, v["pid"], v["tid"], cstr(v["comm"]), uid, euid,
        v["cgroup_id"], ring_id(ring) or "", op, name, bool(kflags & layout.OP_SQ_THREAD),
        v["creator_pid"] or None, v["user_data"], target(name, v), _completion(v["flags"]),
        res, errno_name(res) if res is not None and res < 0 else None,
        v["ts_done"] - v["ts"] if done else None,
        slot if kflags & layout.OP_FIXED_FILE else None,
        ring_id(cred_id) if kflags & layout.OP_CREDS else None,
        *(context(v["cgroup_id"]) if context else (None, None)), v["count"] or 1,
        bool(v["flags"] & layout.ACT_REPEATS),
        # refused with -EACCES at prep: by the ring's restrictions
        denied=bool(kflags & layout.OP_DENIED) or (bool(v["flags"] & layout.ACT_REFUSED)
                                                   and v["res"] == -errno.EACCES))


def _proto(t: Target) -> str | None:
    """tcp, udp, unix, ... for the table: what `ss` would call the socket."""
    fam, kind = t.family, (t.type or "").split("|")[0]
    if fam in ("AF_INET", "AF_INET6"):
        suffix = "6" if fam == "AF_INET6" else ""
        return {"SOCK_STREAM": "tcp", "SOCK_DGRAM": "udp", "SOCK_RAW": "raw"}.get(
            kind, "inet") + suffix
    return {"AF_UNIX": "unix", "AF_NETLINK": "netlink", "AF_VSOCK": "vsock",
            "AF_PACKET": "packet"}.get(fam, fam)


def describe(ev: Action, escape) -> str:
    """The table's text of an action, `escape` (screen.escape) applied to
    what the traced process chose: "/etc/shadow O_RDONLY = 5"."""
    t = ev.target
    parts: list[str] = []
    # a listener, or the socket an ACCEPT put in a fixed slot, by its address
    if t.file is not None and (t.file.role not in ("dfd", "opened") or
                               ev.opcode_name == "ACCEPT"):
        sock = t.file.socket
        parts.append(escape(sock.local if sock and sock.local else t.file.path or "?"))
    if t.path is not None:
        parts.append(escape(t.path) + ("…" if t.truncated and t.path2 is None else ""))
    if t.path2 is not None:
        parts.append("->")
        parts.append(escape(t.path2) + ("…" if t.truncated else ""))
    if t.flag_names and ev.opcode_name in ("OPENAT", "OPENAT2"):
        parts.append("|".join(n for n in t.flag_names if n != "O_LARGEFILE"))
        if t.mode:
            parts.append(f"{t.mode:#o}")
    elif t.flag_names:
        parts.append("|".join(t.flag_names))
    elif t.mode and t.path is not None:
        parts.append(f"{t.mode:#o}")
    if ev.opcode_name == "SOCKET":
        parts.append(f"{t.family} {t.type} {t.protocol}")
    elif ev.opcode_name == "ACCEPT":
        parts.append("from " + escape(t.address or "?"))
    elif t.address is not None or t.family is not None:
        parts.append(" ".join(p for p in (_proto(t), escape(t.address or "?")) if p))
    if t.name is not None:
        parts.append(escape(t.name))
    if t.backlog is not None:
        parts.append(f"backlog={t.backlog}")
    if t.file_slot is not None:
        parts.append("slot=any" if t.file_slot == 0xFFFFFFFF else f"slot={t.file_slot - 1}")
    if t.buffer_index is not None:
        parts.append(f"buf={t.buffer_index} addr={t.addr:#x} len={t.len}"
                     + (f" ({t.buffer_at} of buffer)" if t.buffer_at else ""))
    if t.unread:
        parts.append(f"(target {t.unread})")
    parts.append("=")
    parts.append(_result(ev))
    if ev.completion == "refused":
        parts.append("(refused at prep)")
    if ev.repeats:
        parts.append(f"(repeated ×{ev.count})")
    return " ".join(parts)


def _result(ev: Action) -> str:
    if ev.result is None:
        return {"not_seen": "?(completion not seen)", "at_stop": "?(pending at stop)",
                "unjoined": "?(not waited for)"}.get(ev.completion, "?")
    return ev.error or str(ev.result)


class Pending:
    """What the kernel still holds of actions when tracing stops, read
    once no program runs, as records of their own, so that no action goes
    unreported: those waiting for their completion in `pending` (an accept
    or a connect that never finished, a completion skipped), marked
    at_stop; and the repeats each process's run folded in `act_runs`, not
    sent yet, as the run's action with its count (UW_ACT_REPEATS)."""

    _FLAGS = layout.ACTION.offsets["flags"]

    def __init__(self, map_fd: int, runs_fd: int | None = None):
        self.fd, self.runs_fd = map_fd, runs_fd

    def records(self) -> list[bytes]:
        out = []
        for raw in _values(self.fd, 8, layout.ACTION.size):
            flags = int.from_bytes(raw[self._FLAGS:self._FLAGS + 4], "little")
            raw[self._FLAGS:self._FLAGS + 4] = (flags | layout.ACT_AT_STOP).to_bytes(4, "little")
            out.append(bytes(raw))
        if self.runs_fd is not None:
            out += [repeats_record(raw) for raw in _values(self.runs_fd, 4, layout.ACT_RUN.size)
                    if layout.ACT_RUN.unpack(raw)["count"]]
        return out


def repeats_record(run: bytes) -> bytes:
    """The record the kernel sends when a run ends (bpf/targets.h
    act_run_flush): the run's action with its repeats' count and times."""
    r = layout.ACT_RUN
    rec = bytearray(run[r.offsets["rec"]:r.offsets["rec"] + layout.ACTION.size])
    v = r.unpack(run)
    a = layout.ACTION.offsets
    flags = int.from_bytes(rec[a["flags"]:a["flags"] + 4], "little") | layout.ACT_REPEATS
    rec[a["flags"]:a["flags"] + 4] = flags.to_bytes(4, "little")
    rec[a["count"]:a["count"] + 8] = v["count"].to_bytes(8, "little")
    rec[a["ts"]:a["ts"] + 8] = v["first_ts"].to_bytes(8, "little")
    rec[a["ts_done"]:a["ts_done"] + 8] = v["last_ts"].to_bytes(8, "little")
    return bytes(rec)


def _values(fd: int, key_size: int, size: int) -> list[bytearray]:
    """Every value of a BPF hash map, each as bytes."""
    from ..system import libbpf
    lib, out, prev = libbpf.lib(), [], None
    val = ctypes.create_string_buffer(size)
    while True:
        key = ctypes.create_string_buffer(key_size)
        if lib.bpf_map_get_next_key(fd, prev, key) != 0:
            return out
        if lib.bpf_map_lookup_elem(fd, key, val) == 0:
            out.append(bytearray(val.raw))
        prev = key
