"""The filter sets that can change while tracing: pids and cgroups, kept
in kernel maps the programs look calls up in."""

from __future__ import annotations

import ctypes

from ..system import libbpf
from .bpfobject import BpfObject
from ..errors import TracerError
from ..record.filters import Filters
from ..record.rings import miss_fast_paths


class FilterSets:
    """A set is enabled when the tracer is opened with one (even empty),
    and starts with its members."""

    def __init__(self, obj: BpfObject, filters: Filters):
        self._obj, self._filters = obj, filters
        for pid in filters.pids or ():
            self.add_pid(pid)
        for cg in filters.cgroups or ():
            self.add_cgroup(cg)

    def add_pid(self, pid: int) -> None:
        self._set("pids", ctypes.c_uint32, pid, True, self._filters.pids is not None)

    def remove_pid(self, pid: int) -> None:
        self._set("pids", ctypes.c_uint32, pid, False, self._filters.pids is not None)

    def add_cgroup(self, cgroup_id: int) -> None:
        self._set("cgroups", ctypes.c_uint64, cgroup_id, True,
                  self._filters.cgroups is not None)

    def remove_cgroup(self, cgroup_id: int) -> None:
        self._set("cgroups", ctypes.c_uint64, cgroup_id, False,
                  self._filters.cgroups is not None)

    def _set(self, map_name: str, ctype, key: int, add: bool, enabled: bool) -> None:
        if not enabled:
            raise TracerError(f"this tracer was opened without a {map_name} filter; "
                              f"pass an empty set to enable it")
        fd = self._obj.map_fd(map_name)
        k, one = ctype(key), ctypes.c_uint8(1)
        if add:
            libbpf.check(libbpf.lib().bpf_map_update_elem(fd, ctypes.byref(k),
                                                          ctypes.byref(one), 0),
                         f"adding {key} to the {map_name} filter")
        else:
            libbpf.lib().bpf_map_delete_elem(fd, ctypes.byref(k))
            # the operations' fast paths hold the filters' verdicts
            miss_fast_paths(self._obj.map_fd("opc_epochs"))
