"""Rings made before tracing began, found once at start: the BPF iterator
over every task's files (bpf/rings_before.h) names each ring under the id
its operations will carry, and the kernel's /proc/PID/fdinfo/FD of the
ring says what it has registered. The ledger (rings.py) is fed what is
found, so a long-running server's operations are joined to registrations
it made before the tracer started.

What fdinfo lists (io_uring/fdinfo.c): `SqThread` (the SQPOLL thread's
pid, -1 for none), `SqThreadCpu`, `UserFiles: N` then a line per
registered file, `UserBufs: N` then `INDEX: 0xADDR/LEN` per buffer, and
on older kernels (not 6.18) `Personalities:` with each id. A file's line
is its full path on 6.18 (seq_file_path, escaping space, tab, newline and backslash
as \\ooo), empty slots left out; on older kernels (5.10, 6.1) the last
path component only (d_iname), and a `<none>` line for an empty slot."""

from __future__ import annotations

import ctypes
import os
import re
import time

import msgspec

from . import layout
from ..system.containers import cgroup2_root
from .events import RegisteredBuffer, RingBefore, ring_id
from .identity import ANON_KINDS, FileIdentity, MemoryIdentity, proc_memory

_NR_IO_URING_SETUP = 425
SOURCE = "fdinfo"           # FileIdentity.source of what fdinfo named
_FILE_LINE = re.compile(r"\s*(\d+): (.*)")
_BUF_LINE = re.compile(r"\s*(\d+): 0x([0-9a-f]+)/(\d+)")
_ID_LINE = re.compile(r"\s*(\d+)$")
_ESCAPED = re.compile(r"\\([0-7]{3})")


def own_ring() -> int:
    """A ring of the tracer's own, made before attaching (so no event is
    made of it): its f_op tells the iterator's io_uring files from other
    anon-inode files. An fd, or -errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = (ctypes.c_uint32 * 30)()
    params[2] = 1 << 6                  # IORING_SETUP_R_DISABLED: never used
    fd = libc.syscall(ctypes.c_long(_NR_IO_URING_SETUP), ctypes.c_uint(1), params)
    return fd if fd >= 0 else -ctypes.get_errno()


def rings_listed(raw: bytes, probe_fd: int) -> dict[str, list[tuple[int, int]]]:
    """The iterator's records as ring id -> [(pid, fd), ...] holding it:
    the files of io_uring's f_op (the probe ring's), but the probe ring
    and rings made while tracing (their ring event came already)."""
    recs = list(layout.RING_FD.rows(raw))      # (ring_id, fops_id, pid, fd, flags, pad)
    probe = (os.getpid(), probe_fd)
    fops = {f for _, f, pid, fd, _, _ in recs if (pid, fd) == probe}
    rings: dict[str, list[tuple[int, int]]] = {}
    for rid, f, pid, fd, flags, _ in recs:
        if f in fops and not flags & layout.RFD_MADE and (pid, fd) != probe and rid:
            rings.setdefault(ring_id(rid), []).append((pid, fd))
    return {k: sorted(set(v)) for k, v in rings.items()}


def _unescape(name: str) -> str:
    return _ESCAPED.sub(lambda m: chr(int(m[1], 8)), name)


def _file(slot: int, name: str) -> FileIdentity:
    """What fdinfo names at a slot: never verified (read after the fact,
    with no device or inode to check it by)."""
    name = _unescape(name)
    kind, path, cut = None, name, False
    if name.startswith(("pipe:[", "socket:[")):
        kind = name.split(":", 1)[0]
    elif name.startswith("anon_inode:") or name.startswith("["):
        path = name.removeprefix("anon_inode:")
        kind = ANON_KINDS.get(path, "anon")
    elif name.startswith("/memfd:"):
        kind = "memfd"
    elif not name.startswith("/"):      # older kernels: the last component only
        path, cut = ("…/" + name, True) if name else (None, False)
    return FileIdentity(-1, f"fds[{slot}]", kind, path=path, path_truncated=cut,
                        source=SOURCE, verified=False, reason="proc")


def parse_fdinfo(text: str) -> dict:
    """An io_uring fd's fdinfo: its top-level fields (name -> value), and
    the registered files, buffers and personality ids listed under them."""
    fields: dict[str, str] = {}
    files, bufs, personalities = [], [], []
    section = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            section, _, value = line.partition(":")
            fields[section] = value.strip()
        elif section == "UserFiles" and (m := _FILE_LINE.fullmatch(line)):
            if m[2] != "<none>":
                files.append(_file(int(m[1]), m[2]))
        elif section == "UserBufs" and (m := _BUF_LINE.fullmatch(line)):
            bufs.append(RegisteredBuffer(int(m[1]), int(m[2], 16), int(m[3])))
        elif section == "Personalities" and (m := _ID_LINE.fullmatch(line)):
            personalities.append(int(m[1]))
    return {"fields": fields, "files": files, "buffers": bufs,
            "personalities": personalities}


def _number(fields: dict, name: str) -> int | None:
    """A field that holds a count or an id, None if absent or not one."""
    text = fields.get(name, "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _proc(pid: int, root: str | None) -> tuple[str, int, int] | None:
    """(comm, real uid, cgroup v2 id) of a process, as its calls would
    carry them, None if its status has no uid; root: where cgroup2 is
    mounted. OSError if it is gone."""
    with open(f"/proc/{pid}/comm") as f:
        comm = f.read().rstrip("\n")
    with open(f"/proc/{pid}/status") as f:
        uid = next((line.split()[1] for line in f if line.startswith("Uid:")), "")
    if not uid.isdigit():
        return None
    cgroup_id = 0
    with open(f"/proc/{pid}/cgroup") as f:
        path = next((line.strip()[3:] for line in f if line.startswith("0::")), None)
    if root and path is not None:
        try:
            cgroup_id = os.stat(root + path).st_ino
        except OSError:
            pass
    return comm, int(uid), cgroup_id


def ring_event(rid: str, holders: list[tuple[int, int]], keep,
               root: str | None) -> RingBefore | None:
    """The event of one ring, as `keep` makes it of its first holder whose
    fdinfo reads and that keep keeps (returns not None); None if no holder
    is (all gone since, or none kept)."""
    for pid, fd in holders:
        try:
            proc = _proc(pid, root)
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = parse_fdinfo(f.read())
        except OSError:     # gone since
            continue
        if proc is None:
            continue
        comm, uid, cgroup_id = proc
        fields = info["fields"]
        ev = RingBefore(
            time.time_ns(), pid, fd, comm, uid, cgroup_id, rid, holders,
            _number(fields, "SqThread"), _number(fields, "SqThreadCpu"),
            _number(fields, "UserFiles") or 0, info["files"],
            [_memory(pid, b) for b in info["buffers"]], info["buffers"],
            info["personalities"])
        if (kept := keep(ev)) is not None:
            return kept
    return None


def _memory(pid: int, buf: RegisteredBuffer) -> MemoryIdentity:
    """What backs a registered buffer, from /proc/PID/maps now."""
    return proc_memory(pid, MemoryIdentity(buf.base, buf.len, source="proc",
                                           verified=False))


def found(raw: bytes, probe_fd: int, keep) -> list[RingBefore]:
    """The rings made before tracing that `keep` (the tracer's filters)
    keeps, one event each as keep makes it, from the iterator's bytes."""
    out, root = [], cgroup2_root()
    for rid, holders in rings_listed(raw, probe_fd).items():
        ev = ring_event(rid, holders, keep, root)
        if ev is not None:
            out.append(ev)
    return out


def record(ev: RingBefore) -> bytes:
    """A ring from before as a record of its own, for recordings: the
    record header, then the event as JSON (what the process had registered
    then is read from /proc, so only the event itself can be replayed)."""
    body = msgspec.json.encode(ev)
    size = layout.REC_HDR.size + len(body)
    return layout.REC_HDR.struct.pack(layout.KIND_RING_BEFORE, layout.ABI_VERSION, size) + body


def decode_record(buf, off: int, size: int) -> RingBefore:
    """record()'s event back, as it was shown."""
    return msgspec.json.decode(bytes(buf[off + layout.REC_HDR.size:off + size]), type=RingBefore)
