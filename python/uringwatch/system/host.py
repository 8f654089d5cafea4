"""What tracing needs of this host before anything is loaded: privileges,
and a tracefs mount to read tracepoint ids from."""

from __future__ import annotations

import ctypes
import os

from ..errors import PrivilegeError, TracerError

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39


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
