"""Loading the BPF object for this kernel and these options: the hook and
identity path the kernel offers, the programs that go with them, the
configuration (.rodata.cfg) and the map sizes."""

from __future__ import annotations

import ctypes
import errno
import os
from importlib import resources

from . import hooks
from ..record import layout
from ..system import libbpf
from .bpfobject import BpfObject
from ..errors import TracerError
from ..record.filters import Filters
from ..system.host import check_privileges, tracefs
from ..record.reports import Features, Hook
from .options import AGG_SHARE, LIGHT_BURST, LIGHT_RATE, TracerOptions

OBJECT_NAME = "uringwatch.bpf.o"
# The same object plus the programs that call the bpf_rdonly_cast kfunc
# (resolve=btf): kept apart because a kfunc extern makes libbpf need the
# kernel's own BTF for the whole object (bpf/identity.h).
OBJECT_BTF_NAME = "uringwatch_btf.bpf.o"
REFUSED = (errno.EACCES, errno.EINVAL, errno.EPERM)     # how the verifier says no


def object_bytes(name: str = OBJECT_NAME) -> bytes:
    """A precompiled BPF object shipped in the package."""
    return resources.files("uringwatch").joinpath(name).read_bytes()


class Loader:
    """Loads the object as options and filters ask: Loader(o, f).load()."""

    def __init__(self, options: TracerOptions, filters: Filters):
        self.options, self.filters = options, filters

    def load(self) -> tuple[BpfObject, Features]:
        """The object loaded, ready to attach, and what was chosen (the
        tracer's features); on any failure, nothing stays behind."""
        check_privileges()
        if not self.options.btf_path and not os.path.exists(hooks.BTF_VMLINUX):
            raise TracerError(f"this kernel has no {hooks.BTF_VMLINUX}; "
                              f"pass a BTF file with --btf")
        tp = tracefs()
        hook = hooks.choose(tp, self.options.hook)
        if hook is None:
            raise TracerError(f"this kernel has no usable hook ({self.options.hook}): none of "
                              f"syscalls:sys_enter_io_uring_register, a kprobe on the "
                              f"syscall (kprobes and bpf_probe_read_kernel), raw_syscalls")
        has_loop = hooks.has_helper(hooks.FUNC_LOOP)
        obj, resolve, task_btf = self._load_resolving(hook, has_loop, tp)
        hook_programs = hooks.programs(hook, has_loop, tp, resolve)
        try:
            self._fill_free_slots(obj)
            self._make_overflow_agg(obj)
            return obj, Features(
                task_btf=task_btf, tracefs=tp, bpf_loop=has_loop, hook=hook, resolve=resolve,
                hooks=[obj.section(p) for p in obj.programs if p in hook_programs],
                rings=[obj.section(p) for p in obj.programs if p in hooks.RING_ALL],
                cgroups="off")     # the Tracer says how, with containers on
        except BaseException:
            obj.close()
            raise

    def _load_resolving(self, hook: Hook, has_loop: bool,
                        tp: str) -> tuple[BpfObject, str, bool]:
        """Loads with the best identity path this kernel offers (or the one
        asked for); a path the verifier refuses gives way to the next.
        Returns the object, the path loaded and whether tasks are read
        through BTF."""
        asked = self.options.resolve
        with libbpf.vmlinux_btf():      # one load for all the kernel's BTF is asked
            have = hooks.resolve_paths()
            ring_programs = hooks.ring_programs(tp, self.options.ring_events)
        wanted = hooks.pick_resolve(have, asked)
        if wanted is None:
            raise TracerError(f"this kernel cannot resolve identities with {asked} "
                              f"(it offers: {', '.join(r for r in hooks.RESOLVE if have[r])})")
        tries = [wanted] if asked != "auto" else \
            [r for r in hooks.RESOLVE[hooks.RESOLVE.index(wanted):] if have[r]]
        for i, resolve in enumerate(tries):
            programs = hooks.programs(hook, has_loop, tp, resolve)
            if self.options.fair and hooks.REAPER not in programs and \
                    os.path.exists(os.path.join(tp, hooks.REAPER_EVENT)):
                programs += (hooks.REAPER,)     # frees a process's state as it ends
            programs += ring_programs
            data = object_bytes(OBJECT_BTF_NAME if resolve == "btf" else OBJECT_NAME)
            try:
                obj, task_btf = self._load_task(data, programs, resolve)
                return obj, resolve, task_btf
            except libbpf.LibbpfError as e:
                if e.errno not in REFUSED or i == len(tries) - 1:
                    raise
        raise AssertionError("unreachable")

    def _load_task(self, data: bytes, programs: tuple[str, ...],
                   resolve: layout.ResolvePath) -> tuple[BpfObject, bool]:
        """The object loaded, and whether it reads tasks through BTF."""
        # Without the helper (before 5.11) the first load is sure to fail,
        # and a refused load costs a full verifier pass with its log.
        task_btf = hooks.has_helper(hooks.FUNC_GET_CURRENT_TASK_BTF)
        try:
            return self._load(data, programs, task_btf, resolve), task_btf
        except libbpf.LibbpfError as e:
            if not task_btf or e.errno not in REFUSED:
                raise
            # BTF-typed task pointers are refused on some kernels: do without
            return self._load(data, programs, False, resolve), False

    def _load(self, data: bytes, programs: tuple[str, ...], use_task_btf: bool,
              resolve: layout.ResolvePath) -> BpfObject:
        """Opens, configures, sizes and loads one object; closes it again
        if any of that fails."""
        obj = BpfObject(data, self.options.btf_path)
        try:
            self._configure(obj, use_task_btf, resolve)
            obj.choose(programs)
            self._size_maps(obj)
            obj.load()
        except BaseException:
            obj.close()
            raise
        return obj

    def _configure(self, obj: BpfObject, use_task_btf: bool,
                   resolve: layout.ResolvePath) -> None:
        view = obj.initial_value(".rodata.cfg")
        if len(view) != layout.CONFIG.size:
            raise TracerError(f"BPF object config is {len(view)} bytes, "
                              f"expected {layout.CONFIG.size}: object and decoder differ")
        cfg = layout.CONFIG.unpack(view.raw)
        if cfg["abi"] != layout.ABI_VERSION:
            raise TracerError(f"BPF object has record ABI {cfg['abi']}, "
                              f"decoder knows {layout.ABI_VERSION}")
        o, f = self.options, self.filters
        cfg.update(cap=o.cap, snap_bytes=o.snap_bytes,
                   wakeup_bytes=o.wakeup_bytes, use_task_btf=int(use_task_btf),
                   generic=int(o.generic), **f.knobs(),
                   resolve=layout.RESOLVE_CODES[resolve],
                   id_key=tuple(int.from_bytes(os.urandom(8), "little") for _ in range(2)),
                   ops_all=int(o.ops_all), **self._fair_config(),
                   req_creds_bit=self._req_creds_bit())
        view.raw = layout.CONFIG.pack(**cfg)

    def _fair_config(self) -> dict:
        """Fairness knobs (docs/ARCHITECTURE.md, Fairness); the signature key is fresh
        each run so that colliding calls can't be crafted ahead."""
        o = self.options
        cost = 1_000_000_000 // o.rate if o.rate else 0
        light = 1_000_000_000 // LIGHT_RATE
        return dict(fair=int(o.fair), fair_key=int.from_bytes(os.urandom(8), "little"),
                    fair_cost_ns=cost, fair_burst_ns=cost * o.burst,
                    fair_agg_cost_ns=cost // AGG_SHARE,
                    fair_agg_burst_ns=cost // AGG_SHARE * o.burst,
                    fair_light_cost_ns=light, fair_light_burst_ns=light * LIGHT_BURST,
                    fair_budget_bytes=o.ring_bytes // 2,
                    fair_reserve_bytes=o.ring_bytes // 4 * 3)

    def _req_creds_bit(self) -> int:
        """REQ_F_CREDS_BIT of this kernel, read from its BTF, for ring
        operations' personalities (bpf/rings.h); 64 where unknown."""
        if not self.options.ring_events:
            return 64
        bit = hooks.btf_enum_value("REQ_F_CREDS_BIT",
                                   self.options.btf_path or hooks.BTF_VMLINUX)
        return 64 if bit is None or not 0 <= bit < 64 else bit

    def _size_maps(self, obj: BpfObject) -> None:
        o = self.options
        obj.set_max_entries("events", o.ring_bytes)
        for name in ("slots", "free_slots"):
            obj.set_max_entries(name, o.max_inflight)
        # room for the calls in flight and for markers of calls that got no slot
        obj.set_max_entries("inflight", 2 * o.max_inflight)
        obj.set_max_entries("procs", o.max_procs)
        obj.set_max_entries("aggs", o.max_aggs)
        for name in ("uses", "spills"):
            obj.set_max_entries(name, o.max_uses)

    @staticmethod
    def _make_overflow_agg(obj: BpfObject) -> None:
        """The aggregate new ones share once the map is full (bpf/fairness.h):
        made before any program runs, so it always has room."""
        key = layout.AGG_KEY.pack(uid=layout.AGG_OVERFLOW_UID)
        val = layout.AGG.pack()
        libbpf.check(libbpf.lib().bpf_map_update_elem(obj.map_fd("aggs"), key, val, 0),
                     "making the overflow aggregate")

    def _fill_free_slots(self, obj: BpfObject) -> None:
        fd = obj.map_fd("free_slots")
        for i in range(self.options.max_inflight):
            idx = ctypes.c_uint32(i)
            libbpf.check(libbpf.lib().bpf_map_update_elem(fd, None, ctypes.byref(idx), 0),
                         "filling the free slot queue")
