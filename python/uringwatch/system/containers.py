"""cgroup id -> cgroup path -> container id, for attributing events.

The BPF side records the caller's cgroup v2 id, which is the inode number
of its directory in the cgroup2 file system. Paths are found by walking
that tree (cached, bounded, rescanned at most twice a second), and
container ids are read off the path by the runtimes' naming conventions.
A container that exits right after its call has its cgroup removed before
the event is read, so a cgroup must be seen while it lives: the tree is
walked when tracing starts, and a live tracer watches it (inotify on every
cgroup directory) to learn each new cgroup as it is made.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import logging
import os
import re
import select
import struct
import threading
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
log = logging.getLogger(__name__)


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
        self._lock = threading.Lock()       # the watch's thread adds paths too
        self._watch: _Watch | None = None
        self.found_by = "walks"             # how new cgroups are found; watch() says
        # context(), per event: a known cgroup's answer is one lookup in C
        self.context = _Answers(self._context, max_entries).__getitem__

    def scan(self) -> None:
        """Refresh the cache from the tree, keeping it within its bound."""
        self._scanned = time.monotonic()
        if self.root:
            for top, _, _ in os.walk(self.root):
                self._learn(top)

    def _remember(self, cgroup_id: int, path: str) -> None:
        with self._lock:
            self._paths[cgroup_id] = path
            self._paths.move_to_end(cgroup_id)
            while len(self._paths) > self._max:
                self._paths.popitem(last=False)

    def _learn(self, full: str) -> None:
        """A cgroup directory found by a scan or the watch (its thread)."""
        rel = os.path.relpath(full, self.root)
        try:
            self._remember(os.stat(full).st_ino, "/" if rel == "." else "/" + rel)
        except OSError:
            pass        # removed already

    def watch(self) -> None:
        """Learn the cgroups there are, and those made until close().
        Without inotify (or past its watch limit) the rescans remain."""
        if self.root and self._watch is None:
            try:
                self._watch = _Watch(self.root, self._learn, self.scan)   # walks the tree
                self.found_by = "inotify"
            except OSError as e:
                self.found_by = f"walks (inotify: {e.strerror})"
                self.scan()

    def close(self) -> None:
        watch, self._watch = self._watch, None
        if watch:
            watch.close()

    def path(self, cgroup_id: int) -> str | None:
        """The cgroup's path below the cgroup2 root, None if unknown."""
        p = self._paths.get(cgroup_id)
        if p is None and time.monotonic() - self._scanned >= _RESCAN_EVERY:
            self.scan()
            p = self._paths.get(cgroup_id)
        return p

    def _context(self, cgroup_id: int) -> tuple[str | None, str | None]:
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


class _Answers(dict):
    """cgroup id -> context()'s answer, kept once the path is known (a
    cgroup id is not reused); an unknown id is asked again each time."""

    def __init__(self, answer, max_entries: int):
        super().__init__()
        self._answer, self._max = answer, max_entries

    def __missing__(self, cgroup_id: int) -> tuple[str | None, str | None]:
        got = self._answer(cgroup_id)
        if got[0] is not None:
            if len(self) >= self._max:
                self.clear()
            self[cgroup_id] = got
        return got


_IN_CREATE, _IN_Q_OVERFLOW, _IN_IGNORED, _IN_ISDIR = 0x100, 0x4000, 0x8000, 0x40000000
_IN_EVENT = struct.Struct("iIII")       # struct inotify_event: wd, mask, cookie, len


class _Watch:
    """inotify on every directory of the cgroup tree, read by a thread of
    its own: a cgroup is learned when made, however soon it is removed.
    A new directory is watched, then walked for what was made in it before
    the watch was in place."""

    def __init__(self, root: str, learn, rescan):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._learn, self._rescan = learn, rescan
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        self._dirs: dict[int, str] = {}     # watch descriptor -> directory
        self._full = False                  # the watch limit was reached
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._add_tree(root)
        self._thread = threading.Thread(target=self._run, name="uringwatch-cgroups",
                                        daemon=True)
        self._thread.start()

    def _add_tree(self, top: str) -> None:
        for path, dirs, _ in os.walk(top):
            if not self._add(path):
                dirs.clear()
            self._learn(path)

    def _add(self, path: str) -> bool:
        if self._full:
            return False
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), _IN_CREATE)
        if wd < 0:
            err = ctypes.get_errno()
            if err == 28:       # ENOSPC: past fs.inotify.max_user_watches
                self._full = True
                log.warning("inotify watch limit reached: newer cgroups are found by "
                            "rescans only")
            return False
        self._dirs[wd] = path
        return True

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while all(fd != self._stop_r for fd, _ in poller.poll()):
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                continue
            self._events(data)

    def _events(self, data: bytes) -> None:
        pos = 0
        while pos + _IN_EVENT.size <= len(data):
            wd, mask, _, n = _IN_EVENT.unpack_from(data, pos)
            name = data[pos + _IN_EVENT.size:pos + _IN_EVENT.size + n].split(b"\0", 1)[0]
            pos += _IN_EVENT.size + n
            if mask & _IN_Q_OVERFLOW:       # events were lost: walk it all
                self._rescan()
            elif mask & _IN_IGNORED:        # the directory is gone
                self._dirs.pop(wd, None)
            elif mask & _IN_CREATE and mask & _IN_ISDIR and wd in self._dirs:
                self._add_tree(os.path.join(self._dirs[wd], os.fsdecode(name)))

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join()
        for fd in (self._fd, self._stop_r, self._stop_w):
            os.close(fd)
