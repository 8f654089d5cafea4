"""Printing events: bcc-style fixed columns, or JSON Lines."""

from __future__ import annotations

import time
from typing import IO

import msgspec

from .events import Event
from .identity import MemoryIdentity, label
from .payloads import Iovec, Restriction

HEADER = (f"{'TIME':<12} {'PID':>7} {'TID':>7} {'COMM':<16} {'FD':>5} "
          f"{'OPCODE':<26} {'NR':>5} {'RET':>8} {'DUR(us)':>8} ARG")
_SPECIAL_FDS = {-1: "sparse", -2: "skip"}  # IORING_REGISTER_FILES_SKIP is -2


def _fd(ev: Event) -> str:
    return f"r{ev.fd}" if ev.registered_ring else str(ev.fd)


def _item(v) -> str:
    if isinstance(v, Restriction):
        return f"{v.kind}:{v.value_name}"
    if isinstance(v, Iovec):
        return f"{v.base:#x}+{v.len}"
    return str(v)


def _memory(m: MemoryIdentity) -> str:
    return f"{m.backing}:{m.path}" if m.path else (m.backing or "?")


def summary(ev: Event, limit: int = 100) -> str:
    """A short view of the payload for the table's last column, each fd
    with what it was at the call (fds=[4:/etc/shadow,5:tcp 127.0.0.1:443])."""
    p = ev.payload
    if p is None:
        return ""
    fields = msgspec.structs.asdict(p)
    names = {f.role: label(f) for f in ev.files or () if f.error is None}
    parts = []
    for k, v in fields.items():
        if k in ("truncated", "unreadable") or v is None or v == "":
            continue
        if k == "fds" and isinstance(v, list):
            v = "[" + ",".join(_SPECIAL_FDS.get(fd, f"{fd}:{names[f'fds[{i}]']}"
                                                if f"fds[{i}]" in names else str(fd))
                               for i, fd in enumerate(v[:8])) + (",…" if len(v) > 8 else "") + "]"
        elif k in ("eventfd", "src_fd", "fd") and k in names:
            v = f"{v}:{names[k]}"
        elif isinstance(v, list) and len(v) > 4:
            v = f"[{len(v)} items]"
        elif isinstance(v, list):
            v = "[" + ",".join(_item(x) for x in v) + "]"
        parts.append(f"{k}={v}")
    if ev.memory:
        parts.append("mem=[" + ",".join(_memory(m) for m in ev.memory[:4]) +
                     (",…" if len(ev.memory) > 4 else "") + "]")
    if ev.cred:
        parts.append(f"cred=uid:{ev.cred.uid},euid:{ev.cred.euid},caps:{ev.cred.cap_effective:#x}")
    if p.unreadable:
        parts.append("UNREADABLE:" + ",".join(p.unreadable))
    if ev.toctou and ev.toctou.changed:
        parts.append("TOCTOU:" + ",".join(ev.toctou.changes))
    text = " ".join(parts)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def row(ev: Event) -> str:
    t = time.strftime("%H:%M:%S", time.localtime(ev.ts // 1_000_000_000))
    t += f".{ev.ts // 1000 % 1_000_000:06d}"[:4]
    ret = ev.error if ev.error else str(ev.ret)
    return (f"{t:<12} {ev.pid:>7} {ev.tid:>7} {ev.comm:<16.16} {_fd(ev):>5} "
            f"{ev.opcode_name:<26.26} {ev.nr_args:>5} {ret:>8} "
            f"{ev.duration_ns / 1000:>8.1f} {summary(ev)}")


class Writer:
    """Writes events to a stream, as a table or JSON Lines, in batches."""

    def __init__(self, out: IO[str], json: bool):
        self.out = out
        self.json = json
        self._enc = msgspec.json.Encoder()
        self._buf = bytearray()
        if not json:
            out.write(HEADER + "\n")

    def write(self, events: list[Event]) -> None:
        if self.json:
            self._buf.clear()
            for ev in events:
                self._enc.encode_into(ev, self._buf, -1)
                self._buf.extend(b"\n")
            self.out.buffer.write(self._buf) if hasattr(self.out, "buffer") \
                else self.out.write(self._buf.decode())
        else:
            self.out.write("".join(row(ev) + "\n" for ev in events))
        self.out.flush()


def schema_text() -> str:
    """The JSON Schema of one line of `--json` output."""
    schema = msgspec.json.schema(Event)
    return msgspec.json.format(msgspec.json.encode(schema), indent=2).decode() + "\n"
