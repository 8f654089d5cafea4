"""What the kernel counted, read from its maps: records lost by cause
(per-CPU counters, summed) and, per process, its fairness state."""

from __future__ import annotations

import ctypes
from typing import Iterator

from . import layout, libbpf
from .bpfobject import BpfObject

PROCESSES_IN_STATS = 100  # stats() lists this many processes, most dropped first


class Counters:
    def __init__(self, obj: BpfObject):
        self._obj = obj

    def totals(self) -> dict[str, int]:
        """The kernel's counters (layout.COUNTERS), summed over CPUs."""
        lib = libbpf.lib()
        ncpu = lib.libbpf_num_possible_cpus()
        per = layout.COUNTERS_LAYOUT.size
        buf = ctypes.create_string_buffer(per * ncpu)
        key = ctypes.c_uint32(0)
        libbpf.check(lib.bpf_map_lookup_elem(self._obj.map_fd("counters"),
                                             ctypes.byref(key), buf), "reading counters")
        totals = [0] * len(layout.COUNTERS)
        for cpu in range(ncpu):
            for i, v in enumerate(layout.COUNTERS_LAYOUT.struct.unpack_from(buf, cpu * per)):
                totals[i] += v
        return dict(zip(layout.COUNTERS, totals))

    def procs(self) -> Iterator[tuple[int, dict]]:
        """(tgid, uw_proc as a dict) for every process with fairness state."""
        lib = libbpf.lib()
        fd = self._obj.map_fd("procs")
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
        for pid, p in self.procs():
            drops = dict(zip(layout.DROPS, p["drops"]))
            if p["coalesced"] or any(drops.values()):
                out.append({"pid": pid, "comm": layout.cstr(p["comm"]),
                            "coalesced": p["coalesced"], **drops})
        return sorted(out, key=lambda r: (-sum(r[k] for k in layout.DROPS), -r["coalesced"]))

    def stats(self, **user_space: int) -> dict:
        """totals(), then user space's own counts, then "processes": the
        top PROCESSES_IN_STATS of processes()."""
        return {**self.totals(), **user_space,
                "processes": self.processes()[:PROCESSES_IN_STATS]}
