#!/usr/bin/env python3
"""A container agent: trace one container's (or cgroup's) io_uring_register
calls and forward them as JSON Lines to a local Unix socket.

The tracer runs on the asyncio loop (woken by the ring buffer's epoll fd);
a bounded queue sits between it and the socket. When the socket's reader
falls behind, the sender waits, the queue fills, and new events are dropped
and counted, so memory stays bounded and nothing is lost without being said.

Lines go out whole: the sender continues short sends and knows exactly how
much of each line the socket took. The first SIGINT/SIGTERM stops tracing
and sends what is queued, for up to GRACE seconds; a second stops at once.
At exit, stderr says where every event went: sent (whole lines), dropped
(queue full), unsent (queued at stop), cut (a line the socket took only part
of, at most one, the collector's last).

    agent.py --container 3f2a9c --socket /run/collector.sock
    agent.py --cgroup /system.slice/foo.service --socket /tmp/s
"""

import argparse
import asyncio
import signal
import socket as sockets
import sys

import msgspec

from uringwatch import Filters, Tracer, TracerError
from uringwatch.system.containers import CgroupResolver

GRACE = 2.0     # seconds to send what is queued after the first signal


class Sender:
    """Sends lines over a non-blocking socket, continuing short sends;
    `done` is how much of the line in flight the socket took."""

    def __init__(self, sock: sockets.socket, stats: dict):
        self.sock, self.stats = sock, stats
        self.line, self.done = b"", 0

    async def send(self, line: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.line, self.done = line, 0
        view = memoryview(line)
        while self.done < len(line):
            try:
                self.done += self.sock.send(view[self.done:])
            except BlockingIOError:
                room = loop.create_future()
                loop.add_writer(self.sock, room.set_result, None)
                try:
                    await room
                finally:
                    loop.remove_writer(self.sock)
        self.line = b""
        self.stats["sent"] += 1

    def settle(self, queued: int) -> None:
        """At exit: the line in flight is cut if the socket took part of it."""
        in_flight = bool(self.line)
        self.stats["cut"] = int(in_flight and self.done > 0)
        self.stats["unsent"] = queued + int(in_flight and self.done == 0)


async def forward(tracer: Tracer, sock: sockets.socket, queue_size: int, stats: dict,
                  stopping: asyncio.Event) -> None:
    queue: asyncio.Queue = asyncio.Queue(queue_size)
    enc = msgspec.json.Encoder()
    sender = Sender(sock, stats)

    def put(ev) -> None:
        try:
            queue.put_nowait(enc.encode(ev) + b"\n")
        except asyncio.QueueFull:
            stats["dropped"] += 1

    async def read():
        async for ev in tracer.aevents():
            put(ev)

    async def send():
        while True:
            await sender.send(await queue.get())
            queue.task_done()

    reading, sending = asyncio.create_task(read()), asyncio.create_task(send())
    try:
        await stopping.wait()
        reading.cancel()
        tracer.detach()              # what is queued in the kernel, then the last repeats
        while events := tracer.poll(0):
            for ev in events:
                put(ev)
        try:
            await asyncio.wait_for(queue.join(), GRACE)
        except asyncio.TimeoutError:
            pass
    finally:
        reading.cancel()
        sending.cancel()
        sender.settle(queue.qsize())


def filters(args) -> Filters:
    r = CgroupResolver()
    ids = r.container_cgroups(args.container) if args.container else r.ids(args.cgroup)
    if not ids:
        raise TracerError(f"no cgroup belongs to container {args.container!r}")
    return Filters(cgroups=frozenset(ids))


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--container", help="container id or unique prefix")
    who.add_argument("--cgroup", help="cgroup v2 path below the cgroup2 root")
    ap.add_argument("--socket", required=True, help="Unix socket to forward to")
    ap.add_argument("--queue", type=int, default=10000, help="events held while the "
                    "socket is slow (default 10000)")
    args = ap.parse_args()
    stats = {"sent": 0, "dropped": 0, "unsent": 0, "cut": 0}
    try:
        tracer = Tracer(filters(args)).open()
    except (TracerError, OSError) as e:
        print(f"agent: {e}", file=sys.stderr)
        return 1
    try:
        sock = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
        sock.connect(args.socket)
        sock.setblocking(False)
    except OSError as e:
        tracer.close()
        print(f"agent: {args.socket}: {e}", file=sys.stderr)
        return 1
    stopping = asyncio.Event()
    task = asyncio.create_task(forward(tracer, sock, args.queue, stats, stopping))

    def on_signal():
        if stopping.is_set():
            task.cancel()           # the second signal: at once
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, on_signal)
    print("agent: forwarding", file=sys.stderr, flush=True)
    try:
        await asyncio.wait([task])
    finally:
        kernel = tracer.stats()
        tracer.close()
        sock.close()
        print(f"agent: sent={stats['sent']} dropped={stats['dropped']} "
              f"unsent={stats['unsent']} cut={stats['cut']} "
              f"ring_full={kernel['ring_full']} budget={kernel['budget']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
