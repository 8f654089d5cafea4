"""Printing events: bcc-style fixed columns, or JSON Lines."""

from __future__ import annotations

import os
import select
import time
from typing import IO

import msgspec

from .events import AnyEvent, Event, Repeat
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


def summary(ev: Event, limit: int = 60) -> str:
    """A short view of the payload for the table's last column."""
    p = ev.payload
    if p is None:
        return ""
    fields = msgspec.structs.asdict(p)
    parts = []
    for k, v in fields.items():
        if k in ("truncated", "unreadable") or v is None or v == "":
            continue
        if k == "fds" and isinstance(v, list):
            v = "[" + ",".join(_SPECIAL_FDS.get(fd, str(fd)) for fd in v[:8]) + \
                (",…" if len(v) > 8 else "") + "]"
        elif isinstance(v, list) and len(v) > 4:
            v = f"[{len(v)} items]"
        elif isinstance(v, list):
            v = "[" + ",".join(_item(x) for x in v) + "]"
        parts.append(f"{k}={v}")
    if p.unreadable:
        parts.append("UNREADABLE:" + ",".join(p.unreadable))
    if ev.toctou and ev.toctou.changed:
        parts.append("TOCTOU:" + ",".join(ev.toctou.changes))
    text = " ".join(parts)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _clock(ts: int) -> str:
    t = time.strftime("%H:%M:%S", time.localtime(ts // 1_000_000_000))
    return t + f".{ts // 1000 % 1_000_000:06d}"[:4]


def row(ev: AnyEvent) -> str:
    t = _clock(ev.ts)
    ret = ev.error if ev.error else str(ev.ret)
    if isinstance(ev, Repeat):
        return (f"{t:<12} {ev.pid:>7} {ev.tid:>7} {ev.comm:<16.16} {_fd(ev):>5} "
                f"{ev.opcode_name:<26.26} {'':>5} {ret:>8} {'':>8} "
                f"repeated {ev.count}x more, last at {_clock(ev.last_ts)}")
    return (f"{t:<12} {ev.pid:>7} {ev.tid:>7} {ev.comm:<16.16} {_fd(ev):>5} "
            f"{ev.opcode_name:<26.26} {ev.nr_args:>5} {ret:>8} "
            f"{ev.duration_ns / 1000:>8.1f} {summary(ev)}")


class WholeWriter:
    """Writes bytes to a file descriptor whole: a short write is continued.
    With `stop` (cli._Stop) a first signal changes nothing here (the caller
    stops after the batch); a second ends the write at the next `unit`
    boundary (end of a line; without a unit, the end of the data); a third
    at once, leaving a unit cut. Only the wait for room is interrupted,
    never a write, so what was written is known exactly."""

    def __init__(self, fd: int, stop=None):
        self.fd = fd
        self.stop = stop
        self._poll = select.poll()
        self._poll.register(fd, select.POLLOUT)
        if stop is not None:
            self._poll.register(stop.wakeup_fd, select.POLLIN)

    def _limit(self, data, done: int, unit: bytes | None) -> int:
        signals = self.stop.signals if self.stop is not None else 0
        if signals < 2:
            return len(data)
        if signals >= 3 or done == 0 or (unit and data[done - 1] == unit[0]):
            return done
        return data.index(unit, done) + 1 if unit else len(data)

    def write(self, data, unit: bytes | None = b"\n") -> int:
        """Bytes written: all of data, unless signals stopped it, which then
        raises KeyboardInterrupt with `.written` set."""
        view, done = memoryview(data), 0
        try:
            while done < (limit := self._limit(data, done, unit)):
                ready = dict(self._poll.poll())
                if self.stop is not None and self.stop.wakeup_fd in ready:
                    self.stop.drain_wakeup()
                    continue
                # room for at least one byte: this write can't block before
                # it has written some, so a signal only makes it return short
                done += os.write(self.fd, view[done:limit])
        finally:
            view.release()
        if done < len(data):
            stopped = KeyboardInterrupt("stopped by signals mid-write")
            stopped.written = done
            raise stopped
        return done


class Writer:
    """Writes events to a stream, as a table or JSON Lines, in batches,
    whole (WholeWriter), and counts the whole lines written: `lines`."""

    def __init__(self, out: IO[str], json: bool, stop=None):
        out.flush()
        self.json = json
        self.lines = 0
        self._out = WholeWriter(out.fileno(), stop)
        self._enc = msgspec.json.Encoder()
        self._buf = bytearray()
        if not json:
            self._out.write((HEADER + "\n").encode())

    def write(self, events: list[AnyEvent]) -> None:
        buf = self._buf
        buf.clear()
        if self.json:
            for ev in events:
                self._enc.encode_into(ev, buf, -1)
                buf.extend(b"\n")
        else:
            buf.extend("".join(row(ev) + "\n" for ev in events).encode())
        try:
            self._out.write(buf)
        except KeyboardInterrupt as e:
            self.lines += buf.count(b"\n", 0, e.written)
            raise
        self.lines += len(events)


def schema_text() -> str:
    """The JSON Schema of one line of `--json` output."""
    schema = msgspec.json.schema(AnyEvent)
    return msgspec.json.format(msgspec.json.encode(schema), indent=2).decode() + "\n"
