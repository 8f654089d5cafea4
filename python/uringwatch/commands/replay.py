"""`uringwatch replay`: recordings back as the live output, anywhere."""

from __future__ import annotations

import datetime
import json
import re
import sys
import time

import msgspec

from ..outputs import ocsf
from .. import screen
from ..exitcodes import DUMP_PROBLEMS, EXIT_OK, EXIT_USAGE
from .failures import UNREADABLE, unreadable
from ..record.filters import add_options as add_filter_options, from_args
from ..recordings.replay import Reader
from ..record.reports import ReplayStats

PROGRESS_MIN_BYTES = 16 << 20


def add_parser(commands) -> None:
    """`uringwatch replay`, a command of cli.parser()."""
    problems = ", ".join(f"{code} {what}" for code, what in DUMP_PROBLEMS.items())
    ap = commands.add_parser(
        "replay", help="print a recording; no root, BPF or libbpf needed",
        description=f"Print recorded events as `uringwatch` does live. Exit codes: "
                    f"{problems} (see README).")
    ap.add_argument("files", nargs="+", metavar="FILE")
    ap.add_argument("--json", action="store_true", help="print JSON Lines")
    ocsf.add_format_option(ap)
    ap.add_argument("--stats", action="store_true",
                    help="a summary instead of events (with --json: one object)")
    add_filter_options(ap, live=False)
    ap.add_argument("--since", metavar="TIME", help="epoch seconds or ISO 8601")
    ap.add_argument("--until", metavar="TIME", help="epoch seconds or ISO 8601")
    ap.set_defaults(run=run, parser=ap)


_EPOCH_SECONDS = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _time_ns(text: str | None) -> int | None:
    """--since/--until: epoch seconds, else ISO 8601 (ValueError if neither)."""
    if text is None:
        return None
    if _EPOCH_SECONDS.fullmatch(text):
        return int(float(text) * 1e9)
    dt = datetime.datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return int(dt.timestamp() * 1e9)


def _progress(reader: Reader, batches):
    """Pass batches of events through, drawing a progress line on a terminal."""
    if not sys.stderr.isatty() or reader.total_bytes < PROGRESS_MIN_BYTES:
        yield from batches
        return
    last, n = 0.0, 0
    for batch in batches:
        n += len(batch)
        yield batch
        if time.monotonic() - last > 0.25:
            last = time.monotonic()
            pct = 100 * reader.done_bytes // max(reader.total_bytes, 1)
            print(f"\ruringwatch: replay {pct:3d}%  {n} events", end="", file=sys.stderr)
    print("\r\033[K", end="", file=sys.stderr)


def run(args) -> int:
    try:
        reader = Reader(args.files, from_args(args, args.cgroup), _time_ns(args.since),
                        _time_ns(args.until))
    except (ValueError, OSError) as e:
        args.parser.print_usage(sys.stderr)
        screen.error(e)
        return EXIT_USAGE
    try:
        reader.check()      # a file that can't be replayed at all: said before any output
        if args.stats:      # calls counted on the records' headers: nothing decoded
            report = ReplayStats(**msgspec.structs.asdict(reader.stats()),
                                 drops=reader.drops(),
                                 drops_by_process=reader.process_drops(),
                                 drops_by_aggregate=reader.aggregate_drops())
            print(json.dumps(msgspec.to_builtins(report)) if args.json
                  else _stats_text(report))
        else:
            writer = ocsf.writer(args, sys.stdout, hostname=lambda: reader.meta.hostname)
            batches = reader.json_batches() if args.json else reader.batches()
            for batch in _progress(reader, batches):
                writer.write(batch)
        reader.raise_problems()
    except UNREADABLE as e:
        return unreadable(e)
    return EXIT_OK


def _stats_text(r: ReplayStats) -> str:
    lines = [f"events {r['events']}, TOCTOU changes {r['toctou_changed']}, "
             f"errors {sum(r['errors'].values())}"]
    for title, key in (("by opcode", "by_opcode"), ("by process", "by_process"),
                       ("errors", "errors"),
                       ("coalesced into repeat records, by process", "coalesced_by_process"),
                       ("drops (recorded counters)", "drops")):
        if r[key]:
            lines.append(f"{title}:")
            show = _process if key.endswith("by_process") else str
            lines += [f"  {v:>10}  {show(k)}" for k, v in r[key].items()]
    if r["drops_by_process"]:
        lines.append("drops by process (recorded counters):")
        lines += [f"  {_process(k)}: " + ", ".join(f"{c}={n}" for c, n in v.items())
                  for k, v in r["drops_by_process"].items()]
    if r["drops_by_aggregate"]:
        lines.append("drops by aggregate, uid and cgroup id (recorded counters):")
        lines += [f"  uid {k.replace(' ', ' cgroup ', 1)}: " + ", ".join(
                  f"{c}={n}" for c, n in v.items()) for k, v in r["drops_by_aggregate"].items()]
    return "\n".join(lines)


def _process(key: str) -> str:
    """A "pid comm" key with the comm escaped (screen.py)."""
    pid, _, comm = key.partition(" ")
    return f"{pid} {screen.escape(comm)}"
