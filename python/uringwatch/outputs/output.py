"""Printing events: bcc-style fixed columns, or JSON Lines."""

from __future__ import annotations

import inspect
import itertools
import os
import select
import time
from typing import IO, NamedTuple

import msgspec

from ..record.events import Action, AnyEvent, Event, Finding, Op, Repeat, Ring, RingBefore
from ..record.identity import MemoryIdentity, label
from ..record.payloads import Iovec, Restriction
from ..screen import escape
from ..record.targets import describe

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
    return f"{m.backing}:{escape(m.path)}" if m.path else (m.backing or "?")


def arg_text(ev: Event, limit: int | None = None) -> str:
    """A short view of the payload for the table's last column, each fd
    with what it was at the call (fds=[4:/etc/shadow,5:tcp 127.0.0.1:443]).
    Lists show their first 8 (memory 4) items, each name whole and escaped
    (screen.py): a cut at a fixed width would hide a long path's leaf and
    could split an escape. limit cuts the text anyway, marked with "…"."""
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
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def _clock(ts: int) -> str:
    t = time.strftime("%H:%M:%S", time.localtime(ts // 1_000_000_000))
    return t + f".{ts // 1000 % 1_000_000:06d}"[:4]


def _ring_row(ev: Ring) -> str:
    ret = ev.error if ev.error else str(ev.ret)
    flags = ",".join(ev.flag_names) or "-"
    sq = f" sq_thread_idle={ev.sq_thread_idle}" if ev.sq_thread_idle is not None else ""
    return (f"{_clock(ev.ts):<12} {ev.pid:>7} {ev.tid:>7} {escape(ev.comm):<16} {'':>5} "
            f"{'SETUP':<26} {ev.entries:>5} {ret:>8} {ev.duration_ns / 1000:>8.1f} "
            f"ring={ev.ring_id} flags={flags}{sq}")


def _used_file(uses) -> str:
    """What the registration named at the slot: its path (or socket, kind),
    else the fd it was registered from; nothing if no registration was seen."""
    if uses is None:
        return ""
    f = uses.file_identity
    if f is not None and (f.path or f.socket or f.kind):
        return "=" + label(f)
    fd = uses.file.fd if uses.file else None
    return f"=fd{fd}" if fd is not None else ""


def _target(f) -> str:
    """What an fd or fixed slot named: its path, or a socket by its peer
    (else its local address), or why not."""
    s = f.socket
    if s is not None and s.peer:
        proto = {6: "tcp", 17: "udp"}.get(s.protocol) if s.family in ("inet", "inet6") else None
        return f"{proto or s.family + '/' + s.type} {s.peer}"
    if f.error is None:
        return label(f)
    return ("" if f.role == "slot" else "fd:") + f.error.split(":")[0]


def _op_row(ev: Op) -> str:
    # a fixed file's target is the slot's file at submission: in place of
    # what the registration named there
    slot = ev.fixed_file is not None and ev.target is not None
    used = [_target(ev.target)] if ev.target is not None and not slot else []
    if ev.cmd_op is not None:
        used.append(f"cmd_op={ev.cmd_op:#x}")
    if slot:
        used.append(f"file[{ev.fixed_file}]={_target(ev.target)}")
    elif ev.fixed_file is not None:
        used.append(f"file[{ev.fixed_file}]" + _used_file(ev.uses))
    if ev.target_in is not None:        # SPLICE/TEE: what they read from
        used.append(f"from={_target(ev.target_in)}")
    if ev.target_ring is not None:      # MSG_RING: the ring it sends to
        used.append(f"-> ring={ev.target_ring}")
    elif ev.target_ring_error is not None:
        used.append("-> not a ring")
    if ev.destination is not None:      # a send's: its address, the protocol's in target
        used.append("-> " + ev.destination.split(" ", 1)[-1])
    elif ev.destination_error is not None:
        used.append("-> " + ev.destination_error.split(":")[0])    # EFAULT
    if ev.buffer_index is not None:
        used.append(f"buf[{ev.buffer_index}]")
    if ev.buffer_group is not None:
        used.append(f"group={ev.buffer_group}")
    if ev.personality_cred:
        pid = ev.uses.personality if ev.uses else None
        used.append(f"personality={pid if pid is not None else '?'}")
    if ev.creds_differ:
        used.append(f"CREDS:euid {ev.euid}->{ev.personality_cred.euid}")
    who = " sqpoll" if ev.sq_thread else ""
    # RET: a filter's (or restrictions') refusal, in place of the reason
    ret = "DENIED" if ev.denied else ev.reason
    return (f"{_clock(ev.ts):<12} {ev.pid:>7} {ev.tid:>7} {escape(ev.comm):<16} {'':>5} "
            f"{'OP_' + ev.opcode_name:<26.26} {ev.count:>5} {ret:>8} {'':>8} "
            f"ring={ev.ring_id}{who} {' '.join(used)}")


def _before_row(ev: RingBefore) -> str:
    files = " ".join(f"{f.role.removeprefix('fds')}={label(f)}" for f in ev.files)
    bufs = " ".join(f"[{b.index}]={b.base:#x}+{b.len}" for b in ev.buffers)
    sq = f" sq_thread={ev.sq_thread}" if ev.sq_thread is not None else ""
    return (f"{_clock(ev.ts):<12} {ev.pid:>7} {'':>7} {escape(ev.comm):<16} {ev.fd:>5} "
            f"{'RING_BEFORE':<26} {len(ev.holders):>5} {'':>8} {'':>8} "
            f"ring={ev.ring_id}{sq} files={ev.files_registered} {files} "
            f"bufs={len(ev.buffers)} {bufs}".rstrip())


def _action_row(ev: Action) -> str:
    ret = "?" if ev.result is None else ev.error or str(ev.result)
    ret = "DENIED" if ev.denied else ret        # -EACCES from a BPF filter
    dur = f"{ev.duration_ns / 1000:>8.1f}" if ev.duration_ns is not None else f"{'':>8}"
    who = " sqpoll" if ev.sq_thread else ""
    return (f"{_clock(ev.ts):<12} {ev.pid:>7} {ev.tid:>7} {escape(ev.comm):<16} {'':>5} "
            f"{ev.opcode_name:<26.26} {'':>5} {ret:>8} {dur} "
            f"{ev.opcode_name} {describe(ev, escape)} ring={ev.ring_id}{who}")


def _finding_row(ev: Finding) -> str:
    where = f" ring={ev.ring_id}" if ev.ring_id else ""
    where += f" container={ev.container_id[:12]}" if ev.container_id else ""
    return (f"{_clock(ev.ts):<12} {ev.pid:>7} {'':>7} {escape(ev.comm):<16} {'':>5} "
            f"{'FINDING ' + ev.severity.upper():<26} {len(ev.evidence):>5} {'':>8} {'':>8} "
            f"{ev.rule} ({ev.technique}): {ev.title}{where}")


def row(ev: AnyEvent) -> str:
    if isinstance(ev, Finding):
        return _finding_row(ev)
    if isinstance(ev, Ring):
        return _ring_row(ev)
    if isinstance(ev, RingBefore):
        return _before_row(ev)
    if isinstance(ev, Action):
        return _action_row(ev)
    if isinstance(ev, Op):
        return _op_row(ev)
    t = _clock(ev.ts)
    ret = ev.error if ev.error else str(ev.ret)
    if isinstance(ev, Repeat):
        return (f"{t:<12} {ev.pid:>7} {ev.tid:>7} {escape(ev.comm):<16} {_fd(ev):>5} "
                f"{ev.opcode_name:<26.26} {'':>5} {ret:>8} {'':>8} "
                f"repeated {ev.count}x more, last at {_clock(ev.last_ts)}")
    return (f"{t:<12} {ev.pid:>7} {ev.tid:>7} {escape(ev.comm):<16} {_fd(ev):>5} "
            f"{ev.opcode_name:<26.26} {ev.nr_args:>5} {ret:>8} "
            f"{ev.duration_ns / 1000:>8.1f} {arg_text(ev)}")


class Written(NamedTuple):
    """What WholeWriter.write() wrote: `count` bytes, and whether that is
    the whole of the data (False: signals stopped it, nothing more should
    follow)."""
    count: int
    whole: bool


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

    def write(self, data, unit: bytes | None = b"\n") -> Written:
        """All of data written, or as much as signals let through."""
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
        return Written(done, done == len(data))


# lines joined into one buffer per write: a whole batch's would be one more
# copy of it (4,096 JSON lines: 3.9 MB) at the tracer's peak memory
WRITE_LINES = 256


class Writer:
    """Writes events to a stream, as a table or JSON Lines, in batches,
    whole (WholeWriter), and counts the whole lines written: `lines`."""

    def __init__(self, out: IO[str], json: bool, stop=None):
        out.flush()
        self.json = json
        self.lines = 0
        self._out = WholeWriter(out.fileno(), stop)
        self._enc = msgspec.json.Encoder()
        if not json:
            self._out.write((HEADER + "\n").encode())

    def write(self, events: list) -> bool:
        """events: Events, or with JSON also their lines (bytes) as
        decode_many(lines=True) makes them. False when signals stopped the
        write (`lines` counts the whole lines that got out)."""
        for at in range(0, len(events), WRITE_LINES):
            if not self._write(events[at:at + WRITE_LINES]):
                return False
        return True

    def _write(self, events: list) -> bool:
        if self.json:
            buf = self._json_lines(events)
        else:
            buf = "".join(row(ev) + "\n" for ev in events).encode()
        got = self._out.write(buf)
        self.lines += len(events) if got.whole else buf.count(b"\n", 0, got.count)
        return got.whole

    def _json_lines(self, items: list) -> bytes:
        """One buffer: lines as they are, each run of events between them
        encoded at once (encode_lines on a batch is 3x cheaper per line
        than encode_into per event)."""
        return b"".join(b"".join(run) if lines else self._enc.encode_lines(list(run))
                        for lines, run in itertools.groupby(items, _is_line))


def _is_line(item) -> bool:
    return item.__class__ is bytes


def schema_text() -> str:
    """The JSON Schema of one line of `--json` output."""
    schema = _cleaned(msgspec.json.schema(AnyEvent))
    return msgspec.json.format(msgspec.json.encode(schema), indent=2).decode() + "\n"


def _cleaned(node):
    """The schema with each description as inspect.cleandoc leaves it:
    msgspec 0.23 cleans the docstrings it copies, earlier versions keep
    their indentation, and the text must not depend on which is installed."""
    if isinstance(node, dict):
        return {k: inspect.cleandoc(v) if k == "description" and isinstance(v, str)
                else _cleaned(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_cleaned(v) for v in node]
    return node
