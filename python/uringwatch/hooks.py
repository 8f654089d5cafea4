"""What this kernel offers, and which hooks uringwatch attaches to.

Feature-probed at start, never assumed from a version number."""

from __future__ import annotations

import ctypes
import os
import platform

# hook name -> (tracefs event that must exist, the two BPF programs)
HOOKS = {
    "syscalls": ("events/syscalls/sys_enter_io_uring_register",
                 ("tracepoint__syscalls__sys_enter_io_uring_register",
                  "tracepoint__syscalls__sys_exit_io_uring_register")),
    "raw_syscalls": ("events/raw_syscalls/sys_enter",
                     ("tracepoint__raw_syscalls__sys_enter",
                      "tracepoint__raw_syscalls__sys_exit")),
}
# Preferred first: per-syscall tracepoints cost other syscalls nothing;
# raw_syscalls runs for every syscall on the system.
ORDER = ("syscalls", "raw_syscalls")
# Each exit program has a twin without the bpf_loop TOCTOU re-read, for
# kernels without bpf_loop: they refuse even a dead reference to a callback.
NO_LOOP = "_noloop"
ALL_PROGRAMS = tuple(p for _, (enter, exit_) in HOOKS.values()
                     for p in (enter, exit_, exit_ + NO_LOOP))


def programs(hook: str, has_loop: bool) -> tuple[str, str]:
    """The enter and exit programs to load for a hook."""
    enter, exit_ = HOOKS[hook][1]
    return enter, exit_ if has_loop else exit_ + NO_LOOP

PROG_TYPE_TRACEPOINT, PROG_TYPE_TRACING = 5, 26
MAP_TYPE_RINGBUF = 27
FUNC_GET_CURRENT_TASK_BTF, FUNC_LOOP = 158, 181
BTF_VMLINUX = "/sys/kernel/btf/vmlinux"
LOCKDOWN = "/sys/kernel/security/lockdown"


def available(tracefs: str) -> dict[str, bool]:
    return {name: os.path.exists(os.path.join(tracefs, event))
            for name, (event, _) in HOOKS.items()}


def choose(tracefs: str, wanted: str = "auto") -> str | None:
    """The hook to use: `wanted` if it exists, else the best that does."""
    have = available(tracefs)
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


def report(tracefs: str | None) -> dict:
    """Everything `uringwatch probe` prints, without loading anything."""
    from . import libbpf
    lib = libbpf.lib()
    have = available(tracefs) if tracefs else {h: False for h in HOOKS}
    extra = {}
    if tracefs:
        extra = {
            "io_uring_tracepoint": os.path.exists(
                os.path.join(tracefs, "events/io_uring/io_uring_register")),
            "kprobes": os.path.exists(os.path.join(tracefs, "kprobe_events")),
        }
    return {
        "kernel": platform.release(),
        "arch": platform.machine(),
        "btf": os.path.exists(BTF_VMLINUX),
        "lockdown": lockdown(),
        "tracefs": tracefs,
        "ringbuf": lib.libbpf_probe_bpf_map_type(MAP_TYPE_RINGBUF, None) == 1,
        "bpf_loop": lib.libbpf_probe_bpf_helper(PROG_TYPE_TRACEPOINT, FUNC_LOOP, None) == 1,
        "fentry_prog_type": lib.libbpf_probe_bpf_prog_type(PROG_TYPE_TRACING, None) == 1,
        "hooks": {**have, **extra},
        "chosen": choose(tracefs) if tracefs else None,
    }
