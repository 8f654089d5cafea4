"""cgroup id -> cgroup path -> container id, for attributing events.

The BPF side records the caller's cgroup v2 id, which is the inode number
of its directory in the cgroup2 file system. Paths are found by walking
that tree (cached, bounded, rescanned at most twice a second), and
container ids are read off the path by the runtimes' naming conventions.
The tree is walked once when tracing starts: a container that exits right
after its call has its cgroup removed before the event is read, so only
cgroups seen while they lived can be named.
"""

from __future__ import annotations

import collections
import functools
import os
import re
import time

# Runtime naming conventions, systemd and cgroupfs drivers alike.
_PATTERNS = [
    (re.compile(r"(?:^|/)docker-([0-9a-f]{64})\.scope$"), "docker"),
    (re.compile(r"/docker/([0-9a-f]{64})$"), "docker"),
    (re.compile(r"(?:^|/)cri-containerd-([0-9a-f]{64})\.scope$"), "containerd"),
    (re.compile(r"(?:^|/)crio-([0-9a-f]{64})\.scope$"), "cri-o"),
    (re.compile(r"(?:^|/)libpod-([0-9a-f]{64})\.scope$"), "podman"),
    (re.compile(r"/libpod_parent/libpod-([0-9a-f]{64})$"), "podman"),
    (re.compile(r"/kubepods[^ ]*/(?:pod[^/]+)/([0-9a-f]{64})$"), "cri"),
]
_RESCAN_EVERY = 0.5


def cgroup2_root(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or
    /sys/fs/cgroup/unified on hybrid hosts)."""
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        pass
    return None


# every live event asks, seven regexes each time: the answer is kept per path
@functools.lru_cache(maxsize=4096)
def container_of(path: str) -> tuple[str, str] | None:
    """(runtime, container id) if the cgroup path follows a runtime's naming."""
    for pattern, runtime in _PATTERNS:
        m = pattern.search(path)
        if m:
            return runtime, m.group(1)
    return None


class CgroupResolver:
    def __init__(self, root: str | None = None, max_entries: int = 4096):
        self.root = root or cgroup2_root()
        self._paths: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._max = max_entries
        self._scanned = 0.0

    def scan(self) -> None:
        """Refresh the cache from the tree, keeping it within its bound."""
        self._scanned = time.monotonic()
        if not self.root:
            return
        for top, dirs, _ in os.walk(self.root):
            for d in dirs:
                full = os.path.join(top, d)
                try:
                    ino = os.stat(full).st_ino
                except OSError:
                    continue  # removed while we walked
                self._remember(ino, "/" + os.path.relpath(full, self.root))
        self._remember(os.stat(self.root).st_ino, "/")

    def _remember(self, cgroup_id: int, path: str) -> None:
        self._paths[cgroup_id] = path
        self._paths.move_to_end(cgroup_id)
        while len(self._paths) > self._max:
            self._paths.popitem(last=False)

    def path(self, cgroup_id: int) -> str | None:
        """The cgroup's path below the cgroup2 root, None if unknown."""
        p = self._paths.get(cgroup_id)
        if p is None and time.monotonic() - self._scanned >= _RESCAN_EVERY:
            self.scan()
            p = self._paths.get(cgroup_id)
        return p

    def context(self, cgroup_id: int) -> tuple[str | None, str | None]:
        """(cgroup path, container id) for an event."""
        p = self.path(cgroup_id)
        c = container_of(p) if p else None
        return p, c[1] if c else None

    def ids(self, path: str) -> set[int]:
        """Ids of a cgroup (path below the root, or absolute) and all below it."""
        if not self.root:
            raise OSError("no cgroup2 hierarchy is mounted")
        full = path if path.startswith(self.root) else os.path.join(self.root, path.lstrip("/"))
        out = {os.stat(full).st_ino}
        for top, dirs, _ in os.walk(full):
            out.update(os.stat(os.path.join(top, d)).st_ino for d in dirs)
        return out

    def container_cgroups(self, container_id: str) -> set[int]:
        """Ids of the cgroups of a container, given its id or a unique prefix."""
        if not self.root:
            raise OSError("no cgroup2 hierarchy is mounted")
        found: dict[str, str] = {}
        for top, dirs, _ in os.walk(self.root):
            for d in dirs:
                path = os.path.join(top, d)
                c = container_of(path)
                if c and c[1].startswith(container_id):
                    found[path] = c[1]
        if len(set(found.values())) > 1:
            raise ValueError(f"container id {container_id!r} is ambiguous")
        return set().union(*(self.ids(p) for p in found)) if found else set()
