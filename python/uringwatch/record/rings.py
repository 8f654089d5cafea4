"""Rings beyond registration: their creation, the operations they accept,
and the join of each operation to the registrations it uses."""

from __future__ import annotations

import collections
import ctypes
import struct
import time

import msgspec

from . import layout, opcodes, registry, targets, uapi
from .layout import cstr
from .events import (Action, BufferGroup, Event, Op, OpCred, RegisteredBuffer, RegisteredFile,
                     Ring, RingBefore, Uses, ring_id)
from .identity import FileIdentity, file_fields, file_identity

# IORING_SETUP_* and IORING_FEAT_* bits (include/uapi/linux/io_uring.h)
SETUP_FLAGS = (
    "IOPOLL", "SQPOLL", "SQ_AFF", "CQSIZE", "CLAMP", "ATTACH_WQ", "R_DISABLED",
    "SUBMIT_ALL", "COOP_TASKRUN", "TASKRUN_FLAG", "SQE128", "CQE32", "SINGLE_ISSUER",
    "DEFER_TASKRUN", "NO_MMAP", "REGISTERED_FD_ONLY", "NO_SQARRAY", "HYBRID_IOPOLL",
    "CQE_MIXED", "SQE_MIXED",
)
FEATURES = (
    "SINGLE_MMAP", "NODROP", "SUBMIT_STABLE", "RW_CUR_POS", "CUR_PERSONALITY",
    "FAST_POLL", "POLL_32BITS", "SQPOLL_NONFIXED", "EXT_ARG", "NATIVE_WORKERS",
    "RSRC_TAGS", "CQE_SKIP", "LINKED_FILE", "REG_REG_RING", "RECVSEND_BUNDLE",
    "MIN_TIMEOUT", "RW_ATTR", "NO_IOWAIT",
)
SQPOLL = 1 << SETUP_FLAGS.index("SQPOLL")
SQ_AFF = 1 << SETUP_FLAGS.index("SQ_AFF")
REASONS = {layout.OP_FIRST: "first_use", layout.OP_EACH: "each", layout.OP_COUNT: "count"}


def bit_names(value: int, names: tuple[str, ...]) -> list[str]:
    out = [n for i, n in enumerate(names) if value >> i & 1]
    rest = value & ~((1 << len(names)) - 1)
    return out + ([f"{rest:#x}"] if rest else [])


def sqe_op_name(op: int) -> str:
    """An operation's name as Op events have always spelled it (OP_n for
    one past the table)."""
    return opcodes.sqe_op_name(op, unknown="OP_")


def decode_ring(buf, off: int, boot_to_wall: int, errno_name, context) -> Ring:
    v = layout.RING.unpack(buf, off)
    ok = not v["flags"] & layout.F_EXIT_FAULT and v["ret"] >= 0
    p = uapi.PARAMS.unpack(v["params"]) if ok else None
    flags = p["flags"] if p else None
    sqpoll = p is not None and flags & SQPOLL
    return Ring(
        v["ts_enter"] + boot_to_wall, v["pid"], v["tid"],
        v["ppid"] if v["flags"] & layout.F_PPID else None, v["uid"], v["gid"],
        cstr(v["comm"]), v["cgroup_id"], ring_id(v["ring_id"]),
        v["ret"] if v["ret"] >= 0 else None, v["ret"], errno_name(v["ret"]),
        v["ts_exit"] - v["ts_enter"], v["entries"],
        p and p["sq_entries"], p and p["cq_entries"], flags,
        bit_names(flags or 0, SETUP_FLAGS),
        p["sq_thread_cpu"] if sqpoll and flags & SQ_AFF else None,
        p["sq_thread_idle"] if sqpoll else None,
        p and p["features"], bit_names(p["features"] if p else 0, FEATURES),
        *(context(v["cgroup_id"]) if context else (None, None)))


def decode_op(buf, off: int, boot_to_wall: int, context) -> Op:
    v = layout.OP.unpack(buf, off)
    (ring, cred_id, slot, buf_idx, euid, _pid, op, flags, _, uid) = v["key"]
    creds, differ = flags & layout.OP_CREDS, bool(flags & layout.OP_CREDS_DIFFER)
    sq_creds = differ and not creds and bool(flags & layout.OP_SQ_THREAD)
    known = v["reason"] != layout.OP_COUNT     # counts carry the key alone
    ran = (OpCred(ring_id(cred_id), v["cred_uid"], v["cred_euid"], v["cred_cap_effective"])
           if known else OpCred(ring_id(cred_id), None, None, None))
    return Op(
        v["ts"] + boot_to_wall, v["first_ts"] + boot_to_wall, v["count"],
        REASONS.get(v["reason"], str(v["reason"])), ring_id(ring) or "", op,
        sqe_op_name(op), v["pid"], v["tid"], cstr(v["comm"]), uid, euid,
        v["cgroup_id"], v["creator_pid"] or None, bool(flags & layout.OP_SQ_THREAD),
        slot if flags & layout.OP_FIXED_FILE else None,
        buf_idx if flags & layout.OP_FIXED_BUF else None,
        buf_idx if flags & layout.OP_BUF_SELECT else None,
        ran if creds else None,
        OpCred(None, uid, euid, v["cap_effective"] if known else None)
        if creds or sq_creds else None,
        differ, None, *(context(v["cgroup_id"]) if context else (None, None)),
        sq_thread_cred=ran if sq_creds else None, denied=bool(flags & layout.OP_DENIED),
        **_target(v))


_BADF = "EBADF: no open file at this fd at submission"
_EMPTY_SLOT = "EBADF: no file in this fixed slot at submission"
_NOT_RING = "EBADFD: the file is not a ring's"


def _target(v: dict) -> dict:
    """An op record's target fields (uw_op_key.target): the file_id of the
    file its fd or fixed slot named, and the identity a first use carries
    (file.flags set); counts carry the id alone, for the Ledger to join."""
    t = v["target"]
    if not t:
        return {}
    out: dict = {"cmd_op": v["cmd_op"]} if t & layout.OPT_CMD else {}
    if t & layout.OPT_BADF:
        out["target"] = _no_file(v["key"][2] if t & layout.OPT_SLOT else -1,
                                 t & layout.OPT_SLOT)
    elif t & layout.OPT_FD:
        out.update(_file(v, "file", "target"))
    if t & layout.OPT_IN_BADF:
        out["target_in"] = _no_file(-1, t & layout.OPT_IN_SLOT)
    elif t & layout.OPT_IN:
        out.update(_file(v, "file_in", "target_in"))
    if t & layout.OPT_RING:
        if v["file_in_id"]:
            out["target_ring"] = ring_id(v["file_in_id"])
        else:
            out["target_ring_error"] = _NOT_RING
    if t & layout.OPT_DEST:
        out.update(_destination(v, t, out.get("target")))
    return out


_DEST_FAULT = "EFAULT: the caller's address was unreadable at submission"
_PROTOCOLS = {6: "tcp", 17: "udp"}


def _no_file(fd: int, slot: int) -> FileIdentity:
    """What an fd (fd -1) or a fixed slot named when it held no file."""
    return (FileIdentity(fd, "slot", error=_EMPTY_SLOT) if slot
            else FileIdentity(fd, "fd", error=_BADF))


def _file(v: dict, member: str, field: str) -> dict:
    """The keyed id of the file in `member` (file or file_in, its id in
    member + "_id"), and in a first use (its flags set) its identity."""
    out = {member + "_id": ring_id(v[member + "_id"])}
    f = file_fields(v[member])
    if f["flags"]:
        out[field] = file_identity(f)
    return out


def _destination(v: dict, t: int, sock: FileIdentity | None) -> dict:
    """A send's destination (UW_OPT_DEST): its keyed id, and in a first use
    (file_in.flags set) the address, named with its socket's protocol."""
    out = {"destination_from": "user" if t & layout.OPT_DEST_USER else "kernel"}
    if t & layout.OPT_DEST_FAULT:
        return out | {"destination_error": _DEST_FAULT}
    out["destination_id"] = ring_id(v["file_in_id"])
    f = file_fields(v["file_in"])
    if f["flags"]:
        fam, address = targets.sockaddr(f["path"], f["path_len"])
        s = sock.socket if sock is not None else None
        proto = _PROTOCOLS.get(s.protocol) if s and s.family in ("inet", "inet6") else None
        out["destination"] = " ".join(x for x in (proto or fam or "af?", address) if x)
    return out


def _by_index(files) -> dict[int, FileIdentity]:
    """A register event's file identities (roles `fds[N]`) by N, their
    index in its fds array."""
    return {int(f.role[4:-1]): f for f in files or ()
            if f.role.startswith("fds[") and f.role.endswith("]")}


def release_memory() -> None:
    """Gives the C heap's free memory back to the system (glibc's
    malloc_trim), after a cache let go of most of what it held: freed
    memory is otherwise kept for reuse, and the tracer's RSS would stay at
    its peak. Elsewhere (musl), nothing."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


class _Tables:
    """What one ring has registered, by slot, index, group and cred id."""

    def __init__(self):
        self._files: dict[int, RegisteredFile] = {}
        # a REGISTER_FILES' fds and identities, made into `files` and
        # `identities` when first asked for: a flood of registrations is
        # mostly unregistered before any use
        self._fds: tuple[int, ...] = ()
        self._idents: list | None = None
        self._identities: dict[int, FileIdentity] = {}
        self.buffers: dict[int, RegisteredBuffer] = {}
        self.groups: dict[int, BufferGroup] = {}
        self.personalities: dict[str, int] = {}

    @property
    def files(self) -> dict[int, RegisteredFile]:
        if self._fds:
            self._files = {i: RegisteredFile(i, fd) for i, fd in enumerate(self._fds) if fd >= 0}
            self._fds = ()
        return self._files

    @property
    def identities(self) -> dict[int, FileIdentity]:
        """The registered file at each slot, as its registration's event named it."""
        if self._idents is not None:
            self._identities = _by_index(self._idents)
            self._idents = None
        return self._identities

    def register_files(self, fds, idents=None) -> None:
        self._files, self._fds = {}, tuple(fds)
        self._identities, self._idents = {}, idents

    def listed(self, ev: RingBefore) -> None:
        """What a ring made before tracing had registered, as found at start."""
        self._identities, self._idents, self._fds = _by_index(ev.files), None, ()
        # the fd each was registered from is not known
        self._files = {slot: RegisteredFile(slot) for slot in self._identities}
        self.buffers = {b.index: b for b in ev.buffers}

    def update_file(self, slot: int, fd: int, ident: FileIdentity | None) -> None:
        """FILES_UPDATE of one slot: fd -1 empties it."""
        files, identities = self.files, self.identities
        files.pop(slot, None)
        identities.pop(slot, None)
        if fd >= 0:
            files[slot] = RegisteredFile(slot, fd)
            if ident is not None:
                identities[slot] = ident


class Ledger:
    """Joins operations to registrations: fed every event in order (live or
    replayed), it keeps each ring's registered files, buffers, buffer groups
    and personalities, and fills an operation's `uses` from them. What a
    ring made before tracing had registered comes from its RingBefore
    event, found at start (live only); without one, its use shows the slot
    or index alone. A ring the kernel tells freed is let go of (`forget`,
    counted in `freed`); beyond that it keeps at most MAX_RINGS rings, the
    least recently used going first (`evicted` counts them): a closed ring
    is never used again, and an id is never another ring's."""

    MAX_RINGS = 4096

    def __init__(self):
        self._rings: collections.OrderedDict[str, _Tables] = collections.OrderedDict()
        self._peak = 0
        self.evicted = 0
        self.freed = 0
        self._targets: collections.OrderedDict[tuple[str, str], FileIdentity] = \
            collections.OrderedDict()

    @property
    def held(self) -> int:
        """Rings whose registrations it holds."""
        return len(self._rings)

    def forget(self, ring_ids) -> int:
        """Lets go of freed rings' registrations; how many it held."""
        n = sum(self._rings.pop(r, None) is not None for r in ring_ids)
        self.freed += n
        if len(self._rings) < self._peak // 4:
            # a dict keeps its table at its largest: a copy is sized anew
            self._rings, self._peak = collections.OrderedDict(self._rings), len(self._rings)
            release_memory()
        return n

    # the opcodes _registered() follows: other calls (most) skip it
    FOLLOWED = frozenset(r.name for r in registry.REGISTER if r.ledger)

    def feed(self, ev):
        if isinstance(ev, Event):
            if ev.ret >= 0 and ev.ring_id and ev.opcode_name in self.FOLLOWED:
                self._registered(self._tables(ev.ring_id), ev)
            return ev
        if isinstance(ev, Op):
            return self._join(ev)
        if isinstance(ev, Action) and ev.target.buffer_index is not None:
            return self._join_buffer(ev)
        if isinstance(ev, RingBefore):
            self._tables(ev.ring_id).listed(ev)
        return ev

    def _tables(self, ring: str) -> _Tables:
        t = self._rings.get(ring)
        if t is not None:
            self._rings.move_to_end(ring)
            return t
        if len(self._rings) >= self.MAX_RINGS:
            self._rings.popitem(last=False)
            self.evicted += 1
        t = self._rings[ring] = _Tables()
        self._peak = max(self._peak, len(self._rings))
        return t

    def _registered(self, t: _Tables, ev: Event) -> None:
        name, p = ev.opcode_name, ev.payload
        if name == "UNREGISTER_FILES":
            t.register_files(())
            return
        if name == "UNREGISTER_BUFFERS":
            t.buffers.clear()
            return
        fds, iovecs = getattr(p, "fds", None), getattr(p, "iovecs", None)
        offset, bgid = getattr(p, "offset", None) or 0, getattr(p, "bgid", None)
        if name in ("REGISTER_FILES", "REGISTER_FILES2") and fds is not None:
            t.register_files(fds, ev.files)
        elif name in ("REGISTER_FILES_UPDATE", "REGISTER_FILES_UPDATE2") and fds:
            idents = _by_index(ev.files)
            for i, fd in enumerate(fds[:ev.ret]):
                if fd >= -1:        # -2 (IORING_REGISTER_FILES_SKIP) leaves the slot
                    t.update_file(offset + i, fd, idents.get(i))
        elif name in ("REGISTER_BUFFERS", "REGISTER_BUFFERS2") and iovecs is not None:
            t.buffers = {i: RegisteredBuffer(i, v.base, v.len) for i, v in enumerate(iovecs)}
        elif name == "REGISTER_BUFFERS_UPDATE" and iovecs:
            for i, v in enumerate(iovecs):
                t.buffers[offset + i] = RegisteredBuffer(offset + i, v.base, v.len)
        elif name == "REGISTER_PBUF_RING" and bgid is not None:
            t.groups[bgid] = BufferGroup(bgid, p.ring_addr, p.ring_entries)
        elif name == "UNREGISTER_PBUF_RING" and bgid is not None:
            t.groups.pop(bgid, None)
        elif name == "REGISTER_PERSONALITY" and ev.cred_id:
            t.personalities[ev.cred_id] = ev.ret

    # file ids whose identity is kept for the counts of their keys: a
    # first use's, the least recently seen going first past this many
    MAX_TARGETS = 16384

    def _target(self, op: Op, id_field: str = "file_id", field: str = "target") -> Op:
        """A count of a key with a file (a plain fd's or a fixed slot's;
        SPLICE/TEE's input, by `file_in_id` into `target_in`) gets the
        identity its first use carried: the same file id is the same open
        file."""
        file_id, known = getattr(op, id_field), getattr(op, field)
        key = (field, file_id)
        if known is not None:
            self._targets[key] = known
            self._targets.move_to_end(key)
            if len(self._targets) > self.MAX_TARGETS:
                self._targets.popitem(last=False)
            return op
        known = self._targets.get(key)
        return op if known is None else msgspec.structs.replace(op, **{field: known})

    def _join(self, op: Op) -> Op:
        if op.file_id is not None:
            op = self._target(op)
        if op.file_in_id is not None:
            op = self._target(op, "file_in_id", "target_in")
        if op.destination_id is not None:
            op = self._target(op, "destination_id", "destination")
        t = self._rings.get(op.ring_id)
        if t is None:
            return op
        self._rings.move_to_end(op.ring_id)
        fixed = op.fixed_file
        uses = Uses(
            file=t.files.get(fixed) if fixed is not None else None,
            buffer=t.buffers.get(op.buffer_index) if op.buffer_index is not None else None,
            buffer_group=t.groups.get(op.buffer_group)
            if op.buffer_group is not None else None,
            personality=t.personalities.get(op.personality_cred.id)
            if op.personality_cred else None,
            file_identity=t.identities.get(fixed) if fixed is not None else None)
        return msgspec.structs.replace(op, uses=uses if uses != Uses() else None)


    def _join_buffer(self, act: Action) -> Action:
        """A fixed-buffer action with the buffer it names and where its
        address lies in it."""
        t = self._rings.get(act.ring_id)
        buf = t.buffers.get(act.target.buffer_index) if t is not None else None
        if buf is None or act.target.addr is None:
            return act
        return msgspec.structs.replace(act, target=msgspec.structs.replace(
            act.target, buffer=buf, buffer_at=buffer_at(act.target.addr, buf)))


def buffer_at(addr: int, buf: RegisteredBuffer) -> str:
    """Where an address lies in a registered buffer: "start", "inside",
    "end" (one past its last byte, where a zero-length op passes the
    kernel's bounds check), or "outside"."""
    end = buf.base + buf.len
    if addr == end:
        return "end"
    if addr == buf.base:
        return "start"
    return "inside" if buf.base < addr < end else "outside"


class UseCounts:
    """Reads the kernel's summary of uses (the `uses` and `spills` maps)
    every interval, and turns what each key gained since the last read into
    a count record. A key that gained nothing over a whole interval (its
    ring closed, its process gone, or just idle) is taken out of the map,
    its last count with it: the maps hold what is in use, and a full map
    is one an attacker keeps busy. Each CPU also holds the uses of its last
    key not yet added to `uses` (bpf/opcache.h, PendingUses): a key's count
    is the map's plus those, read after the map, so that a use moved from a
    CPU into the map meanwhile is seen in neither place for one read, never
    in both; a count lagging so is not counted down but given at a later
    read. Once the tracer is detached the last read is final: the counts
    add up exactly to the operations the kernel saw (plus ops_untracked)."""

    def __init__(self, map_fds: tuple[int, ...], interval: float,
                 pending: "PendingUses | None" = None):
        self.fds, self.interval, self.pending = map_fds, interval, pending
        self._seen: dict[bytes, int] = {}
        self._peak = 0
        self._last = time.monotonic()
        self._final = False

    @property
    def held(self) -> int:
        """Keys followed: at most the maps' sizes."""
        return len(self._seen)

    def due(self, final: bool) -> bool:
        if self._final:
            return False
        if final:
            self._final = True
            return True
        return time.monotonic() - self._last >= self.interval

    def records(self) -> list[bytes]:
        self._last = time.monotonic()
        out: list[bytes] = []
        for i, fd in enumerate(self.fds):
            # the fast path keeps only keys of the first map (`uses`)
            self._read(fd, out, self.pending if i == 0 else None)
        self._peak = max(self._peak, len(self._seen))
        if len(self._seen) < self._peak // 4:
            self._seen, self._peak = dict(self._seen), len(self._seen)  # sized anew
            release_memory()
        return out

    def _read(self, fd: int, out: list[bytes], pending: "PendingUses | None") -> None:
        from ..system import libbpf
        lib = libbpf.lib()
        vals: dict[bytes, bytes] = {}
        val = ctypes.create_string_buffer(layout.USE.size)
        for key in _keys(lib, fd):
            if lib.bpf_map_lookup_elem(fd, key, val) == 0:
                vals[key.raw] = val.raw
        held = pending.read() if pending else {}      # after the map: see above
        took = False
        for k, raw in vals.items():
            before = self._seen.get(k)
            n, last_ts = held.pop(k, (0, 0))
            total = _count(raw) + n
            if before is not None and total == before and n == 0:
                # idle: out of the map, with what it gained meanwhile
                buf = ctypes.create_string_buffer(k, len(k))
                if lib.bpf_map_lookup_and_delete_elem(fd, buf, val) != 0:
                    continue
                del self._seen[k]
                took = True
                rec = _count_record(k, val.raw, before)
            else:
                self._seen[k] = max(total, before or 0)
                rec = _count_record(k, _with_pending(raw, n, last_ts), before or 0)
            if rec is not None:
                out.append(rec)
        if took and pending:
            pending.forget()
        if self._final and pending:
            # detached: uses CPUs still hold of keys taken out of the map
            for k in held:
                if (rec := _count_record(k, pending.uses[k], 0)) is not None:
                    out.append(rec)


class PendingUses:
    """The uses each CPU counted on its fast path and has not yet added to
    `uses` (bpf/opcache.h: opc_slots), and the user epoch that makes every
    CPU's fast path miss once (opc_epochs)."""

    def __init__(self, slots_fd: int, value_size: int, epochs_fd: int):
        from ..system import libbpf
        self.slots_fd, self.epochs_fd = slots_fd, epochs_fd
        self.stride = (value_size + 7) & ~7
        self.ncpu = libbpf.lib().libbpf_num_possible_cpus()
        self.uses: dict[bytes, bytes] = {}

    def read(self) -> dict[bytes, tuple[int, int]]:
        """key -> (uses pending over all CPUs, the last one's time)."""
        from ..system import libbpf
        lib = libbpf.lib()
        buf = ctypes.create_string_buffer(self.stride * self.ncpu)
        zero = ctypes.c_uint32(0)
        if lib.bpf_map_lookup_elem(self.slots_fd, ctypes.byref(zero), buf) != 0:
            return {}
        out: dict[bytes, tuple[int, int]] = {}
        self.uses = {}
        klen, uat = layout.OP_KEY.size, layout.USE_PENDING.offsets["use"]
        for cpu in range(self.ncpu):
            at = cpu * self.stride
            key = buf.raw[at:at + klen]
            use = buf.raw[at + uat:at + uat + layout.USE.size]
            n = int.from_bytes(use[:8], "little")
            if not n:
                continue
            last_ts = layout.USE.struct.unpack(use)[2]
            count, ts = out.get(key, (0, 0))
            out[key] = (count + n, max(ts, last_ts))
            self.uses[key] = _with_pending(use, count + n, max(ts, last_ts), base=0)
        return out

    def forget(self) -> None:
        """Keys were taken out of `uses`: every CPU's fast path misses once,
        so that a key used again is a first use again, as it was without it."""
        miss_fast_paths(self.epochs_fd)


def miss_fast_paths(epochs_fd: int) -> None:
    """Bumps the user epoch of bpf/opcache.h's opc_epochs: every CPU's fast
    path misses once (a key taken out of `uses`, a pid or cgroup out of a
    filter). The kernel's epoch beside it is written back as read: the user
    epoch only grows, so a fingerprint made before never matches again."""
    from ..system import libbpf
    lib = libbpf.lib()
    zero = ctypes.c_uint32(0)
    both = (ctypes.c_uint64 * 2)()
    if lib.bpf_map_lookup_elem(epochs_fd, ctypes.byref(zero), both) != 0:
        return
    both[1] += 1
    lib.bpf_map_update_elem(epochs_fd, ctypes.byref(zero), both, 0)


def _with_pending(value: bytes, n: int, last_ts: int, base: int | None = None) -> bytes:
    """A uw_use with n uses added to its count (or its count set to n, with
    base 0), and its last use's time the later of the two."""
    count, first_ts, ts, *rest = layout.USE.struct.unpack(value)
    if base is not None:
        count = base
    return layout.USE.struct.pack(count + n, first_ts, max(ts, last_ts), *rest)


class FreedRings:
    """Rings the kernel saw freed whose registrations the ledger may hold
    (bpf/rings.h, rings_freed), drained every interval. Their ids are given
    out one interval after they are drained: a ring's own records, sent
    before it was freed, may still be queued in the ring buffer then, and
    its operations still need its registrations."""

    def __init__(self, fd: int, interval: float):
        self.fd, self.interval = fd, interval
        self._pending: list[str] = []
        self._last = time.monotonic()

    def take(self) -> list[str]:
        """The ids drained an interval ago, when one has passed; else []."""
        if time.monotonic() - self._last < self.interval:
            return []
        self._last = time.monotonic()
        ready, self._pending = self._pending, self._drain()
        return ready

    def _drain(self) -> list[str]:
        from ..system import libbpf
        lib, val, out = libbpf.lib(), ctypes.c_uint64(), []
        while lib.bpf_map_lookup_and_delete_elem(self.fd, None, ctypes.byref(val)) == 0:
            out.append(ring_id(val.value))
        return out


def _keys(lib, fd: int) -> list:
    """All of a map's keys, before any is deleted: a deleted key would send
    bpf_map_get_next_key back to the start."""
    keys, prev = [], None
    while True:
        nxt = ctypes.create_string_buffer(layout.OP_KEY.size)
        if lib.bpf_map_get_next_key(fd, prev, nxt) != 0:
            return keys
        keys.append(nxt)
        prev = nxt


def _count(val) -> int:
    return int.from_bytes(bytes(val)[:8], "little")


def _count_record(key: bytes, value: bytes, before: int) -> bytes | None:
    count, first_ts, last_ts, cgroup_id, pid, tid, comm = layout.USE.struct.unpack(value)
    if count <= before:
        return None
    use, target = key[:layout.USE_KEY.size], key[layout.USE_KEY.size:]
    flags = _TARGET.unpack_from(target)[2]      # uw_op_key.target: the longer records
    # file_in_id: SPLICE's input, MSG_RING's ring, a send's destination
    long = flags & (layout.OPT_IN | layout.OPT_RING | layout.OPT_DEST)
    size = layout.OP.size if long else layout.OP_TARGET if flags else layout.OP_SHORT
    return (_OP_HEAD.pack(layout.KIND_OP, layout.ABI_VERSION, size) + use
            + _OP_TAIL.pack(last_ts, first_ts, count - before, cgroup_id, 0, 0, pid,
                            tid, 0, 0, 0, layout.OP_COUNT, comm)
            + (target[:_TARGET.size] + _NO_FILE if flags else b"")
            + (target[_TARGET.size:] + _NO_FILE if long else b""))


# uw_op around its key, for the count records built here: the key's target
# part goes after comm, and the file is not read (flags 0)
_OP_HEAD = struct.Struct("<" + layout.OP.members[0][1])
_OP_TAIL = struct.Struct("<" + "".join(fmt for m, fmt in layout.OP.members[2:]
                                       if layout.OP.offsets[m] < layout.OP_SHORT))
_TARGET = struct.Struct("<QII")
_NO_FILE = bytes(layout.FILE.size)
