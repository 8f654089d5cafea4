"""Load the BPF object, attach it, and turn ring-buffer records into Events."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import os
import secrets
import threading
import time
import uuid
from importlib import resources
from typing import AsyncIterator, Callable, Iterator

from . import headers, hooks, layout, libbpf, ringbuf
from .containers import CgroupResolver
from .decode import RecordError, Runs, decode
from .events import AnyEvent, Repeat
from .filters import Filters
from .ringbuf import RingBuffer
from .rings import Ledger, UseCounts

OBJECT_NAME = "uringwatch.bpf.o"
# The same object plus the programs that call the bpf_rdonly_cast kfunc
# (resolve=btf): kept apart because a kfunc extern makes libbpf need the
# kernel's own BTF for the whole object (bpf/identity.h).
OBJECT_BTF_NAME = "uringwatch_btf.bpf.o"
TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

BATCH = 4096            # records decoded per poll
# Fairness defaults (README, Fairness): records per second each process may
# send past its first call of each opcode, and how many it may bank.
FAIR_RATE = 1000
FAIR_BURST = 5000
MAX_PROCS = 16384       # processes with fairness state; later ones go without
PROCESSES_IN_STATS = 100  # stats() lists this many processes, most dropped first
# ring bytes handed to on_ring / poll_raw's sink at once: a dump's RING frame,
# so also what one damaged frame can cost a replay
RING_BYTES = 64 << 10
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39


class TracerError(Exception):
    """An expected failure: missing privilege, kernel feature, bad option."""


class PrivilegeError(TracerError):
    """The process lacks a privilege tracing needs."""


def object_bytes(name: str = OBJECT_NAME) -> bytes:
    """A precompiled BPF object shipped in the package."""
    return resources.files("uringwatch").joinpath(name).read_bytes()


def _capabilities() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def check_privileges() -> None:
    caps = _capabilities()
    if caps >> _CAP_SYS_ADMIN & 1 or (caps >> _CAP_BPF & 1 and caps >> _CAP_PERFMON & 1):
        return
    missing = [n for n, b in (("CAP_BPF", _CAP_BPF), ("CAP_PERFMON", _CAP_PERFMON))
               if not caps >> b & 1]
    raise PrivilegeError(f"tracing needs root, or CAP_BPF and CAP_PERFMON "
                         f"(missing: {', '.join(missing)})")


def tracefs() -> str:
    """A tracefs mount, made at the usual place if there is none: libbpf
    reads tracepoint ids from it."""
    for path in TRACEFS:
        if os.path.isdir(os.path.join(path, "events")):
            return path
        if os.path.ismount(path) and not os.access(path, os.X_OK):
            raise PrivilegeError(f"cannot read tracepoint ids in {path}: "
                                 f"needs root or CAP_DAC_READ_SEARCH")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"nodev", TRACEFS[0].encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise TracerError(f"tracefs is not mounted and mounting it at {TRACEFS[0]} "
                          f"failed: {os.strerror(err)} (mount it, or run as root)")
    return TRACEFS[0]


class Tracer:
    """A live tracer. Use as a context manager; iterate for events."""

    def __init__(self, filters: Filters | None = None, cap: int = layout.DEFAULT_CAP,
                 snap_bytes: int = layout.DEFAULT_SNAP_BYTES,
                 ring_bytes: int = layout.DEFAULT_RING_BYTES,
                 max_inflight: int = layout.DEFAULT_MAX_INFLIGHT,
                 wakeup_bytes: int = layout.DEFAULT_WAKEUP_BYTES, flush_interval: float = 0.05,
                 btf_path: str | None = None, generic: bool = False,
                 containers: bool = True, hook: str = "auto", resolve: str = "auto",
                 rings: bool = False, ops_all: bool = False, count_interval: float = 1.0,
                 fair: bool = True, rate: int = FAIR_RATE, burst: int = FAIR_BURST,
                 max_procs: int = MAX_PROCS):
        if not 1 <= cap <= layout.CAP_MAX:
            raise TracerError(f"cap must be 1..{layout.CAP_MAX}, not {cap}")
        if not 0 <= snap_bytes <= layout.HEAD_MAX:
            raise TracerError(f"snap_bytes must be 0..{layout.HEAD_MAX}")
        if ring_bytes < 4096 or ring_bytes & (ring_bytes - 1):
            raise TracerError("ring_bytes must be a power of two >= 4096")
        if rate < 0 or burst < 1 or max_procs < 1:
            raise TracerError("rate must be >= 0 (0: no budget), burst and max_procs >= 1")
        if hook not in ("auto", *hooks.HOOKS):
            raise TracerError(f"hook must be auto or one of {', '.join(hooks.HOOKS)}")
        if resolve not in ("auto", *hooks.RESOLVE):
            raise TracerError(f"resolve must be auto or one of {', '.join(hooks.RESOLVE)}")
        self.hook = hook
        self.resolve = resolve
        self.filters = filters or Filters()
        self.options = dict(cap=cap, snap_bytes=snap_bytes,
                            ring_bytes=ring_bytes, max_inflight=max_inflight,
                            wakeup_bytes=wakeup_bytes, generic=generic, ops_all=ops_all,
                            fair=fair, rate=rate, burst=burst, max_procs=max_procs)
        self.rings = rings or ops_all    # ring creation and operation events
        self.count_interval = count_interval     # operations' counts, seconds
        self.flush_interval = flush_interval
        self.btf_path = btf_path
        self.features: dict[str, object] = {}
        self.decode_errors = 0
        self.repeat_events = 0          # Repeat events yielded, pending ones included
        self._lock = threading.Lock()
        self._context = None
        if containers:
            cgroups = CgroupResolver()
            cgroups.scan()      # before the first call: its cgroup may be gone when read
            self._context = cgroups.context
        self._obj = None
        self._links: list = []
        self._ring: RingBuffer | None = None
        self._boot_to_wall = 0
        self._runs = Runs()             # repeat records' totals -> counts
        self._detached = False
        self._runs_flushed = False
        self.run_id = uuid.uuid4().hex      # ties a recording's rotated files together
        self.on_raw: Callable[[memoryview], object] | None = None  # sees each raw record
        self._ledger = Ledger()
        self._uses: UseCounts | None = None
        # sees each batch's ring bytes, the cgroups in it and its record count
        self.on_ring: Callable[[memoryview, set, int], object] | None = None

    # -- lifecycle -------------------------------------------------------

    def open(self) -> "Tracer":
        """Load and attach; on any failure, nothing stays behind."""
        try:
            return self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> "Tracer":
        check_privileges()
        if not self.btf_path and not os.path.exists(hooks.BTF_VMLINUX):
            raise TracerError(f"this kernel has no {hooks.BTF_VMLINUX}; "
                              f"pass a BTF file with --btf")
        tp = tracefs()
        hook = hooks.choose(tp, self.hook)
        if hook is None:
            raise TracerError(f"this kernel has no usable hook ({self.hook}): none of "
                              f"syscalls:sys_enter_io_uring_register, a kprobe on the "
                              f"syscall (kprobes and bpf_probe_read_kernel), raw_syscalls")
        lib = libbpf.lib()
        has_loop = hooks.has_helper(hooks.FUNC_LOOP)
        resolve = self._load_resolving(hook, has_loop, tp)
        self.features.update(tracefs=tp, bpf_loop=has_loop, hook=hook, resolve=resolve,
                             hooks=[self._section(p) for p in self._programs
                                    if p not in hooks.RING_ALL],
                             rings=[self._section(p) for p in self._programs
                                    if p in hooks.RING_ALL])
        if any(p.startswith("tp_btf__") for p in self._programs):
            self._uses = UseCounts(lib.bpf_map__fd(self._map("uses")), self.count_interval)
        self._fill_free_slots()
        for pid in self.filters.pids or ():
            self.add_pid(pid)
        for cg in self.filters.cgroups or ():
            self.add_cgroup(cg)
        self._boot_to_wall = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        for name in self._programs:
            self._links.append(libbpf.check_ptr(lib.bpf_program__attach(self._program(name)),
                                                f"attaching {name}"))
        events = self._map("events")
        self._ring = RingBuffer(lib.bpf_map__fd(events), lib.bpf_map__max_entries(events))
        return self

    def _load_resolving(self, hook: str, has_loop: bool, tp: str) -> str:
        """Loads with the best identity path this kernel offers (or the one
        asked for); a path the verifier refuses gives way to the next.
        Returns the path loaded."""
        have = hooks.resolve_paths()
        wanted = hooks.pick_resolve(have, self.resolve)
        if wanted is None:
            raise TracerError(f"this kernel cannot resolve identities with {self.resolve} "
                              f"(it offers: {', '.join(r for r in hooks.RESOLVE if have[r])})")
        tries = [wanted] if self.resolve != "auto" else \
            [r for r in hooks.RESOLVE[hooks.RESOLVE.index(wanted):] if have[r]]
        ring_programs = hooks.ring_programs(tp, self.rings)
        for i, resolve in enumerate(tries):
            self._programs = hooks.programs(hook, has_loop, tp, resolve) + ring_programs
            data = object_bytes(OBJECT_BTF_NAME if resolve == "btf" else OBJECT_NAME)
            self.object_sha256 = hashlib.sha256(data).hexdigest()
            try:
                self._load_task(data, resolve)
                return resolve
            except libbpf.LibbpfError as e:
                refused = e.errno in (errno.EACCES, errno.EINVAL, errno.EPERM)
                if not refused or i == len(tries) - 1:
                    raise
        raise AssertionError("unreachable")

    def _load_task(self, data: bytes, resolve: str) -> None:
        # Without the helper (before 5.11) the first load is sure to fail,
        # and a refused load costs a full verifier pass with its log.
        task_btf = hooks.has_helper(hooks.FUNC_GET_CURRENT_TASK_BTF)
        try:
            self._load(data, use_task_btf=task_btf, resolve=resolve)
        except libbpf.LibbpfError as e:
            if not task_btf or e.errno not in (errno.EACCES, errno.EINVAL, errno.EPERM):
                raise
            # BTF-typed task pointers are refused on some kernels: do without
            self._load(data, use_task_btf=False, resolve=resolve)

    def _load(self, data: bytes, use_task_btf: bool, resolve: str = "probe_read") -> None:
        self._close_object()
        lib = libbpf.lib()
        opts = libbpf.OpenOpts(sz=ctypes.sizeof(libbpf.OpenOpts), object_name=b"uringwatch")
        if self.btf_path:
            opts.btf_custom_path = self.btf_path.encode()
        self._buf = ctypes.create_string_buffer(data, len(data))
        self._obj = libbpf.check_ptr(
            lib.bpf_object__open_mem(self._buf, len(data), ctypes.byref(opts)),
            "opening the BPF object")
        self._set_config(use_task_btf, resolve)
        for name in hooks.ALL_PROGRAMS:     # load only the chosen ones
            prog = lib.bpf_object__find_program_by_name(self._obj, name.encode())
            if prog:                        # the _btf twins are in one object only
                lib.bpf_program__set_autoload(prog, name in self._programs)
        o = self.options
        lib.bpf_map__set_max_entries(self._map("events"), o["ring_bytes"])
        for name in ("slots", "free_slots"):
            lib.bpf_map__set_max_entries(self._map(name), o["max_inflight"])
        # room for the calls in flight and for markers of calls that got no slot
        lib.bpf_map__set_max_entries(self._map("inflight"), 2 * o["max_inflight"])
        lib.bpf_map__set_max_entries(self._map("procs"), o["max_procs"])
        libbpf.check(lib.bpf_object__load(self._obj), "loading the BPF object")
        self.features["task_btf"] = use_task_btf

    def _section(self, name: str) -> str:
        return libbpf.lib().bpf_program__section_name(self._program(name)).decode()

    def _program(self, name: str):
        return libbpf.check_ptr(
            libbpf.lib().bpf_object__find_program_by_name(self._obj, name.encode()),
            f"finding program {name}")

    def _map(self, name: str):
        return libbpf.check_ptr(
            libbpf.lib().bpf_object__find_map_by_name(self._obj, name.encode()),
            f"finding map {name}")

    def _set_config(self, use_task_btf: bool, resolve: str) -> None:
        size = ctypes.c_size_t()
        ptr = libbpf.lib().bpf_map__initial_value(self._map(".rodata.cfg"), ctypes.byref(size))
        if size.value != layout.CONFIG.size:
            raise TracerError(f"BPF object config is {size.value} bytes, "
                              f"expected {layout.CONFIG.size}: object and decoder differ")
        view = (ctypes.c_char * size.value).from_address(ptr)
        cfg = layout.CONFIG.unpack(view.raw)
        if cfg["abi"] != layout.ABI_VERSION:
            raise TracerError(f"BPF object has record ABI {cfg['abi']}, "
                              f"decoder knows {layout.ABI_VERSION}")
        o, f = self.options, self.filters
        cfg.update(cap=o["cap"], snap_bytes=o["snap_bytes"],
                   wakeup_bytes=o["wakeup_bytes"], use_task_btf=int(use_task_btf),
                   generic=int(o["generic"]),
                   targ_pids=int(f.pids is not None), targ_cgroups=int(f.cgroups is not None),
                   targ_uid=0xFFFFFFFF if f.uid is None else f.uid,
                   targ_failed=int(f.failed), targ_opcodes=f.opcode_mask(),
                   targ_comm=(f.comm or "").encode(),
                   resolve={v: k for k, v in layout.RESOLVE_NAMES.items()}[resolve],
                   id_key=tuple(int.from_bytes(os.urandom(8), "little") for _ in range(2)),
                   ops_all=int(o["ops_all"]), **self._fair_config(),
                   req_creds_bit=self._req_creds_bit())
        view.raw = layout.CONFIG.struct.pack(
            *(x for v in cfg.values() for x in (v if isinstance(v, tuple) else (v,))))

    def _fair_config(self) -> dict:
        """Fairness knobs; the signature key is fresh each run so that
        colliding calls can't be crafted ahead."""
        o = self.options
        cost = 1_000_000_000 // o["rate"] if o["rate"] else 0
        return dict(fair=int(o["fair"]), fair_key=secrets.randbits(64),
                    fair_cost_ns=cost, fair_burst_ns=cost * o["burst"])

    def _req_creds_bit(self) -> int:
        """REQ_F_CREDS_BIT of this kernel, read from its BTF, for ring
        operations' personalities (bpf/rings.h); 64 where unknown."""
        if not self.rings:
            return 64
        bit = hooks.btf_enum_value("REQ_F_CREDS_BIT", self.btf_path or hooks.BTF_VMLINUX)
        return 64 if bit is None or not 0 <= bit < 64 else bit

    def _fill_free_slots(self) -> None:
        fd = libbpf.lib().bpf_map__fd(self._map("free_slots"))
        for i in range(self.options["max_inflight"]):
            idx = ctypes.c_uint32(i)
            libbpf.check(libbpf.lib().bpf_map_update_elem(fd, None, ctypes.byref(idx), 0),
                         "filling the free slot queue")

    # -- filter sets changeable while tracing --------------------------------

    def _set_member(self, map_name: str, ctype, key: int, add: bool, enabled: bool) -> None:
        if not enabled:
            raise TracerError(f"this tracer was opened without a {map_name} filter; "
                              f"pass an empty set to enable it")
        fd = libbpf.lib().bpf_map__fd(self._map(map_name))
        k, one = ctype(key), ctypes.c_uint8(1)
        if add:
            libbpf.check(libbpf.lib().bpf_map_update_elem(fd, ctypes.byref(k),
                                                          ctypes.byref(one), 0),
                         f"adding {key} to the {map_name} filter")
        else:
            libbpf.lib().bpf_map_delete_elem(fd, ctypes.byref(k))

    def add_pid(self, pid: int) -> None:
        self._set_member("pids", ctypes.c_uint32, pid, True, self.filters.pids is not None)

    def remove_pid(self, pid: int) -> None:
        self._set_member("pids", ctypes.c_uint32, pid, False, self.filters.pids is not None)

    def add_cgroup(self, cgroup_id: int) -> None:
        self._set_member("cgroups", ctypes.c_uint64, cgroup_id, True,
                         self.filters.cgroups is not None)

    def remove_cgroup(self, cgroup_id: int) -> None:
        self._set_member("cgroups", ctypes.c_uint64, cgroup_id, False,
                         self.filters.cgroups is not None)

    def _close_object(self) -> None:
        if self._obj:
            libbpf.lib().bpf_object__close(self._obj)
            self._obj = None

    def detach(self) -> None:
        """Stop tracing; what is queued can still be polled."""
        for link in self._links:
            libbpf.lib().bpf_link__destroy(link)
            self._detached = True
        self._links.clear()

    def close(self) -> None:
        """Detach everything; safe to call twice and from another thread
        than the one reading events (that one then stops)."""
        self.detach()
        with self._lock:
            ring, self._ring = self._ring, None
            if ring:
                ring.close()
        self._close_object()

    def __enter__(self) -> "Tracer":
        return self.open() if self._obj is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- events ------------------------------------------------------------

    def _wait(self, timeout: float | None) -> bool:
        """Waits up to `timeout` (default: the flush interval) for the kernel
        to queue records; False if the tracer was closed meanwhile."""
        ring = self._ring
        if ring is None:
            raise TracerError("tracer is not open")
        try:
            if not ring.available():
                ring.wait(self.flush_interval if timeout is None else timeout)
        except (ValueError, OSError):   # closed by another thread meanwhile
            return False
        return True

    def poll(self, timeout: float | None = None) -> list[AnyEvent]:
        """Events available now, waiting up to `timeout` (default: the flush
        interval) for the kernel to queue some. After detach(): what is
        queued, then once the repeat runs still pending in the kernel."""
        if not self._wait(timeout):
            return []
        with self._lock:        # close() must not unmap the ring mid-decode
            return self._drain() if self._ring is not None else []

    def poll_raw(self, sink: Callable[[memoryview, set, int], object],
                 timeout: float | None = None, limit: int = BATCH) -> int:
        """Like poll(), for recording: nothing is decoded. sink gets the ring
        bytes of up to `limit` records as they lie in the ring (each behind
        its 8-byte ring header; a dump's RING frame), the cgroup ids of the
        call records among them, and how many records there are (discarded
        ones not counted). Returns that count."""
        if not self._wait(timeout):
            return 0
        with self._lock:
            return self._drain_raw(sink, limit) if self._ring is not None else 0

    def _drain_raw(self, sink, limit: int) -> int:
        ring = self._ring
        peeks = ring.peek(limit, RING_BYTES, headers.PEEK)
        if not peeks:
            return len(self._made_here(idle=True))
        kind, cg = headers.PEEK_AT["kind"], headers.PEEK_AT["cgroup_id"]
        live = [p for p in peeks if not p[0] & ringbuf.DISCARD]
        view = ring.taken()
        try:
            sink(view, {p[cg] for p in live if p[kind] == layout.KIND_CALL}, len(live))
        finally:        # a view left alive would keep the ring from unmapping
            view.release()
        ring.release()
        return len(live) + len(self._made_here(idle=False))

    def _drain(self) -> list[AnyEvent]:
        """One batch: memory stays bounded when the caller is slow, and the
        ring backs up instead (the kernel then counts ring_full)."""
        ring = self._ring
        out = []
        spans = ring.spans(BATCH, RING_BYTES if self.on_ring else 0)
        for off, size in spans:
            if self.on_raw:
                view = ring.data[off:off + size]
                try:
                    self.on_raw(view)
                finally:        # a view left alive would keep the ring from unmapping
                    view.release()
            try:
                ev = self._ledger.feed(decode(ring.data, off, size, self._boot_to_wall,
                                              self._context, proc=True, runs=self._runs))
            except RecordError:
                self.decode_errors += 1
                continue
            if ev is not None:
                out.append(ev)
                self.repeat_events += ev.__class__ is Repeat
        if self.on_ring and spans:
            view = ring.taken()
            try:
                self.on_ring(view, {ev.cgroup_id for ev in out if hasattr(ev, "cgroup_id")},
                             len(spans))
            finally:
                view.release()
        ring.release()
        return out + self._made_here(idle=not out)

    def _made_here(self, idle: bool) -> list[AnyEvent]:
        """Records made here, not by the kernel: the operations' counts when
        due, and once detached with the ring empty (idle), the repeat runs
        still pending in the kernel."""
        out = self._counts() if self._uses and self._uses.due(final=self._detached) else []
        if idle and self._detached and not self._runs_flushed:
            self._runs_flushed = True
            out += self._pending_runs()
        return out

    def _made(self, raw: bytes) -> None:
        """A record made here, not by the kernel (an operations count, a
        repeat run read at stop): recorded as the ring's are, behind a ring
        header of its own."""
        if self.on_ring:
            batch = ringbuf.HDR.pack(len(raw), 0) + raw + bytes(-len(raw) % 8)
            self.on_ring(memoryview(batch), set(), 1)
        elif self.on_raw:
            self.on_raw(memoryview(raw))

    def _counts(self) -> list:
        """The operations' counts since the last, as records of their own:
        recorded and decoded like the kernel's."""
        out = []
        for raw in self._uses.records():
            self._made(raw)
            out.append(self._ledger.feed(
                decode(raw, 0, len(raw), self._boot_to_wall, self._context)))
        return out

    def _pending_runs(self) -> list[Repeat]:
        """Repeat runs no record reported (the last run of each process, or
        a summary lost to a full ring), read from the kernel's map once no
        program runs: made into repeat records, so recordings get them too."""
        out = []
        for pid, p in self._procs():
            if p["coalesced"] <= self._runs.seen.get(pid, 0):
                continue
            last = p["run_last"]
            raw = layout.REPEAT.struct.pack(
                layout.KIND_REPEAT, layout.ABI_VERSION, layout.REPEAT.size,
                p["run_first"] or last, last, p["coalesced"], p["ret"], pid, p["tid"],
                p["fd"], p["opcode"], p["comm"])
            self._made(raw)
            ev = decode(raw, 0, len(raw), self._boot_to_wall, None, runs=self._runs)
            if ev is not None:
                out.append(ev)
        self.repeat_events += len(out)
        return out

    def __iter__(self) -> Iterator[AnyEvent]:
        while self._ring is not None:
            try:
                events = self.poll()
            except TracerError:     # closed between the check and the poll
                return
            yield from events

    def run(self, callback: Callable[[AnyEvent], object],
            duration: float | None = None) -> None:
        """Calls callback for every event until close() or `duration` seconds.
        An exception from the callback stops the loop and propagates."""
        deadline = None if duration is None else time.monotonic() + duration
        while self._ring is not None and (deadline is None or time.monotonic() < deadline):
            for ev in self.poll():
                callback(ev)

    async def aevents(self) -> AsyncIterator[AnyEvent]:
        """Events on the running asyncio loop, woken by the ring buffer's
        epoll fd (batched wakeups) or the flush interval, whichever first."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        fd = self._ring.fileno()
        loop.add_reader(fd, ready.set)
        try:
            while self._ring is not None:
                with self._lock:
                    events = self._drain() if self._ring is not None else []
                for ev in events:
                    yield ev
                try:
                    await asyncio.wait_for(ready.wait(), self.flush_interval)
                except asyncio.TimeoutError:
                    pass
                ready.clear()
        finally:
            loop.remove_reader(fd)

    @property
    def boot_to_wall(self) -> int:
        """Add to the kernel's CLOCK_BOOTTIME stamps for wall-clock ns."""
        return self._boot_to_wall

    def context(self, cgroup_id: int) -> tuple[str | None, str | None]:
        """(cgroup path, container id), as events carry them."""
        return self._context(cgroup_id) if self._context else (None, None)

    def ring_usage(self) -> tuple[int, int]:
        """(bytes queued and not yet read, the ring's size)."""
        ring = self._ring
        if ring is None:
            raise TracerError("tracer is not open")
        return ring.available(), ring.size

    def _procs(self) -> Iterator[tuple[int, dict]]:
        """(tgid, uw_proc as a dict) for every process with fairness state."""
        lib = libbpf.lib()
        fd = lib.bpf_map__fd(self._map("procs"))
        key, nxt = ctypes.c_uint32(), ctypes.c_uint32()
        val = ctypes.create_string_buffer(layout.PROC.size)
        prev = None
        while lib.bpf_map_get_next_key(fd, prev, ctypes.byref(nxt)) == 0:
            key.value = nxt.value
            prev = ctypes.byref(key)
            if lib.bpf_map_lookup_elem(fd, prev, val) == 0:
                yield key.value, layout.PROC.unpack(val.raw)

    def processes(self) -> list[dict]:
        """Per process (tgid) with anything coalesced or dropped: pid, comm,
        calls coalesced, and calls dropped by cause; most dropped first."""
        out = []
        for pid, p in self._procs():
            drops = dict(zip(layout.DROPS, p["drops"]))
            if p["coalesced"] or any(drops.values()):
                out.append({"pid": pid, "comm": p["comm"].split(b"\0", 1)[0]
                            .decode(errors="replace"), "coalesced": p["coalesced"], **drops})
        return sorted(out, key=lambda r: (-sum(r[k] for k in layout.DROPS), -r["coalesced"]))

    def stats(self) -> dict:
        """Counters summed over CPUs, plus records user space could not
        decode; "processes": processes() (the top PROCESSES_IN_STATS)."""
        lib = libbpf.lib()
        ncpu = lib.libbpf_num_possible_cpus()
        per = layout.COUNTERS_LAYOUT.size
        buf = ctypes.create_string_buffer(per * ncpu)
        key = ctypes.c_uint32(0)
        libbpf.check(lib.bpf_map_lookup_elem(lib.bpf_map__fd(self._map("counters")),
                                             ctypes.byref(key), buf), "reading counters")
        totals = [0] * len(layout.COUNTERS)
        for cpu in range(ncpu):
            for i, v in enumerate(layout.COUNTERS_LAYOUT.struct.unpack_from(buf, cpu * per)):
                totals[i] += v
        out: dict = dict(zip(layout.COUNTERS, totals))
        out["decode_errors"] = self.decode_errors
        out["repeat_events"] = self.repeat_events
        out["processes"] = self.processes()[:PROCESSES_IN_STATS]
        return out
