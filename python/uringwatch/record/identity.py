"""What a call's fds, credentials and buffers referred to as of the call.

The kernel side (bpf/identity.h) fills uw_file, uw_mem and uw_cred while
the call is in flight; this turns them into Structs. Entries the kernel
left unresolved (resolve=proc, or no bpf_find_vma for buffers) can be
looked up in /proc by a live tracer: those say `"source": "proc"` and are
never `verified`, since by then the fd may name another file. Entries read
in the kernel are checked at exit (bpf/identity_check.h): `verified` says
whether that check held, `check` against what, and a raced entry carries
the other identity in `at_exit`.
"""

from __future__ import annotations

import ipaddress
import os
import stat

import msgspec

from . import layout
from ..screen import escape

PAGE_SIZE = 4096            # x86_64, the one architecture built for
VM_SHARED, VM_HUGETLB = 0x8, 0x400000

# superblock magics (include/uapi/linux/magic.h)
ANON_INODE_FS_MAGIC = 0x09041934
TMPFS_MAGIC = 0x01021994

ROLES = {layout.ROLE_RING: "ring", layout.ROLE_EVENTFD: "eventfd",
         layout.ROLE_SRC_FD: "src_fd", layout.ROLE_FD: "fd",
         layout.ROLE_SQE_FD: "sqe.fd", layout.ROLE_MEM: "mapping", layout.ROLE_SLOT: "slot"}
FAMILIES = {1: "unix", 2: "inet", 10: "inet6", 16: "netlink", 17: "packet", 40: "vsock"}
SOCK_TYPES = {1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 10: "packet"}
ANON_KINDS = {"[eventfd]": "eventfd", "[io_uring]": "io_uring"}


class Socket(msgspec.Struct, frozen=True, gc=False):
    family: str               # "inet", "inet6", "unix", ... or "af<N>"
    type: str                 # "stream", "dgram", ... or "type<N>"
    protocol: int             # IPPROTO_* for inet (6 tcp, 17 udp)
    local: str | None = None  # inet: "addr:port"
    peer: str | None = None   # inet, when connected


class FileIdentity(msgspec.Struct, frozen=True, gc=False):
    """One fd of a call, as of the call."""
    fd: int
    role: str                 # "ring", "fds[3]", "eventfd", "src_fd", "fd", ...
    kind: str | None = None   # file dir socket pipe eventfd io_uring memfd anon device
    dev: int | None = None    # as st_dev
    ino: int | None = None
    mode: int | None = None   # as st_mode
    path: str | None = None   # absolute path, or a pseudo file's name ("[eventfd]")
    path_truncated: bool = False  # only the leaf end of a longer path is kept
    socket: Socket | None = None
    source: str = "kernel"    # "kernel": read at the call; "proc": looked up later
    verified: bool = True     # checked against the kernel or the fd at exit: see `check`
    error: str | None = None  # why the fields are null
    check: str | None = None  # what `verified` rests on: "kernel", "exit"; None: nothing
    reason: str | None = None  # why not verified: "raced", "proc", "unchecked"
    at_exit: FileIdentity | None = None  # raced: the other identity (the ring's, or the fd's)


class Cred(msgspec.Struct, frozen=True, gc=False):
    """The caller's credentials, as REGISTER_PERSONALITY saves them
    (kernel ids, as seen from the initial user namespace)."""
    uid: int
    euid: int
    suid: int
    fsuid: int
    gid: int
    egid: int
    sgid: int
    fsgid: int
    ngroups: int
    cap_effective: int
    cap_permitted: int


class MemoryIdentity(msgspec.Struct, frozen=True, gc=False):
    """What backs one registered buffer."""
    addr: int
    len: int
    backing: str | None = None  # anon file shmem memfd hugetlb
    path: str | None = None
    offset: int | None = None   # file offset of addr
    dev: int | None = None
    ino: int | None = None
    shared: bool | None = None  # MAP_SHARED
    source: str = "kernel"
    verified: bool = True     # the ring pinned this mapping's page at addr: see `check`
    error: str | None = None
    check: str | None = None  # what `verified` rests on: "kernel"; None: nothing
    reason: str | None = None  # why not verified: "raced", "unchecked", "proc"


class Resolve(msgspec.Struct, frozen=True, gc=False):
    """How identities were read, and whether all were."""
    path: str                 # a layout.ResolvePath ("pathN": a code this version lacks)
    files_truncated: bool = False
    memory_truncated: bool = False


def _dev(kdev: int) -> int:
    """The kernel's s_dev (major << 20 | minor) as st_dev."""
    return os.makedev(kdev >> 20, kdev & 0xFFFFF)


def _components(raw: bytes, used: int) -> list[str]:
    """Path components leaf first, each ending in NUL."""
    return [c.decode(errors="replace") for c in raw[:used].split(b"\0")[:-1]]


def _kind(mode: int, magic: int, name: str | None) -> str:
    if magic == ANON_INODE_FS_MAGIC:
        return ANON_KINDS.get(name or "", "anon")
    fmt = stat.S_IFMT(mode)
    if fmt == stat.S_IFREG:
        return "memfd" if name and name.startswith("memfd:") and "/" not in name else "file"
    return {stat.S_IFDIR: "dir", stat.S_IFSOCK: "socket", stat.S_IFIFO: "pipe",
            stat.S_IFCHR: "device", stat.S_IFBLK: "device", stat.S_IFLNK: "link"}.get(fmt, "anon")


def _addr(family: int, raw: bytes, port: int) -> str | None:
    if family == 2:
        return f"{ipaddress.IPv4Address(raw[:4])}:{port}"
    if family == 10:
        return f"[{ipaddress.IPv6Address(raw)}]:{port}"
    return None


def _socket(f: dict) -> Socket:
    fam = f["family"]
    peer = None
    if f["rport"] or f["raddr"].strip(b"\0"):
        peer = _addr(fam, f["raddr"], f["rport"])
    return Socket(FAMILIES.get(fam, f"af{fam}"), SOCK_TYPES.get(f["type"], f"type{f['type']}"),
                  f["protocol"], _addr(fam, f["laddr"], f["lport"]), peer)


def _path(f: dict, kind: str) -> tuple[str | None, bool]:
    parts = _components(f["path"], f["path_len"])
    cut = bool(f["flags"] & layout.FL_PATH_TRUNC)
    if f["flags"] & layout.FL_PSEUDO:
        name = parts[0] if parts else ""
        if kind == "socket" or not name:    # a socket's is its protocol ("TCP")
            return f"{kind}:[{f['ino']}]", cut
        return name, cut
    if f["flags"] & layout.FL_ROOTED or cut:
        joined = "/".join(reversed(parts))
        return ("…/" if cut else "/") + joined, cut
    return None, cut


def role_name(role: int, index: int) -> str:
    if role == layout.ROLE_FDS:
        return f"fds[{index}]"
    if role == layout.ROLE_RING_FDS:
        return f"ring_fds[{index}]"
    return ROLES.get(role, f"role{role}")


# What an fd entry's check at exit found (bpf/identity_check.h):
# (verified, check, reason)
_KERNEL = (True, "kernel", None)      # the ring holds this very file after the call
_EXIT = (True, "exit", None)          # the fd named this file at enter and at exit
_RACED = (False, None, "raced")       # it named another at exit, or the ring holds another
_UNCHECKED = (False, None, "unchecked")
_BEFORE_CHECKS = (True, None, None)   # a record from before the check: as it said then


def _verdict(flags: int, checked: bool) -> tuple:
    if flags & layout.FL_KERNEL:
        return _KERNEL
    if flags & layout.FL_SAME_AT_EXIT:
        return _EXIT
    if flags & (layout.FL_RACED | layout.FL_AT_EXIT):
        return _RACED
    return _UNCHECKED if checked else _BEFORE_CHECKS


def file_fields(values: tuple) -> dict:
    """A uw_file nested in a record (an op's, an action's), as that
    record's unpack() left it, a tuple: its members by name."""
    return dict(zip((m for m, _ in layout.FILE.members), values))


def file_identity(f: dict, checked: bool = False) -> FileIdentity:
    """A uw_file, unpacked, as a FileIdentity; `checked`: its record's
    fd entries were checked at exit (uw_ident.flags UW_I_CHECKED)."""
    fd, role = f["fd"], role_name(f["role"], f["index"])
    flags = f["flags"]
    if flags & layout.FL_UNRESOLVED:
        return FileIdentity(fd, role, source="proc", verified=False,
                            error="not resolved in the kernel (resolve=proc)", reason="proc")
    verified, check, reason = _verdict(flags, checked)
    if flags & layout.FL_BADF:
        return FileIdentity(fd, role, verified=verified, check=check, reason=reason,
                            error="EBADF: no open file at this fd at the call")
    if not flags & layout.FL_FOUND:
        return FileIdentity(fd, role, verified=verified, check=check, reason=reason,
                            error="a kernel read failed")
    name = None
    if flags & layout.FL_PSEUDO:
        parts = _components(f["path"], f["path_len"])
        name = parts[0] if parts else ""
    kind = _kind(f["mode"], f["magic"], name)
    path, cut = _path(f, kind)
    return FileIdentity(fd, role, kind, _dev(f["dev"]), f["ino"], f["mode"], path, cut,
                        _socket(f) if flags & layout.FL_SOCK else None, "kernel", verified,
                        "path: a kernel read failed" if flags & layout.FL_FAULT else None,
                        check, reason)


def pair_raced(entries: list[tuple[int, FileIdentity]]) -> tuple[FileIdentity, ...]:
    """The fd entries of a record, each raced one with its other identity
    (an UW_FL_AT_EXIT entry of the same fd, role and index) as at_exit.
    entries: (uw_file.flags, its FileIdentity) in record order."""
    others = {(f.fd, f.role): f for fl, f in entries if fl & layout.FL_AT_EXIT}
    return tuple(msgspec.structs.replace(f, at_exit=others.get((f.fd, f.role)))
                 if fl & layout.FL_RACED else f
                 for fl, f in entries if not fl & layout.FL_AT_EXIT)


# a buffer's address space was write-locked at the call (bpf_find_vma only
# try-locks it): looked up in /proc instead, live, and this note kept
LOCKED = "the address space was locked at the call"


def _mem_verdict(flags: int, checked: bool) -> tuple:
    """(verified, check, reason) of a buffer the kernel looked up at exit
    (bpf/identity_check.h, check_mem)."""
    if flags & layout.M_KERNEL:
        return _KERNEL
    if flags & layout.M_RACED:
        return _RACED
    return _UNCHECKED if checked else _BEFORE_CHECKS


def memory_identity(m: dict, f: dict, checked: bool = False) -> MemoryIdentity:
    """A uw_mem, unpacked (its uw_file apart), as a MemoryIdentity;
    `checked`: its record's buffers were compared with what the ring
    pinned (uw_ident.flags UW_I_MEM_CHECKED)."""
    addr, length, flags = m["addr"], m["len"], m["flags"]
    if flags & layout.M_UNRESOLVED:
        return MemoryIdentity(addr, length, source="proc", verified=False, reason="proc",
                              error="not resolved in the kernel (no bpf_find_vma, or resolve=proc)")
    if flags & layout.M_BUSY:       # bpf_find_vma only try-locks: /proc, live
        return MemoryIdentity(addr, length, source="proc", verified=False, error=LOCKED,
                              reason="proc")
    verified, check, reason = _mem_verdict(flags, checked)
    if not flags & layout.M_FOUND:
        return MemoryIdentity(addr, length, verified=verified, error="no mapping at this address",
                              check=check, reason=reason)
    shared = bool(m["vm_flags"] & VM_SHARED)
    hugetlb = bool(m["vm_flags"] & VM_HUGETLB)
    if not flags & layout.M_FILE:
        return MemoryIdentity(addr, length, "hugetlb" if hugetlb else "anon", shared=shared,
                              verified=verified, check=check, reason=reason)
    file = file_identity(f)
    offset = m["vm_pgoff"] * PAGE_SIZE + addr - m["vm_start"]
    backing = "file"
    if hugetlb:
        backing = "hugetlb"
    elif file.kind == "memfd":
        backing = "memfd"
    elif f["magic"] == TMPFS_MAGIC and f["flags"] & layout.FL_PSEUDO:
        backing = "shmem"       # MAP_SHARED|MAP_ANONYMOUS ("dev/zero"), SysV shm
    return MemoryIdentity(addr, length, backing, file.path, offset, file.dev, file.ino, shared,
                          verified=verified, error=file.error, check=check, reason=reason)


def cred(c: dict) -> Cred:
    return Cred(c["uid"], c["euid"], c["suid"], c["fsuid"], c["gid"], c["egid"], c["sgid"],
                c["fsgid"], c["ngroups"], c["cap_effective"], c["cap_permitted"])


def label(f: FileIdentity) -> str:
    """A short name for the table: a path (escaped: the traced process
    names its files), "tcp 127.0.0.1:443", a kind."""
    s = f.socket
    if s is not None:
        proto = {6: "tcp", 17: "udp"}.get(s.protocol) if s.family in ("inet", "inet6") else None
        name = proto or f"{s.family}/{s.type}"
        return f"{name} {s.local}" if s.local else name
    return escape(f.path) if f.path else f.kind or "?"


# -- looked up later from user space: never verified -----------------------

def _proc_kind(mode: int, link: str) -> str:
    if link.startswith("anon_inode:"):
        return ANON_KINDS.get(link.removeprefix("anon_inode:"), "anon")
    if link.startswith("/memfd:"):
        return "memfd"
    return _kind(mode, 0, None)


def proc_file(pid: int, entry: FileIdentity) -> FileIdentity:
    """What /proc says fd is now: unverified, since the kernel gave nothing
    to compare it with and the fd may have been reused since the call."""
    where = f"/proc/{pid}/fd/{entry.fd}"
    try:
        link = os.readlink(where)
        st = os.stat(where)
    except OSError as e:
        return msgspec.structs.replace(entry, error=f"not resolved in the kernel; "
                                       f"{where}: {e.strerror}")
    kind = _proc_kind(st.st_mode, link)
    path = link.removeprefix("anon_inode:") if kind in ("eventfd", "io_uring", "anon") else link
    return msgspec.structs.replace(entry, kind=kind, dev=st.st_dev, ino=st.st_ino,
                                   mode=st.st_mode, path=path, error=None)


def proc_memory(pid: int, entry: MemoryIdentity) -> MemoryIdentity:
    """The mapping /proc/PID/maps shows at entry.addr now: unverified."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.readlines()
    except OSError as e:
        return msgspec.structs.replace(entry, error=f"not resolved in the kernel; "
                                       f"/proc/{pid}/maps: {e.strerror}")
    for line in lines:
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if not start <= entry.addr < end:
            continue
        path = fields[5].strip() if len(fields) > 5 else ""
        shared = fields[1][3] == "s"
        if not path or path.startswith("["):
            backing, path = "anon", None
        elif path.startswith("/memfd:"):
            backing = "memfd"
        elif path.startswith(("/dev/zero", "/SYSV")):
            backing = "shmem"
        else:
            backing = "file"
        return msgspec.structs.replace(entry, backing=backing, path=path,
                                       offset=int(fields[2], 16) + entry.addr - start,
                                       ino=int(fields[4]) or None, shared=shared,
                                       error=LOCKED if entry.error == LOCKED else None)
    return msgspec.structs.replace(entry, error="not resolved in the kernel; no mapping in "
                                   f"/proc/{pid}/maps now")
