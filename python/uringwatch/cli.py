"""The uringwatch command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from .libbpf import LibbpfError
from .output import Writer
from .tracer import Tracer, TracerError

EXAMPLES = """\
examples:
  uringwatch                     # trace every io_uring_register call, as a table
  uringwatch --json              # JSON Lines, one event per line
  uringwatch -p 1234             # only process 1234
  uringwatch --count 3           # stop after three events
  uringwatch --duration 10       # stop after ten seconds
"""

# exit codes
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PRIVILEGE = 0, 1, 2, 77


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="uringwatch", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Trace io_uring_register(2) calls with their arguments decoded.")
    ap.add_argument("--json", action="store_true", help="print JSON Lines")
    ap.add_argument("-p", "--pid", type=int, default=0, help="trace this process only")
    ap.add_argument("--count", type=int, default=0, metavar="N", help="stop after N events")
    ap.add_argument("--duration", type=float, default=0, metavar="SECONDS",
                    help="stop after this many seconds")
    ap.add_argument("--cap", type=int, default=64, metavar="N",
                    help="elements captured per array (1..1024, default 64)")
    ap.add_argument("--generic", action="store_true",
                    help="capture only the first 64 bytes at arg, undecoded (cheaper)")
    ap.add_argument("--btf", metavar="PATH", help="kernel BTF file, for kernels "
                    "without /sys/kernel/btf/vmlinux")
    ap.add_argument("-v", "--verbose", action="store_true", help="show libbpf's log")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR,
                        format="uringwatch: %(message)s")
    try:
        tracer = Tracer(pid=args.pid, cap=args.cap, btf_path=args.btf, generic=args.generic)
        return trace(tracer, args)
    except TracerError as e:
        print(f"uringwatch: {e}", file=sys.stderr)
        return EXIT_PRIVILEGE if "needs root" in str(e) else EXIT_ERROR
    except LibbpfError as e:
        print(f"uringwatch: {e}", file=sys.stderr)
        for line in e.log_lines[-5:]:
            print(f"uringwatch:   libbpf: {line}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK


def _stop(signum, frame):
    raise KeyboardInterrupt


def trace(tracer: Tracer, args) -> int:
    signal.signal(signal.SIGTERM, _stop)
    writer = Writer(sys.stdout, args.json)
    seen = 0
    deadline = time.monotonic() + args.duration if args.duration else None
    with tracer:
        f = tracer.features
        print(f"uringwatch: tracing via {' + '.join(f['hooks'])}; "
              f"ppid/namespaces: {'BTF task reads' if f['task_btf'] else 'unavailable'}; "
              f"TOCTOU re-read: {'bpf_loop' if f['bpf_loop'] else 'unavailable'}",
              file=sys.stderr)
        def emit(events) -> bool:
            nonlocal seen
            if args.count:
                events = events[:args.count - seen]
            if events:
                writer.write(events)
                seen += len(events)
            return bool(args.count) and seen >= args.count

        try:
            while not emit(tracer.poll()):
                if deadline and time.monotonic() >= deadline:
                    break
        except KeyboardInterrupt:
            emit(tracer.poll(0))   # what was queued before the signal
        finally:
            print_stats(tracer.stats(), seen)
    return EXIT_OK


def print_stats(stats: dict[str, int], shown: int) -> None:
    lost = ", ".join(f"{k}={v}" for k, v in stats.items() if k != "emitted")
    print(f"uringwatch: {shown} events shown, {stats['emitted']} records emitted; "
          f"{lost}", file=sys.stderr)


