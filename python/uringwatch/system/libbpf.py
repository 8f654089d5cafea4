"""A thin ctypes binding of libbpf.so.1: just the calls uringwatch makes.

Every signature is declared once, in _SIGNATURES. The library is loaded on
first use: the copy bundled in the package's _lib/ (URINGWATCH_LIBBPF names
another path, or "system" for the system's libbpf.so.1). libbpf's log
goes to the "uringwatch.libbpf" logger and the last lines ride along on
every LibbpfError.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import logging
import os
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char_p, c_int,
                    c_size_t, c_uint32, c_void_p)
from importlib import resources

log = logging.getLogger("uringwatch.libbpf")


class LibbpfError(OSError):
    """A libbpf call failed: errno, what was being done, and libbpf's log."""

    def __init__(self, err: int, what: str, log_lines: list[str]):
        self.log_lines = log_lines
        super().__init__(err, f"{what}: {os.strerror(err)}")


# Opaque handle types: a map can't be passed where a program is expected.
class _Object(Structure):
    pass


class _Program(Structure):
    pass


class _Map(Structure):
    pass


class _Link(Structure):
    pass


class _Btf(Structure):
    pass


ObjectP = POINTER(_Object)
ProgramP = POINTER(_Program)
MapP = POINTER(_Map)
LinkP = POINTER(_Link)
BtfP = POINTER(_Btf)
BTF_KIND_FUNC = 12


class OpenOpts(Structure):
    """struct bpf_object_open_opts as of libbpf 1.0 (sz makes it forward-safe)."""
    _fields_ = [
        ("sz", c_size_t),
        ("object_name", c_char_p),
        ("relaxed_maps", c_bool),
        ("pin_root_path", c_char_p),
        ("_attach_prog_fd", c_uint32),
        ("kconfig", c_char_p),
        ("btf_custom_path", c_char_p),
        ("kernel_log_buf", c_char_p),
        ("kernel_log_size", c_size_t),
        ("kernel_log_level", c_uint32),
    ]


PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)

_SIGNATURES = {
    "libbpf_set_print": (PRINT_FN, [PRINT_FN]),
    "libbpf_num_possible_cpus": (c_int, []),
    "libbpf_probe_bpf_helper": (c_int, [c_int, c_int, c_void_p]),
    "libbpf_probe_bpf_map_type": (c_int, [c_int, c_void_p]),
    "libbpf_probe_bpf_prog_type": (c_int, [c_int, c_void_p]),
    "bpf_object__open_mem": (ObjectP, [c_void_p, c_size_t, POINTER(OpenOpts)]),
    "bpf_object__load": (c_int, [ObjectP]),
    "bpf_object__close": (None, [ObjectP]),
    "bpf_object__find_map_by_name": (MapP, [ObjectP, c_char_p]),
    "bpf_object__find_program_by_name": (ProgramP, [ObjectP, c_char_p]),
    "bpf_program__set_autoload": (c_int, [ProgramP, c_bool]),
    "bpf_program__attach": (LinkP, [ProgramP]),
    "bpf_program__fd": (c_int, [ProgramP]),
    "bpf_program__section_name": (c_char_p, [ProgramP]),
    "bpf_program__fd": (c_int, [ProgramP]),
    "bpf_link__destroy": (c_int, [LinkP]),
    "bpf_link__fd": (c_int, [LinkP]),
    "bpf_iter_create": (c_int, [c_int]),
    "bpf_map__fd": (c_int, [MapP]),
    "bpf_map__max_entries": (c_uint32, [MapP]),
    "bpf_map__value_size": (c_uint32, [MapP]),
    "bpf_map__set_max_entries": (c_int, [MapP, c_uint32]),
    "bpf_map__initial_value": (c_void_p, [MapP, POINTER(c_size_t)]),
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, ctypes.c_uint64]),
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    "bpf_map_lookup_and_delete_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
    "btf__load_vmlinux_btf": (BtfP, []),
    "btf__find_by_name_kind": (ctypes.c_int32, [BtfP, c_char_p, ctypes.c_uint32]),
    "btf__type_by_id": (c_void_p, [BtfP, c_uint32]),
    "btf__name_by_offset": (c_char_p, [BtfP, c_uint32]),
    "btf__free": (None, [BtfP]),
}

LIBBPF_ENV = "URINGWATCH_LIBBPF"
_LOG_KEEP = 40
_lib = None
_recent: collections.deque[str] = collections.deque(maxlen=_LOG_KEEP)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


# Bytes of a va_list, copied as va_copy would (a plain struct: 32 bytes on
# aarch64, 24 on x86_64, where the copy also takes 8 bytes of the caller's
# stack that vsnprintf never reads), so one message can be formatted
# twice: once to size it.
_VA_LIST_SIZE = 32


@PRINT_FN
def _print(level: int, fmt: bytes, args: int) -> int:
    # Never raise out of a C callback: format, remember, log.
    try:
        if level > 1 and not log.isEnabledFor(logging.DEBUG):
            return 0    # a load prints thousands of these: unformatted, 60 ms less
        # Sized to the message: a verifier log ends with the reason the
        # load failed, so it must not be cut at a fixed length.
        spare = ctypes.create_string_buffer(ctypes.string_at(args, _VA_LIST_SIZE))
        need = _libc.vsnprintf(None, 0, fmt, ctypes.addressof(spare))
        buf = ctypes.create_string_buffer(max(need, 0) + 1)
        _libc.vsnprintf(buf, len(buf), fmt, args)
        line = buf.value.decode(errors="replace").rstrip()
        if level <= 1:
            _recent.append(line)
        log.log(_LEVELS.get(level, logging.DEBUG), "%s", line)
    except Exception:  # noqa: BLE001 - nothing may escape into C
        pass
    return 0


def library_path() -> str:
    """Where libbpf is loaded from: the bundled copy unless the environment
    names another; never the system's unless asked, so a broken install
    fails loudly instead of silently running a different libbpf."""
    choice = os.environ.get(LIBBPF_ENV, "")
    if choice == "system":
        return "libbpf.so.1"
    return choice or str(resources.files("uringwatch").joinpath("_lib", "libbpf.so.1"))


def lib():
    """The loaded library, declared and with its log routed, on first use."""
    global _lib
    if _lib is None:
        path = library_path()
        try:
            handle = ctypes.CDLL(path, use_errno=True)
        except OSError as e:
            raise LibbpfError(errno.ENOENT, f"cannot load libbpf ({path}): {e} "
                              f"({LIBBPF_ENV}=system uses the system's)", []) from None
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(handle, name)
            fn.restype, fn.argtypes = restype, argtypes
        handle.libbpf_set_print(_print)
        _lib = handle
    return _lib


_shared = threading.local()


@contextlib.contextmanager
def vmlinux_btf():
    """The running kernel's BTF, a libbpf handle (None without one): the
    one an outer `with` in this thread loaded, else loaded now and freed at
    the end. A start asks it several questions, at 5-10 ms a load."""
    btf = getattr(_shared, "btf", None)
    if btf is not None:
        yield btf or None
        return
    btf = _shared.btf = lib().btf__load_vmlinux_btf() or 0
    try:
        yield btf or None
    finally:
        _shared.btf = None
        if btf:
            lib().btf__free(btf)


def kernel_has_func(name: str) -> bool:
    """Whether the running kernel's BTF has function `name` (how kfuncs are
    found); False when the kernel has no BTF."""
    with vmlinux_btf() as btf:
        return bool(btf) and lib().btf__find_by_name_kind(btf, name.encode(), BTF_KIND_FUNC) > 0


def take_log() -> list[str]:
    """libbpf's recent warnings and info lines, cleared."""
    lines = list(_recent)
    _recent.clear()
    return lines


def fail(what: str, err: int | None = None) -> LibbpfError:
    """An exception for the call that just failed (errno read now)."""
    code = abs(err) if err else ctypes.get_errno() or errno.EINVAL
    return LibbpfError(code, what, take_log())


def check(ret: int, what: str) -> int:
    """libbpf 1.x returns -errno on failure."""
    if ret < 0:
        raise fail(what, ret)
    return ret


def check_ptr(ptr, what: str):
    """libbpf 1.x returns NULL and sets errno on failure."""
    if not ptr:
        raise fail(what)
    return ptr
