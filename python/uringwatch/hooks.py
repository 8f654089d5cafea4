"""What this kernel offers, and which hooks uringwatch attaches to.

Feature-probed at start, never assumed from a version number."""

from __future__ import annotations

import ctypes
import errno
import os
import platform

# hook name -> (tracefs file that must exist, the two BPF programs)
HOOKS = {
    "syscalls": ("events/syscalls/sys_enter_io_uring_register",
                 ("tracepoint__syscalls__sys_enter_io_uring_register",
                  "tracepoint__syscalls__sys_exit_io_uring_register")),
    "kprobes": ("kprobe_events",
                ("ksyscall__io_uring_register", "kretsyscall__io_uring_register")),
    "raw_syscalls": ("events/raw_syscalls/sys_enter",
                     ("tracepoint__raw_syscalls__sys_enter",
                      "tracepoint__raw_syscalls__sys_exit")),
}
# Preferred first: per-syscall tracepoints cost other syscalls nothing, nor
# does a kprobe on the syscall (it needs bpf_probe_read_kernel);
# raw_syscalls runs for every syscall on the system.
ORDER = ("syscalls", "kprobes", "raw_syscalls")
# Each exit program has a twin without the bpf_loop TOCTOU re-read, for
# kernels without bpf_loop: they refuse even a dead reference to a callback.
NO_LOOP = "_noloop"
# Frees the slot of a thread that ends with a call whose exit was missed:
# only kretprobes miss exits (beyond their maxactive calls in flight).
REAPER = "tracepoint__sched__sched_process_exit"
REAPER_EVENT = "events/sched/sched_process_exit"
ALL_PROGRAMS = tuple(p for _, (enter, exit_) in HOOKS.values()
                     for p in (enter, exit_, exit_ + NO_LOOP)) + (REAPER,)


def programs(hook: str, has_loop: bool, tracefs: str) -> tuple[str, ...]:
    """The programs to load for a hook: enter, exit, and for kprobes the
    reaper where its tracepoint exists."""
    enter, exit_ = HOOKS[hook][1]
    chosen = (enter, exit_ if has_loop else exit_ + NO_LOOP)
    if hook == "kprobes" and os.path.exists(os.path.join(tracefs, REAPER_EVENT)):
        chosen += (REAPER,)
    return chosen


PROG_TYPE_KPROBE, PROG_TYPE_TRACEPOINT, PROG_TYPE_TRACING = 2, 5, 26
MAP_TYPE_RINGBUF = 27
FUNC_PROBE_READ_KERNEL, FUNC_GET_CURRENT_TASK_BTF, FUNC_LOOP = 113, 158, 181
BTF_VMLINUX = "/sys/kernel/btf/vmlinux"
LOCKDOWN = "/sys/kernel/security/lockdown"


def available(tracefs: str) -> dict[str, bool]:
    have = {name: os.path.exists(os.path.join(tracefs, event))
            for name, (event, _) in HOOKS.items()}
    # The kprobe reads the syscall's arguments from kernel memory, which a
    # locked-down kernel refuses; only a kernel with kprobes is asked.
    have["kprobes"] = have["kprobes"] and reads_kernel()
    return have


def has_helper(func: int, prog_type: int = PROG_TYPE_TRACEPOINT) -> bool:
    """Whether this kernel lets a program of prog_type call BPF helper func."""
    from . import libbpf
    return libbpf.lib().libbpf_probe_bpf_helper(prog_type, func, None) == 1


def reads_kernel() -> bool:
    """Whether a kprobe program may call bpf_probe_read_kernel here."""
    return has_helper(FUNC_PROBE_READ_KERNEL, PROG_TYPE_KPROBE)


def choose(tracefs: str, wanted: str = "auto") -> str | None:
    """The hook to use: `wanted` if it exists, else the best that does."""
    return pick(available(tracefs), wanted)


def pick(have: dict[str, bool], wanted: str = "auto") -> str | None:
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


# Without bpf_loop a call's captured bytes are hashed unrolled, this many at
# most (bpf/fairness.h SIG_UNROLLED); a larger call is never coalesced.
SIG_UNROLLED = 128


def coalescing(has_loop: bool) -> str:
    """Which repeats fairness can fold on this kernel (README, Fairness)."""
    return ("any call" if has_loop else
            f"calls with at most {SIG_UNROLLED} captured bytes (no bpf_loop)")


def report(tracefs: str | None) -> dict:
    """Everything `uringwatch probe` prints, without loading anything."""
    from . import libbpf
    lib = libbpf.lib()
    have = available(tracefs) if tracefs else {h: False for h in HOOKS}
    extra = {}
    if tracefs:
        extra = {"io_uring_tracepoint": os.path.exists(
            os.path.join(tracefs, "events/io_uring/io_uring_register"))}
    return {
        "kernel": platform.release(),
        "arch": platform.machine(),
        "btf": os.path.exists(BTF_VMLINUX),
        "lockdown": lockdown(),
        "tracefs": tracefs,
        "ringbuf": lib.libbpf_probe_bpf_map_type(MAP_TYPE_RINGBUF, None) == 1,
        "bpf_loop": has_helper(FUNC_LOOP),
        "coalesce": coalescing(has_helper(FUNC_LOOP)),
        "fentry_prog_type": lib.libbpf_probe_bpf_prog_type(PROG_TYPE_TRACING, None) == 1,
        "probe_read_kernel": reads_kernel(),
        "register_opcodes": register_opcodes(),
        "hooks": {**have, **extra},
        "chosen": pick(have) if tracefs else None,
    }
