"""One BPF object opened from bytes: its maps and programs by name, the
programs chosen to load, and the links of those attached. close()
releases all of it."""

from __future__ import annotations

import ctypes
import os

from . import hooks
from ..system import libbpf


def sha256(data: bytes) -> str:
    """data's SHA-256, by CPython's own code where it has it (_sha2 from
    3.12, _sha256 before): hashlib's OpenSSL maps libcrypto, 3.7 MB of the
    tracer's memory for this one digest (7 ms slower over the object)."""
    try:
        from _sha2 import sha256 as digest
    except ImportError:
        try:
            from _sha256 import sha256 as digest
        except ImportError:
            from hashlib import sha256 as digest
    return digest(data).hexdigest()


class BpfObject:
    def __init__(self, data: bytes, btf_path: str | None = None):
        self.sha256 = sha256(data)
        self.programs: tuple[str, ...] = ()     # loaded, and attached by attach()
        self._links: list = []
        opts = libbpf.OpenOpts(sz=ctypes.sizeof(libbpf.OpenOpts), object_name=b"uringwatch")
        if btf_path:
            opts.btf_custom_path = btf_path.encode()
        # libbpf copies what it keeps and hands the buffer back when open
        # returns (it ends its ELF view there): no copy of the object is
        # kept here, 3.5 MB of the tracer's memory
        self._handle = libbpf.check_ptr(
            libbpf.lib().bpf_object__open_mem(data, len(data), ctypes.byref(opts)),
            "opening the BPF object")

    def map(self, name: str):
        return libbpf.check_ptr(
            libbpf.lib().bpf_object__find_map_by_name(self._handle, name.encode()),
            f"finding map {name}")

    def map_fd(self, name: str) -> int:
        return libbpf.lib().bpf_map__fd(self.map(name))

    def max_entries(self, name: str) -> int:
        return libbpf.lib().bpf_map__max_entries(self.map(name))

    def value_size(self, name: str) -> int:
        return libbpf.lib().bpf_map__value_size(self.map(name))

    def set_max_entries(self, name: str, n: int) -> None:
        libbpf.lib().bpf_map__set_max_entries(self.map(name), n)

    def initial_value(self, name: str) -> ctypes.Array:
        """A data section's bytes (.rodata.cfg), writable until load()."""
        size = ctypes.c_size_t()
        ptr = libbpf.check_ptr(
            libbpf.lib().bpf_map__initial_value(self.map(name), ctypes.byref(size)),
            f"reading {name}")
        return (ctypes.c_char * size.value).from_address(ptr)

    def program(self, name: str):
        return libbpf.check_ptr(
            libbpf.lib().bpf_object__find_program_by_name(self._handle, name.encode()),
            f"finding program {name}")

    def section(self, name: str) -> str:
        return libbpf.lib().bpf_program__section_name(self.program(name)).decode()

    def choose(self, programs: tuple[str, ...]) -> None:
        """Of all the programs uringwatch has, load only these."""
        lib = libbpf.lib()
        self.programs = programs
        for name in hooks.ALL_PROGRAMS:
            prog = lib.bpf_object__find_program_by_name(self._handle, name.encode())
            if prog:                        # the _btf twins are in one object only
                lib.bpf_program__set_autoload(prog, name in programs)

    def load(self) -> None:
        libbpf.check(libbpf.lib().bpf_object__load(self._handle), "loading the BPF object")

    def attach(self) -> None:
        """Attaches the chosen programs but iterators (see iterate())."""
        for name in self.programs:
            if self.section(name).startswith("iter/"):
                continue
            self._links.append(libbpf.check_ptr(
                libbpf.lib().bpf_program__attach(self.program(name)), f"attaching {name}"))

    def iterate(self, name: str) -> bytes:
        """Runs a loaded iterator program once: all it wrote."""
        lib = libbpf.lib()
        link = libbpf.check_ptr(lib.bpf_program__attach(self.program(name)),
                                f"attaching {name}")
        try:
            fd = libbpf.check(lib.bpf_iter_create(lib.bpf_link__fd(link)),
                              f"creating an iterator of {name}")
            with os.fdopen(fd, "rb", buffering=0) as f:
                chunks = []
                while chunk := f.read(1 << 16):
                    chunks.append(chunk)
            return b"".join(chunks)
        finally:
            lib.bpf_link__destroy(link)

    def runs_skipped(self) -> dict[str, int] | None:
        """Per attached program, the runs the kernel skipped because the
        program was already running on that CPU (`recursion_misses` in its
        fdinfo): a kernel that runs tracepoint programs preemptibly (7.x)
        skips one when a task preempted inside it lets another task on that
        CPU hit the same tracepoint. None where the kernel doesn't count
        them (before 5.12)."""
        lib, out = libbpf.lib(), {}
        for name in self.programs:
            fd = lib.bpf_program__fd(self.program(name))
            with open(f"/proc/self/fdinfo/{fd}") as f:
                line = next((ln for ln in f if ln.startswith("recursion_misses:")), None)
            if line is None:
                return None
            out[name] = int(line.split()[1])
        return out

    def detach(self) -> bool:
        """Destroys the links; whether there were any."""
        had = bool(self._links)
        for link in self._links:
            libbpf.lib().bpf_link__destroy(link)
        self._links.clear()
        return had

    def close(self) -> None:
        self.detach()
        if self._handle:
            libbpf.lib().bpf_object__close(self._handle)
            self._handle = None
