"""What this kernel offers, and which hooks uringwatch attaches to.

Feature-probed at start, never assumed from a version number."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from typing import Literal, get_args

from ..record import layout, targets
from ..record.reports import Hook, Probe, RingsProbe

# Where to attach (reports.Hook), preferred first: per-syscall tracepoints
# cost other syscalls nothing, nor does a kprobe on the syscall (it needs
# bpf_probe_read_kernel); raw_syscalls runs for every syscall on the system.
# "auto": an option's value for the best this kernel has.
Auto = Literal["auto"]
ORDER: tuple[Hook, ...] = get_args(Hook)
# hook name -> (tracefs file that must exist, the two BPF programs)
HOOKS: dict[Hook, tuple[str, tuple[str, str]]] = {
    "syscalls": ("events/syscalls/sys_enter_io_uring_register",
                 ("tracepoint__syscalls__sys_enter_io_uring_register",
                  "tracepoint__syscalls__sys_exit_io_uring_register")),
    "kprobes": ("kprobe_events",
                ("ksyscall__io_uring_register", "kretsyscall__io_uring_register")),
    "raw_syscalls": ("events/raw_syscalls/sys_enter",
                     ("tracepoint__raw_syscalls__sys_enter",
                      "tracepoint__raw_syscalls__sys_exit")),
}
# Each exit program has a twin without the bpf_loop TOCTOU re-read, for
# kernels without bpf_loop: they refuse even a dead reference to a callback.
NO_LOOP = "_noloop"
# Frees the slot of a thread that ends with a call whose exit was missed
# (only kretprobes miss exits, beyond their maxactive calls in flight), and
# with fairness a process's state as its last thread ends.
REAPER = "tracepoint__sched__sched_process_exit"
REAPER_EVENT = "events/sched/sched_process_exit"
# Enter and exit have twins that read identities through the bpf_rdonly_cast
# kfunc: kernels without it refuse a program that references it.
BTF = "_btf"
ALL_PROGRAMS = tuple(p for _, (enter, exit_) in HOOKS.values()
                     for p in (enter, enter + BTF, exit_, exit_ + NO_LOOP, exit_ + BTF)) \
    + (REAPER,)

# How identities (files, credentials, buffers) are read, best first:
# BTF-typed loads (allowed under lockdown), bpf_probe_read_kernel, or not in
# the kernel at all (user space reads /proc later, unverified).
RESOLVE: tuple[layout.ResolvePath, ...] = get_args(layout.ResolvePath)
if set(HOOKS) != set(ORDER):
    raise ImportError("hooks.HOOKS and the Hook names differ")


# A ring's life (bpf/rings.h): the setup syscall, the ring's creation and
# its register calls (io_uring tracepoints), and the operations it accepts.
RING_PROGRAMS = {
    "tracepoint__syscalls__sys_enter_io_uring_setup": "events/syscalls/sys_enter_io_uring_setup",
    "tracepoint__syscalls__sys_exit_io_uring_setup": "events/syscalls/sys_exit_io_uring_setup",
    "tracepoint__io_uring__io_uring_create": "events/io_uring/io_uring_create",
    "tracepoint__io_uring__io_uring_register": "events/io_uring/io_uring_register",
}
# The operations' tracepoint, by its name on this kernel (renamed in 6.4).
SUBMIT_TRACEPOINTS = ("io_uring_submit_req", "io_uring_submit_sqe")
SUBMIT_PROGRAM = "tp_btf__{}"
# The work item that frees a ring, where its id is forgotten (bpf/rings.h):
# a kprobe, or an fentry program where the kernel has no kprobes.
RING_FREE_FUNCTION = "io_ring_exit_work"
RING_FREE_PROGRAMS = ("kprobe__io_ring_exit_work", "fentry__io_ring_exit_work")
# Rings made before tracing (bpf/rings_before.h): an iterator over every
# task's files, run once at start, never attached as a hook.
RING_BEFORE_PROGRAM = "iter__task_file"
# Completions give actions their results (bpf/targets.h): io_uring_complete
# passes the result itself before 6.3 (_v61), the CQE since.
COMPLETE_PROGRAMS = ("tp_btf__io_uring_complete", "tp_btf__io_uring_complete_v61")
# Requests refused at submission (io_uring_req_failed, whose request is
# its second argument from 6.0): with -EACCES (a BPF filter, restrictions)
# ops and actions marked denied; any other, before prep, an action with
# its errno (bpf/targets.h). Two programs on the one tracepoint.
REFUSED_TRACEPOINT = "io_uring_req_failed"
DENIED_PROGRAM = "tp_btf__io_uring_req_failed"
REFUSED_PROGRAM = "tp_btf__io_uring_req_refused"
# Buffer rings still mapped after UNREGISTER_PBUF_RING (bpf/pbuf.h): mmap's
# tracepoints, and a check after each register call, in the program that
# gives the call its ring id (loaded instead of RING_ID_PROGRAM).
PBUF_REGISTER_PROGRAM = "tracepoint__io_uring__io_uring_register_pbuf"
PBUF_PROGRAMS = {
    "tracepoint__syscalls__sys_enter_mmap": "events/syscalls/sys_enter_mmap",
    "tracepoint__syscalls__sys_exit_mmap": "events/syscalls/sys_exit_mmap",
    PBUF_REGISTER_PROGRAM: "events/io_uring/io_uring_register",
}
RING_ALL = tuple(RING_PROGRAMS) + tuple(SUBMIT_PROGRAM.format(n) for n in SUBMIT_TRACEPOINTS) \
    + tuple(RING_FREE_PROGRAMS) + (RING_BEFORE_PROGRAM,) + COMPLETE_PROGRAMS \
    + (DENIED_PROGRAM, REFUSED_PROGRAM) + tuple(PBUF_PROGRAMS)
ALL_PROGRAMS += RING_ALL


RING_ID_PROGRAM = "tracepoint__io_uring__io_uring_register"


def ring_programs(tracefs: str, lifecycle: bool = True) -> tuple[str, ...]:
    """The ring programs this kernel can run: those whose tracepoint
    exists, and the operations' program where the tracepoint hands it the
    request as its first argument. Without `lifecycle`, only the one that
    gives register calls their ring id (and bpf/pbuf.h's, which add to
    them what stayed mapped)."""
    wanted = RING_PROGRAMS if lifecycle else {RING_ID_PROGRAM: RING_PROGRAMS[RING_ID_PROGRAM]}
    chosen = tuple(p for p, event in wanted.items()
                   if os.path.exists(os.path.join(tracefs, event)))
    pbuf = pbuf_programs(tracefs) if RING_ID_PROGRAM in chosen else ()
    if pbuf:        # its register program gives the ring id too
        chosen = tuple(p for p in chosen if p != RING_ID_PROGRAM)
    # a tp_btf program attaches through the kernel's own BTF: none without it
    submit = typed_submit_tracepoint() if lifecycle and os.path.exists(BTF_VMLINUX) else None
    free = ring_free_program(tracefs) if lifecycle else None
    # an iterator is a BTF-typed program: none without the kernel's BTF
    before = lifecycle and os.path.exists(BTF_VMLINUX)
    complete = complete_program() if submit else None
    refused = (DENIED_PROGRAM, REFUSED_PROGRAM) \
        if submit and _takes_request(REFUSED_TRACEPOINT, 2) else ()
    return chosen + ((SUBMIT_PROGRAM.format(submit),) if submit else ()) \
        + ((free,) if free else ()) + ((RING_BEFORE_PROGRAM,) if before else ()) \
        + ((complete,) if complete else ()) + refused \
        + pbuf


def pbuf_programs(tracefs: str) -> tuple[str, ...]:
    """bpf/pbuf.h's programs where the kernel can run them: its tracepoints
    exist and it has bpf_find_vma (5.17+) and BTF-typed tasks."""
    if not (all(os.path.exists(os.path.join(tracefs, e)) for e in PBUF_PROGRAMS.values())
            and has_helper(FUNC_FIND_VMA) and has_helper(FUNC_GET_CURRENT_TASK_BTF)):
        return ()
    return tuple(PBUF_PROGRAMS)


def ring_free_program(tracefs: str) -> str | None:
    """The program that sees rings freed: a kprobe where the kernel has
    kprobes, else fentry where ftrace can trace the function and there is
    BTF to attach by; None if neither (ring ids then rely on being made
    afresh at creation, bpf/rings.h)."""
    kprobe, fentry = RING_FREE_PROGRAMS
    if os.path.exists(os.path.join(tracefs, "kprobe_events")) and \
            _lists(RING_FREE_FUNCTION, "/proc/kallsyms"):
        return kprobe
    # unreadable under lockdown, where fentry is refused too
    if os.path.exists(BTF_VMLINUX) and \
            _lists(RING_FREE_FUNCTION, os.path.join(tracefs, "available_filter_functions")):
        return fentry
    return None


def _lists(name: str, path: str) -> bool:
    """Whether a kernel symbol list has this built-in function."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return f" {name}\n".encode() in data or data.startswith(f"{name}\n".encode()) \
        or f"\n{name}\n".encode() in data


_BTF_KIND_PTR, _BTF_KIND_STRUCT, _BTF_KIND_TYPEDEF, _BTF_KIND_FUNC_PROTO = 2, 4, 8, 13


def typed_submit_tracepoint() -> str | None:
    """The name of the operations' tracepoint if its first argument (after
    the tracepoint's own data pointer) is `struct io_kiocb *`, read from the
    kernel's BTF: 6.0+ pass the request first; 5.x pass the ring first, and
    a program reading a request there would read the ring's memory."""
    return next((n for n in SUBMIT_TRACEPOINTS if _takes_request(n, 1)), None)


def _takes_request(tracepoint: str, at: int) -> bool:
    """Whether the tracepoint's argument `at` (1: the first after its own
    data pointer) is `struct io_kiocb *`, read from the kernel's BTF."""
    from ..system import libbpf
    lib = libbpf.lib()
    with libbpf.vmlinux_btf() as btf:
        if not btf:
            return False
        tid = lib.btf__find_by_name_kind(btf, f"btf_trace_{tracepoint}".encode(),
                                         _BTF_KIND_TYPEDEF)
        proto = _follow(lib, btf, tid, (_BTF_KIND_TYPEDEF, _BTF_KIND_PTR))
        if not proto or _kind(proto) != _BTF_KIND_FUNC_PROTO or _vlen(proto) <= at:
            return False
        arg = ctypes.c_uint32.from_address(proto + 12 + 8 * at + 4).value  # params[at].type
        s = _follow(lib, btf, arg, (_BTF_KIND_PTR,))
        return bool(s and _kind(s) == _BTF_KIND_STRUCT and
                    lib.btf__name_by_offset(btf, _word(s, 0)) == b"io_kiocb")


_BTF_KIND_INT = 1


def action_ops() -> list[str]:
    """The actions this kernel has (BIND and LISTEN from 6.11: struct
    io_bind), CONNECT marked `CONNECT(user)` where prep keeps only the
    caller's pointer (before 6.10: struct io_async_connect), so that its
    address is read from the caller's memory at submission; the
    fixed-buffer ops last, `READ_FIXED(len 0)`: actions only at length 0."""
    from ..system import libbpf
    lib = libbpf.lib()
    with libbpf.vmlinux_btf() as btf:
        if not btf:
            return []

        def has(name: str) -> bool:
            return lib.btf__find_by_name_kind(btf, name.encode(), _BTF_KIND_STRUCT) > 0
        bind, user = has("io_bind"), has("io_async_connect")
    return [("CONNECT(user)" if op == "CONNECT" and user else op) for op in targets.ACTION_OPS
            if bind or op not in ("BIND", "LISTEN")] + [f"{op}(len 0)" for op in targets.FIXED_OPS]


SENDS = ("SEND", "SENDMSG", "SEND_ZC", "SENDMSG_ZC")   # bpf/opfile.h DEST_OPS


def send_destinations() -> list[str]:
    """The sends whose destination (addr2, msg_name) this kernel's requests
    give at submission (bpf/opfile.h, op__dest): all four, from prep's copy
    (6.10+: no struct io_async_connect), else `SEND(user)` and the others
    from the caller's memory where io_sr_msg keeps SEND's address pointer
    (6.1 to 6.9); none before (6.0: no `addr`)."""
    from ..system import libbpf
    lib = libbpf.lib()
    with libbpf.vmlinux_btf() as btf:
        if not btf:
            return []
        if lib.btf__find_by_name_kind(btf, b"io_async_connect", _BTF_KIND_STRUCT) <= 0:
            return list(SENDS)
        if not _has_member(lib, btf, "io_sr_msg", "addr"):
            return []
    return [f"{op}(user)" for op in SENDS]


def _has_member(lib, btf, struct: str, member: str) -> bool:
    """Whether the kernel's `struct` has a member named `member` (named
    members only: btf_member entries after the 12-byte btf_type)."""
    t = _follow(lib, btf, lib.btf__find_by_name_kind(btf, struct.encode(), _BTF_KIND_STRUCT), ())
    return bool(t) and any(
        lib.btf__name_by_offset(btf, _word(t, 3 + 3 * i)) == member.encode()
        for i in range(_vlen(t)))


def complete_program() -> str | None:
    """The completion program whose arguments this kernel's
    io_uring_complete tracepoint has (read from its BTF): the CQE pointer
    third (6.3+), or the result fourth (6.0 to 6.2); None if neither."""
    from ..system import libbpf
    lib = libbpf.lib()
    with libbpf.vmlinux_btf() as btf:
        if not btf:
            return None
        tid = lib.btf__find_by_name_kind(btf, b"btf_trace_io_uring_complete", _BTF_KIND_TYPEDEF)
        proto = _follow(lib, btf, tid, (_BTF_KIND_TYPEDEF, _BTF_KIND_PTR))
        if not proto or _kind(proto) != _BTF_KIND_FUNC_PROTO:
            return None
        params = [ctypes.c_uint32.from_address(proto + 12 + 8 * i + 4).value
                  for i in range(_vlen(proto))]       # params[i].type; [0] the tp's data
        if len(params) == 4 and _follow(lib, btf, params[3], (_BTF_KIND_PTR,)):
            return COMPLETE_PROGRAMS[0]
        res = _follow(lib, btf, params[4], ()) if len(params) >= 5 else None
        if res and _kind(res) == _BTF_KIND_INT:
            return COMPLETE_PROGRAMS[1]
        return None


_BTF_HEADER = struct.Struct("<HBBIIIII")
_BTF_TYPE = struct.Struct("<III")
_BTF_ENUM = struct.Struct("<Ii")
# bytes after a btf_type's 12, by kind, for vlen entries (include/uapi/linux/btf.h)
_BTF_EXTRA = {1: lambda v: 4, 3: lambda v: 12, 4: lambda v: 12 * v, 5: lambda v: 12 * v,
              6: lambda v: 8 * v, 13: lambda v: 8 * v, 14: lambda v: 4,
              15: lambda v: 12 * v, 17: lambda v: 4, 19: lambda v: 12 * v}


def btf_enum_value(name: str, path: str) -> int | None:
    """The value of enumerator `name` in a raw BTF file, anonymous enums
    included (which libbpf's lookups by type name cannot find); None if
    it is not there or the file can't be read."""
    try:
        data = open(path, "rb").read()
        _, _, _, hdr_len, type_off, type_len, str_off, str_len = _BTF_HEADER.unpack_from(data)
    except (OSError, struct.error):
        return None
    strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
    at = strings.find(b"\0" + name.encode() + b"\0")
    if at < 0:
        return None
    pos, end = hdr_len + type_off, hdr_len + type_off + type_len
    while pos + _BTF_TYPE.size <= end:
        _, info, _ = _BTF_TYPE.unpack_from(data, pos)
        kind, vlen = info >> 24 & 0x1F, info & 0xFFFF
        if kind == 6:       # BTF_KIND_ENUM
            for j in range(vlen):
                name_off, value = _BTF_ENUM.unpack_from(data, pos + 12 + 8 * j)
                if name_off == at + 1:
                    return value
        extra = _BTF_EXTRA.get(kind)
        pos += 12 + (extra(vlen) if extra else 0)
    return None


def _word(t: int, i: int) -> int:
    return ctypes.c_uint32.from_address(t + 4 * i).value


def _kind(t: int) -> int:
    return _word(t, 1) >> 24 & 0x1F


def _vlen(t: int) -> int:
    return _word(t, 1) & 0xFFFF


def _follow(lib, btf, tid: int, through: tuple[int, ...]) -> int | None:
    """The btf_type at tid, after following the kinds in `through` in order."""
    if tid <= 0:
        return None
    t = lib.btf__type_by_id(btf, tid)
    for kind in through:
        if not t or _kind(t) != kind:
            return None
        t = lib.btf__type_by_id(btf, _word(t, 2))
    return t


def programs(hook: Hook, has_loop: bool, tracefs: str,
             resolve: layout.ResolvePath = "probe_read") -> tuple[str, ...]:
    """The programs to load for a hook: enter, exit, and for kprobes the
    reaper where its tracepoint exists."""
    enter, exit_ = HOOKS[hook][1]
    if resolve == "btf":
        chosen = (enter + BTF, exit_ + BTF)
    else:
        chosen = (enter, exit_ if has_loop else exit_ + NO_LOOP)
    if hook == "kprobes" and os.path.exists(os.path.join(tracefs, REAPER_EVENT)):
        chosen += (REAPER,)
    return chosen


PROG_TYPE_KPROBE, PROG_TYPE_TRACEPOINT, PROG_TYPE_TRACING = 2, 5, 26
MAP_TYPE_RINGBUF = 27
FUNC_PROBE_READ_KERNEL, FUNC_GET_CURRENT_TASK_BTF, FUNC_FIND_VMA, FUNC_LOOP = 113, 158, 180, 181
BTF_VMLINUX = "/sys/kernel/btf/vmlinux"
LOCKDOWN = "/sys/kernel/security/lockdown"


def available(tracefs: str) -> dict[Hook, bool]:
    have = {name: os.path.exists(os.path.join(tracefs, event))
            for name, (event, _) in HOOKS.items()}
    # The kprobe reads the syscall's arguments from kernel memory, which a
    # locked-down kernel refuses; only a kernel with kprobes is asked.
    have["kprobes"] = have["kprobes"] and reads_kernel()
    return have


def has_helper(func: int, prog_type: int = PROG_TYPE_TRACEPOINT) -> bool:
    """Whether this kernel lets a program of prog_type call BPF helper func."""
    from ..system import libbpf
    return libbpf.lib().libbpf_probe_bpf_helper(prog_type, func, None) == 1


def has_kfunc(name: str) -> bool:
    """Whether the kernel's BTF has kfunc `name` (bpf_rdonly_cast: 6.2+)."""
    from ..system import libbpf
    return libbpf.kernel_has_func(name)


def resolve_paths() -> dict[layout.ResolvePath, bool]:
    """Which identity paths this kernel offers."""
    return {"btf": has_kfunc("bpf_rdonly_cast") and has_helper(FUNC_LOOP),
            "probe_read": has_helper(FUNC_PROBE_READ_KERNEL),
            "proc": True, "off": True}


def pick_resolve(have: dict[layout.ResolvePath, bool],
                 wanted: layout.ResolvePath | Auto = "auto") -> layout.ResolvePath | None:
    if wanted != "auto":
        return wanted if have.get(wanted) else None
    return next(r for r in RESOLVE if have[r])


def reads_kernel() -> bool:
    """Whether a kprobe program may call bpf_probe_read_kernel here."""
    return has_helper(FUNC_PROBE_READ_KERNEL, PROG_TYPE_KPROBE)


def choose(tracefs: str, wanted: Hook | Auto = "auto") -> Hook | None:
    """The hook to use: `wanted` if it exists, else the best that does."""
    return pick(available(tracefs), wanted)


def pick(have: dict[Hook, bool], wanted: Hook | Auto = "auto") -> Hook | None:
    if wanted != "auto":
        return wanted if have.get(wanted) else None
    return next((h for h in ORDER if have[h]), None)


def lockdown() -> str:
    """The kernel lockdown mode, e.g. "confidentiality" ([bracketed] in the
    file); securityfs is mounted for it if it is not (root only)."""
    if not os.path.exists(LOCKDOWN) and os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount(b"securityfs", b"/sys/kernel/security", b"securityfs", 0, None)
    try:
        text = open(LOCKDOWN).read()
    except OSError:
        return "unknown (securityfs not mounted)"
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else text.strip()


_NR_IO_URING_SETUP, _NR_IO_URING_REGISTER = 425, 427
_NEVER_OPEN = 0x7FFFFFFF    # above any fd table (nr_open caps it at 2**30)
_PROBE_MAX = 256


def register_opcodes() -> int | None:
    """How many IORING_REGISTER_* opcodes this kernel accepts (its
    IORING_REGISTER_LAST), asked of the kernel, or None if it won't say.

    Since the registered-ring rework (5.18, and the 5.10 and 5.15 stable
    backports) an opcode >= LAST gets EINVAL before the fd is looked up,
    and a known one on a never-open fd gets EBADF. (fd -1 would not do:
    from 6.13 it selects the ring-less opcodes.) Older kernels look the fd
    up first; a restricted ring (5.10+) then answers EACCES for every known
    opcode and EINVAL past LAST."""
    libc = ctypes.CDLL(None, use_errno=True)

    def register(fd: int, op: int, arg=None, nr: int = 0) -> int:
        ret = libc.syscall(ctypes.c_long(_NR_IO_URING_REGISTER), ctypes.c_int(fd),
                           ctypes.c_uint(op), arg, ctypes.c_uint(nr))
        return ret if ret >= 0 else -ctypes.get_errno()

    def last_of(fd: int, known: int) -> int | None:
        rets = [register(fd, op) for op in range(_PROBE_MAX)]
        n = rets.index(-errno.EINVAL) if -errno.EINVAL in rets else 0
        ok = n and set(rets[:n]) == {-known} and set(rets[n:]) == {-errno.EINVAL}
        return n if ok else None

    found = last_of(_NEVER_OPEN, errno.EBADF)
    if found is None:
        params = (ctypes.c_uint32 * 30)()
        params[2] = 1 << 6                  # IORING_SETUP_R_DISABLED
        ring = libc.syscall(ctypes.c_long(_NR_IO_URING_SETUP), ctypes.c_uint(1), params)
        if ring >= 0:
            try:
                allow_nop = (ctypes.c_uint16 * 8)(1)     # one SQE_OP restriction: NOP
                register(ring, 11, allow_nop, 1)           # REGISTER_RESTRICTIONS
                if register(ring, 12) == 0:               # ENABLE_RINGS
                    found = last_of(ring, errno.EACCES)
            finally:
                os.close(ring)
    return found


def ring_report(tracefs: str) -> RingsProbe:
    """Which parts of a ring's life this kernel shows."""
    chosen = ring_programs(tracefs)
    submit = next((p for p in chosen if p.startswith("tp_btf__")), None)
    complete = next((p for p in chosen if p in COMPLETE_PROGRAMS), None)
    paths = resolve_paths() if submit else {}
    return RingsProbe(
        setup=all(p in chosen for p in list(RING_PROGRAMS)[:3]),
        register_ring_id=RING_ID_PROGRAM in chosen or PBUF_REGISTER_PROGRAM in chosen,
        operations=submit.removeprefix("tp_btf__") if submit else None,
        before=RING_BEFORE_PROGRAM in chosen,
        # targets need kernel reads: the identities' btf or probe_read path
        action_targets=action_ops() if paths.get("btf") or paths.get("probe_read") else [],
        send_destinations=send_destinations()
        if paths.get("btf") or paths.get("probe_read") else [],
        action_results=complete.removeprefix("tp_btf__") if complete else None,
        refused=REFUSED_TRACEPOINT if REFUSED_PROGRAM in chosen else None,
    )


def coalescing(has_loop: bool) -> str:
    """Which repeats fairness can fold on this kernel (docs/ARCHITECTURE.md, Fairness)."""
    return ("any call" if has_loop else
            f"calls with at most {layout.SIG_UNROLLED} argument bytes, "
            f"{layout.SIG_FILES_UNROLLED} files and no buffers (no bpf_loop)")


def report(tracefs: str | None) -> Probe:
    """Everything `uringwatch probe` prints, without loading anything."""
    from ..system import libbpf
    with libbpf.vmlinux_btf():          # one load for all the kernel's BTF is asked
        return _report(tracefs, libbpf.lib())


def _report(tracefs: str | None, lib) -> Probe:
    have = available(tracefs) if tracefs else {h: False for h in HOOKS}
    extra = {}
    if tracefs:
        extra = {"io_uring_tracepoint": os.path.exists(
            os.path.join(tracefs, "events/io_uring/io_uring_register"))}
    return Probe(
        kernel=platform.release(),
        arch=platform.machine(),
        btf=os.path.exists(BTF_VMLINUX),
        lockdown=lockdown(),
        tracefs=tracefs,
        ringbuf=lib.libbpf_probe_bpf_map_type(MAP_TYPE_RINGBUF, None) == 1,
        bpf_loop=has_helper(FUNC_LOOP),
        coalesce=coalescing(has_helper(FUNC_LOOP)),
        fentry_prog_type=lib.libbpf_probe_bpf_prog_type(PROG_TYPE_TRACING, None) == 1,
        probe_read_kernel=reads_kernel(),
        register_opcodes=register_opcodes(),
        hooks={**have, **extra},
        rings=ring_report(tracefs) if tracefs else None,
        chosen=pick(have) if tracefs else None,
        resolve=(paths := resolve_paths()),
        resolve_chosen=pick_resolve(paths),
    )
