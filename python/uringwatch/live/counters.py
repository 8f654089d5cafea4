"""What the kernel counted, read from its maps: records lost by cause
(per-CPU counters, summed) and the fairness state of each process and of
each aggregate (uid and cgroup)."""

from __future__ import annotations

import ctypes
from typing import Iterator

from ..record import layout
from ..system import libbpf
from ..probe.bpfobject import BpfObject
from ..record.reports import COUNTS, AggregateCounts, ProcessCounts, Stats

PROCESSES_IN_STATS = 100  # stats() lists this many processes, most dropped first
AGGREGATES_IN_STATS = 100  # and this many aggregates
DROPPED = (*layout.DROPS, *layout.REC_DROPS)


def _dropped_first(rows: list) -> list:
    return sorted(rows, key=lambda r: (-sum(getattr(r, k) for k in DROPPED), -r.coalesced))


def _counts(state: dict) -> dict[str, int]:
    """A uw_proc's or uw_agg's counts by name (COUNTS)."""
    return {"coalesced": state["coalesced"], **dict(zip(layout.DROPS, state["drops"])),
            **dict(zip(layout.REC_DROPS, state["rec_drops"]))}


class CounterMaps:
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
        for key, val in self._entries("procs", 4, layout.PROC.size):
            yield int.from_bytes(key, "little"), layout.PROC.unpack(val)

    def _entries(self, name: str, key_size: int, value_size: int) -> Iterator[tuple[bytes, bytes]]:
        lib = libbpf.lib()
        fd = self._obj.map_fd(name)
        key, nxt = ctypes.create_string_buffer(key_size), ctypes.create_string_buffer(key_size)
        val = ctypes.create_string_buffer(value_size)
        prev = None
        while lib.bpf_map_get_next_key(fd, prev, nxt) == 0:
            ctypes.memmove(key, nxt, key_size)
            prev = key
            if lib.bpf_map_lookup_elem(fd, key, val) == 0:
                yield key.raw, val.raw

    def processes(self) -> list[ProcessCounts]:
        """Per process (tgid) with anything coalesced or dropped: pid, comm,
        calls coalesced, calls dropped by cause, ring and op records not
        sent; most dropped first."""
        out = []
        for pid, p in self.procs():
            counts = _counts(p)
            if any(counts.values()):
                out.append(ProcessCounts(pid=pid, comm=layout.cstr(p["comm"]), **counts))
        return _dropped_first(out)

    def aggregates(self) -> list[AggregateCounts]:
        """Per aggregate (uid, cgroup id) with anything coalesced or
        dropped: its processes' counts, those still running and those that
        ended (`ended` of them) or had no state of their own; most dropped
        first. uid AGG_OVERFLOW_UID: the aggregates past the map's size."""
        total: dict[tuple[int, int], dict] = {}
        for key, val in self._entries("aggs", layout.AGG_KEY.size, layout.AGG.size):
            k, a = layout.AGG_KEY.unpack(key), layout.AGG.unpack(val)
            total[k["uid"], k["cgroup_id"]] = {"ended": a["ended"], **_counts(a)}
        for _, p in self.procs():
            t = total.setdefault((p["agg"][1], p["agg"][0]),
                                 dict.fromkeys(("ended", *COUNTS), 0))
            for k, n in _counts(p).items():
                t[k] += n
        return _dropped_first([AggregateCounts(uid=uid, cgroup_id=cg, **t)
                               for (uid, cg), t in total.items()
                               if any(t[k] for k in COUNTS)])

    def stats(self, **user_space: int) -> Stats:
        """totals(), then user space's own counts, then "processes": the
        top PROCESSES_IN_STATS of processes(), and "aggregates": the top
        AGGREGATES_IN_STATS of aggregates()."""
        return Stats(**self.totals(), **user_space,
                     processes=self.processes()[:PROCESSES_IN_STATS],
                     aggregates=self.aggregates()[:AGGREGATES_IN_STATS])
