"""The uringwatch command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from typing import get_args

import msgspec

from . import export, findings as findings_cli, policy as policy_cli, replay as replay_cli
from ..probe import hooks
from ..record import layout
from ..outputs import ocsf
from .. import screen
from ..system.containers import CgroupResolver
from ..exitcodes import EXIT_ERROR, EXIT_OK, EXIT_PRIVILEGE, EXIT_USAGE
from ..record.filters import Filters, from_args
from ..record.filters import add_options as add_filter_options
from ..system import libbpf
from ..system.libbpf import LibbpfError
from ..outputs.output import schema_text
from ..recordings.recorder import Recorder, file_mode, group_id
from ..errors import PrivilegeError, TracerError, os_message
from ..system.host import check_privileges, tracefs
from ..probe.options import FAIR_BURST, FAIR_RATE, HookOption, OpsOption, ResolveOption
from ..live.reader import BATCH
from ..live.tracer import Tracer

EXAMPLES = """\
examples:
  uringwatch                     # trace every io_uring_register call, as a table
  uringwatch --json              # JSON Lines, one event per line
  uringwatch -p 1234,1235        # only these processes
  uringwatch --container 3f2a    # only this container (id or unique prefix)
  uringwatch --opcode FILES,BUFFERS --failed   # failed file/buffer registrations
  uringwatch --count 3           # stop after three events
  uringwatch --duration 10       # stop after ten seconds
  uringwatch --json -w cap.uwd   # print and record at once
  uringwatch --rate 100 --burst 500   # tighter budget per process
  uringwatch record -w cap.uwd -C 100 -W 5   # 100 MB files, keep the newest 5
  uringwatch replay cap.uwd --opcode FILES --stats
  uringwatch --findings          # only findings: the rules that matched (docs/ANALYSIS.md)
  uringwatch findings cap.uwd    # findings over a recording
  uringwatch export --parquet fleet/ --findings cap.uwd   # Parquet, by host and day
"""


def parser() -> argparse.ArgumentParser:
    """`uringwatch [OPTIONS]` traces live; a command first does something
    else. Each parser's defaults name its handler (`run`) and itself
    (`parser`, whose usage a handler prints with its errors)."""
    ap = argparse.ArgumentParser(
        prog="uringwatch", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Trace io_uring_register(2) calls with their arguments decoded.\n"
                    "With no command, trace live. Each command has its own --help.")
    ap.add_argument("--version", nargs=0, action=_Version, help="print the version and exit")
    add_trace_options(ap, record=False)
    ap.set_defaults(run=run_trace, parser=ap)
    commands = ap.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    record_ap = commands.add_parser(
        "record", help="record raw records to a dump file (same options)",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Trace as `uringwatch` does, but record raw records to a dump file\n"
                    "instead of printing them (`uringwatch replay` prints them).")
    add_trace_options(record_ap, record=True)
    record_ap.set_defaults(run=run_trace, parser=record_ap)
    replay_cli.add_parser(commands)
    probe_ap = commands.add_parser(
        "probe", help="what this kernel offers and which hooks are used",
        description="What this kernel offers and what uringwatch would use; nothing is loaded.")
    probe_ap.add_argument("--json", action="store_true", help="one JSON object")
    probe_ap.set_defaults(run=lambda args: probe(args.json), parser=probe_ap)
    schema_ap = commands.add_parser(
        "schema", help="print the JSON Schema of the event stream",
        description="Print the JSON Schema of one line of --json output.")
    schema_ap.set_defaults(run=print_schema, parser=schema_ap)
    policy_cli.add_parsers(commands)
    findings_cli.add_parser(commands)
    export.add_parser(commands)
    return ap


class _Version(argparse.Action):
    """--version, its metadata read only when asked."""

    def __call__(self, parser, namespace, values, option_string=None):
        from ..version import version
        print(f"uringwatch {version()}")
        parser.exit()


def add_trace_options(ap: argparse.ArgumentParser, record: bool) -> None:
    """The options of `uringwatch` and `uringwatch record` (which must
    record, and prints nothing)."""
    if not record:
        ap.add_argument("--json", action="store_true", help="print JSON Lines")
        ocsf.add_format_option(ap)
        findings_cli.add_live_options(ap)
    w = ap.add_argument_group("recording")
    w.add_argument("-w", dest="write", metavar="FILE", required=record,
                   help="record raw records to FILE (- for stdout)")
    w.add_argument("-C", dest="rotate_mb", type=float, default=0, metavar="MEGABYTES",
                   help="start a new file (FILE.1, FILE.2, ...) past this size")
    w.add_argument("-W", dest="max_files", type=int, default=0, metavar="FILES",
                   help="with -C, keep only the newest FILES files")
    w.add_argument("--file-mode", type=file_mode, metavar="MODE",
                   help="permissions of files made (octal; default 0600, 0640 with --group)")
    w.add_argument("--group", type=group_id, metavar="NAME|GID",
                   help="group of files made")
    add_filter_options(ap, live=True)
    fair = ap.add_argument_group("fairness (per process, and per uid and cgroup, in the kernel; "
                                 "docs/ARCHITECTURE.md, Fairness)")
    fair.add_argument("--rate", type=int, default=FAIR_RATE, metavar="N",
                      help=f"records per second each process may send past the first "
                           f"call of each opcode; 0: no budget (default {FAIR_RATE})")
    fair.add_argument("--burst", type=int, default=FAIR_BURST, metavar="N",
                      help=f"records a process may send at once (default {FAIR_BURST})")
    fair.add_argument("--no-fair", dest="fair", action="store_false",
                      help="send every call: no coalescing of repeats, no budgets")
    ap.add_argument("--count", type=int, default=0, metavar="N", help="stop after N events")
    ap.add_argument("--duration", type=float, default=0, metavar="SECONDS",
                    help="stop after this many seconds")
    ap.add_argument("--cap", type=int, default=layout.DEFAULT_CAP, metavar="N",
                    help=f"elements captured per array (1..{layout.CAP_MAX}, "
                         f"default {layout.DEFAULT_CAP})")
    ap.add_argument("--generic", action="store_true",
                    help=f"capture only the first {layout.DEFAULT_SNAP_BYTES} bytes at arg, "
                         "undecoded (cheaper)")
    ap.add_argument("--rings", action="store_true",
                    help="also show rings being created and the operations they accept, "
                         "summarised: first use of each resource, then counts")
    ap.add_argument("--ops", choices=get_args(OpsOption), default="summary",
                    help="with --rings: one event per operation (all), not a summary")
    ap.add_argument("--hook", choices=get_args(HookOption), default="auto",
                    help="where to attach (default: the best this kernel has)")
    ap.add_argument("--resolve", choices=get_args(ResolveOption), default="auto",
                    help="how fds, credentials and buffers are resolved: btf (BTF-typed "
                    "reads, 6.2+), probe_read, proc (looked up later in /proc, "
                    "unverified), off (default: the best this kernel has)")
    ap.add_argument("--btf", metavar="PATH", help="kernel BTF file, for kernels "
                    "without /sys/kernel/btf/vmlinux")
    ap.add_argument("--metrics", metavar="ADDR:PORT", help="serve Prometheus metrics "
                    "at http://ADDR:PORT/metrics (needs uringwatch[metrics])")
    ap.add_argument("-v", "--verbose", action="store_true", help="show libbpf's log")


def build_filters(args) -> Filters:
    """Filters from the command line; ValueError/OSError on bad values."""
    resolver = CgroupResolver()
    cgroups = None
    if args.cgroup:
        cgroups = set()
        for c in args.cgroup:
            cgroups |= {int(c)} if c.isdigit() else resolver.ids(c)
    if args.container:
        found = resolver.container_cgroups(args.container)
        if not found:
            raise ValueError(f"no cgroup belongs to container {args.container!r}")
        cgroups = (cgroups or set()) | found
    return from_args(args, cgroups)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        # the reader went away (`| head`): nothing is lost that it wanted;
        # stdout now points nowhere, so the flush at exit can't fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(argv: list[str]) -> int:
    ap = parser()
    args, unknown = ap.parse_known_args(argv)
    # options before a command would be parsed, then silently replaced by
    # the command's own defaults
    if args.command and argv[0] != args.command:
        ap.error(f"the command goes first: uringwatch {args.command} [OPTIONS]")
    # argparse would report a command's unknown options with the top's usage
    if unknown:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.run(args)


def print_schema(args) -> int:
    sys.stdout.write(schema_text())
    return EXIT_OK


def run_trace(args) -> int:
    """`uringwatch` and `uringwatch record`."""
    record = args.command == "record"
    if not record and args.write == "-":
        args.parser.error("-w - writes the recording to stdout: use `uringwatch record -w -`")
    if (args.file_mode is not None or args.group is not None) and args.write in (None, "-"):
        args.parser.error("--file-mode and --group apply to the files of -w FILE")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR,
                        format="uringwatch: %(message)s")
    try:
        filters = build_filters(args)
    except (ValueError, OSError) as e:
        args.parser.print_usage(sys.stderr)
        screen.error(e)
        return EXIT_USAGE
    if args.metrics:
        from ..outputs.metrics import MetricsError, parse_address
        try:
            parse_address(args.metrics)
        except MetricsError as e:
            screen.error(e)
            return EXIT_USAGE
    try:
        tracer = Tracer(filters, cap=args.cap, btf_path=args.btf, generic=args.generic,
                        hook=args.hook, resolve=args.resolve,
                        rings=args.rings or args.ops == "all" or findings_cli.wanted(args),
                        ops_all=args.ops == "all",
                        fair=args.fair, rate=args.rate, burst=args.burst,
                        **findings_cli.tracer_options(args))
        return trace(tracer, args, show=not record)
    except TracerError as e:
        screen.error(e)
        return EXIT_PRIVILEGE if isinstance(e, PrivilegeError) else EXIT_ERROR
    except LibbpfError as e:
        screen.error(e)
        for line in e.log_lines[-5:]:
            print(f"uringwatch:   libbpf: {line}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:          # the recording's file
        screen.error(os_message(e))
        return EXIT_ERROR


def probe(json_out: bool) -> int:
    """Print what this host offers and what uringwatch would use."""
    try:
        check_privileges()
        tp = tracefs()
    except TracerError as e:
        tp = None
        screen.error(f"{e} (hooks not probed)")
    try:
        rep = msgspec.to_builtins(hooks.report(tp))     # as its JSON has it
    except LibbpfError as e:
        screen.error(e)
        return EXIT_ERROR
    if json_out:
        print(json.dumps(rep))
        return EXIT_OK
    for key, value in rep.items():
        if isinstance(value, dict):     # hooks, rings: one line each
            for name, v in value.items():
                v = ",".join(v) or "none" if isinstance(v, list) else \
                    {True: "yes", False: "no", None: "no"}.get(v, v)
                print(f"{key.removesuffix('s') + ' ' + name:<26} {_value(v)}")
        else:
            print(f"{key:<26} {_value(value)}")
    return EXIT_OK


def _value(v) -> str:
    """A probe value, the rest of its line: the kernel's text (release,
    lockdown mode) escaped."""
    return screen.escape(v, field=False) if isinstance(v, str) else str(v)


class _Stop:
    """SIGINT/SIGTERM ask for a stop, checked between batches, so a signal
    never lands inside a batch whose records already left the ring: the
    batch is written whole, then what is queued, then the tracer stops. A
    second signal ends the output at the next line's end, a third at once
    (e.g. while stdout is blocked): output.Writer. The handler only counts;
    the wakeup fd wakes a Writer waiting for room in a full pipe."""

    def __init__(self):
        self.signals = 0
        self.wakeup_fd, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self)

    @property
    def requested(self) -> bool:
        return self.signals > 0

    def __call__(self, signum, frame):
        self.signals += 1

    def drain_wakeup(self) -> None:
        try:
            os.read(self.wakeup_fd, 512)
        except BlockingIOError:
            pass


# what the startup line says of each identity path (layout.ResolvePath)
_IDENTITY_PATHS: dict[layout.ResolvePath, str] = {
    "btf": "btf (BTF-typed reads)", "probe_read": "probe_read",
    "proc": "proc (looked up later, unverified)", "off": "off"}


def trace(tracer: Tracer, args, show: bool = True) -> int:
    stop = _Stop()
    recorded = 0
    deadline = time.monotonic() + args.duration if args.duration else None
    with tracer:
        recorder = Recorder(args.write, tracer, int(args.rotate_mb * 1e6), args.max_files,
                            stop, args.file_mode, args.group) if args.write else None
        writer = ocsf.writer(args, sys.stdout, stop) if show else None
        last_stats = time.monotonic()
        f = tracer.features
        print(f"uringwatch: tracing via {' + '.join(f['hooks'])}; "
              f"ppid/namespaces: {'BTF task reads' if f['task_btf'] else 'unavailable'}; "
              f"TOCTOU re-read: {'bpf_loop' if f['bpf_loop'] else 'unavailable'}; "
              f"identities: {_IDENTITY_PATHS[f['resolve']]}"
              f"{'' if f['bpf_loop'] or f['resolve'] == 'off' else ' (buffers: /proc)'}; "
              f"rings: {rings_line(tracer)}; new cgroups: {f['cgroups']}; "
              f"fairness: {_fairness(tracer.options, f['bpf_loop'])}", file=sys.stderr)
        metrics = serve_metrics(tracer, args.metrics) if args.metrics else None

        def seen() -> int:
            return writer.lines if writer else recorded

        def emit(events) -> bool:
            nonlocal recorded, last_stats
            if metrics and show:        # record copies records, decoding none
                metrics.observe(events)
            if show and args.findings:
                events = findings_cli.only_findings(events)
            if args.count:
                events = events[:args.count - seen()]
            if events and writer and not writer.write(events):
                return True             # signals stopped the write
            if recorder and recorder.stopped:
                return True             # this batch did not get out whole
            recorded += len(events)
            if recorder and time.monotonic() - last_stats >= 1.0:
                recorder.write_stats()      # drops so far, in the file too
                last_stats = time.monotonic()
            return bool(args.count) and seen() >= args.count

        # --json alone: lines made from templates where they can be
        lines = show and args.json and not metrics and not recorder

        def poll(timeout=None):
            """Events to show, or for `record` the records copied (never decoded)."""
            if lines:
                return tracer.poll_lines(timeout)
            if show:
                return tracer.poll(timeout)
            limit = args.count - seen() if args.count else BATCH
            return range(tracer.poll_raw(recorder.write_ring, timeout, limit))

        try:
            done = False
            while not done and not stop.requested:
                done = emit(poll())
                done = done or bool(deadline and time.monotonic() >= deadline)
            tracer.detach()        # no new records; write what is queued
            while not done and stop.signals < 2 and (events := poll(0)):
                done = emit(events)
        finally:
            if metrics:
                metrics.close()
            if recorder:
                recorder.close()
            print_stats(tracer.stats(), seen(), "recorded" if not show else "shown")
            findings_cli.print_errors(tracer.findings)
    return EXIT_OK


def rings_line(tracer: Tracer) -> str:
    """Which parts of a ring's life this run shows, and through what."""
    attached = tracer.features["rings"]
    ids = "ring ids" if any(a.endswith("/io_uring_register") for a in attached) \
        else "no ring ids (no io_uring_register tracepoint)"
    if not tracer.rings:
        return f"{ids} (--rings for creation and operations)"
    ops = next((a for a in attached if a.startswith("tp_btf/")), None)
    setup = "creation" if any(a.endswith("_io_uring_setup") for a in attached) else \
        "no creation events"
    before = next((a for a in attached if a.startswith("iter/")), None)
    failed = tracer.features.get("rings_before_error")
    before = f"failed ({failed})" if failed else \
        f"via {before}" if before else "unavailable (no BTF)"
    files = "read in the kernel" if tracer.features["resolve"] in ("btf", "probe_read") \
        else "unread (no kernel reads)"
    ops = f"via {ops} (plain fds' files {files})" if ops else None
    return (f"{ids}, {setup}, operations "
            f"{ops or 'unavailable (no typed submit tracepoint)'}, "
            f"rings from before {before}"
            f"{'; ' + actions_line(tracer) if ops else ''}")


def actions_line(tracer: Tracer) -> str:
    """Which operations are reported each with their target and result."""
    f = tracer.features
    reads = f["resolve"] in ("btf", "probe_read")
    done = any(a.endswith("/io_uring_complete") for a in f["rings"])
    refused = any(a.endswith("/" + hooks.REFUSED_TRACEPOINT) for a in f["rings"])
    with libbpf.vmlinux_btf():          # one load for both questions
        sends = ",".join(hooks.send_destinations()) if reads else ""
        actions = ",".join(hooks.action_ops())
    return (f"actions {actions}: "
            f"targets {'read in the kernel' if reads else 'unread (no kernel reads)'}, "
            f"results {'joined' if done else 'unavailable (no io_uring_complete)'}, "
            f"SQEs refused at prep {'shown' if refused else 'unseen (no io_uring_req_failed)'}; "
            f"destinations of {sends or 'no sends (unread on this kernel)'}; "
            f"MSG_RING's target ring {'named' if reads else 'unread'}")


def _fairness(o, has_loop: bool) -> str:
    if not o.fair:
        return "off"
    budget = f"{o.rate}/s, burst {o.burst}" if o.rate else "no budget"
    return f"repeats coalesced ({hooks.coalescing(has_loop)}), {budget} per process"


TOP_DROPPERS = 5    # processes named in the summary at stop


def serve_metrics(tracer: Tracer, address: str):
    from ..outputs.metrics import Metrics
    metrics = Metrics(tracer).serve(address)
    print(f"uringwatch: metrics at http://{address}/metrics", file=sys.stderr)
    return metrics


def _causes(counts: dict) -> str:
    """Calls dropped by cause; then ring and op records not sent, if any."""
    recs = [k for k in layout.REC_DROPS if counts.get(k)]
    return ", ".join(f"{k}={counts[k]}" for k in (*layout.DROPS, *recs))


def print_stats(stats: dict, shown: int, verb: str = "shown") -> None:
    """The summary at stop: the processes that lost most, then the counters
    (last line, which scripts read)."""
    for p in stats.get("processes", [])[:TOP_DROPPERS]:
        print(f"uringwatch: pid {p['pid']} ({screen.escape(p['comm'])}) coalesced={p['coalesced']}, "
              f"dropped: {_causes(p)}", file=sys.stderr)
    for a in stats.get("aggregates", [])[:TOP_DROPPERS]:
        print(f"uringwatch: uid {a['uid']} cgroup {a['cgroup_id']} ({a['ended']} processes "
              f"ended) coalesced={a['coalesced']}, dropped: {_causes(a)}", file=sys.stderr)
    lost = ", ".join(f"{k}={v}" for k, v in stats.items()
                     if k not in ("emitted", "processes", "aggregates"))
    print(f"uringwatch: {shown} events {verb}, {stats['emitted']} records emitted; "
          f"{lost}", file=sys.stderr)
