#!/usr/bin/env python3
"""A container agent: trace one container's (or cgroup's) io_uring_register
calls and forward them as JSON Lines to a local Unix socket.

The tracer runs on the asyncio loop (woken by the ring buffer's epoll fd);
a bounded queue sits between it and the socket. When the socket's reader
falls behind, `writer.drain()` blocks the sender, the queue fills, and new
events are dropped and counted, so memory stays bounded and nothing is lost
without being said. Counters go to stderr at exit.

    agent.py --container 3f2a9c --socket /run/collector.sock
    agent.py --cgroup /system.slice/foo.service --socket /tmp/s
"""

import argparse
import asyncio
import signal
import sys

import msgspec

from uringwatch import Filters, Tracer, TracerError
from uringwatch.containers import CgroupResolver


async def forward(tracer: Tracer, socket: str, queue_size: int, stats: dict) -> None:
    queue: asyncio.Queue = asyncio.Queue(queue_size)
    _, writer = await asyncio.open_unix_connection(socket)
    enc = msgspec.json.Encoder()

    async def send():
        while True:
            ev = await queue.get()
            writer.write(enc.encode(ev) + b"\n")
            await writer.drain()          # backpressure from the reader
            stats["sent"] += 1

    sender = asyncio.create_task(send())
    try:
        async for ev in tracer.aevents():
            try:
                queue.put_nowait(ev)
            except asyncio.QueueFull:
                stats["dropped"] += 1
    finally:
        sender.cancel()
        writer.close()


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
    stats = {"sent": 0, "dropped": 0}
    try:
        tracer = Tracer(filters(args)).open()
    except (TracerError, OSError) as e:
        print(f"agent: {e}", file=sys.stderr)
        return 1
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    print("agent: forwarding", file=sys.stderr, flush=True)
    task = asyncio.create_task(forward(tracer, args.socket, args.queue, stats))
    try:
        await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        kernel = tracer.stats()
        tracer.close()
        print(f"agent: sent={stats['sent']} dropped={stats['dropped']} "
              f"ring_full={kernel['ring_full']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
