"""`uringwatch policy generate|check|show` and `uringwatch confine`: from
recordings to a policy, and a command run under it (docs/ANALYSIS.md, "From
recording to policy")."""

from __future__ import annotations

import argparse
import os
import sys

import msgspec

from ..analysis import cbpf
from ..record import opcodes
from .. import screen
from ..errors import os_message
from ..exitcodes import (EXIT_DENIED, EXIT_ERROR, EXIT_EXEC_FAILED, EXIT_OK, EXIT_UNSUPPORTED,
                         EXIT_USAGE)
from ..analysis.constraints import Constraints
from .failures import UNREADABLE, unreadable
from ..analysis.policy import Policy, PolicyError, Scope, check, dumps, generate, load
from ..recordings.replay import Reader


def add_parsers(commands) -> None:
    """`policy` (with its own commands) and `confine`, commands of cli.parser()."""
    ap = commands.add_parser(
        "policy", help="policies from recordings: generate, check, show",
        description="Policies from recordings made with --rings: no root needed.")
    ap.set_defaults(run=lambda args: (ap.print_usage(sys.stderr), EXIT_USAGE)[1], parser=ap)
    sub = ap.add_subparsers(title="commands", dest="policy_command", metavar="COMMAND")
    gen = sub.add_parser("generate", help="write the policy that allows what recordings used",
                         description="Write a policy allowing exactly the io_uring operations "
                                     "and register opcodes of the recorded processes in scope.")
    gen.add_argument("recordings", nargs="+", metavar="RECORDING")
    _scope_options(gen)
    gen.add_argument("-o", dest="output", metavar="FILE", help="write here (default stdout)")
    gen.set_defaults(run=run_generate, parser=gen)
    chk = sub.add_parser("check", help="list what a policy would deny in recordings",
                         description="Replay recordings against a policy; list every "
                                     "operation and register call it would deny. Exit 0 "
                                     "when none, 1 otherwise.")
    chk.add_argument("policy", metavar="POLICY")
    chk.add_argument("recordings", nargs="+", metavar="RECORDING")
    _scope_options(chk, "instead of the policy's scope")
    chk.set_defaults(run=run_check, parser=chk)
    show = sub.add_parser("show", help="print a policy; --bpf: its compiled filters",
                          description="Print a policy's rules, or with --bpf the classic BPF "
                                      "program compiled for each allowed operation.")
    show.add_argument("policy", metavar="POLICY")
    show.add_argument("--bpf", action="store_true", help="the compiled filters, disassembled")
    show.set_defaults(run=run_show, parser=show)
    conf = commands.add_parser(
        "confine", help="run a command under a policy (io_uring filters, 7.0+)",
        description="Set no_new_privs, register the policy's io_uring BPF filters on this "
                    "task (inherited by the command and its children), exec the command. "
                    f"Exit {EXIT_UNSUPPORTED} when the kernel has no such filters.")
    conf.add_argument("--policy", required=True, metavar="POLICY")
    conf.add_argument("--restrictions-only", action="store_true",
                      help="without BPF filters: print the restrictions the application "
                           "must register on its own rings, and run the command unconfined")
    conf.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")
    conf.set_defaults(run=run_confine, parser=conf)


def _scope_options(ap, what: str = "") -> None:
    g = ap.add_argument_group(f"scope{' (' + what + ')' if what else ''}")
    g.add_argument("-p", "--pid", action="append", metavar="PID[,PID]")
    g.add_argument("-c", "--comm")
    g.add_argument("--container", metavar="ID", help="container id or prefix")
    g.add_argument("--exe", metavar="PATH",
                   help="events name the command, not the file: matched on comm")


def _scope(args) -> Scope:
    pids = [int(p) for item in args.pid or () for p in item.split(",") if p]
    return Scope(pids=pids or None, comm=args.comm, container=args.container, exe=args.exe)


def _events(paths: list[str]):
    reader = Reader(paths)
    yield from reader.events()
    reader.raise_problems()


def run_generate(args) -> int:
    try:
        policy = generate(_events(args.recordings), args.recordings, _scope(args))
    except UNREADABLE as e:
        return unreadable(e)
    text = dumps(policy)
    if args.output:
        with open(args.output, "wb") as f:
            f.write(text)
    else:
        sys.stdout.buffer.write(text)
    if not policy.sqe_ops:
        print("uringwatch: no operations in scope (recorded with --rings?)", file=sys.stderr)
    return EXIT_OK


def _load(path: str) -> Policy | None:
    try:
        return load(path)
    except PolicyError as e:
        screen.error(e)
        return None
    except OSError as e:
        screen.error(os_message(e))
        return None


def run_check(args) -> int:
    policy = _load(args.policy)
    if policy is None:
        return EXIT_USAGE
    scope = _scope(args)
    try:
        denials, judged, unknown = check(policy, _events(args.recordings),
                                scope if scope != Scope() else None)
    except UNREADABLE as e:
        return unreadable(e)
    for d in denials:
        ev = d.event
        times = f" x{d.count}" if d.count else ""     # a first use is in its counts
        print(f"DENY {d.by:<12} {d.what:<24} {d.why}: pid {ev.pid} ({ev.comm}){times} "
              f"{_describe(ev)}")
    n = sum(d.count for d in denials)
    print(f"uringwatch: {judged} operations and register calls judged, {n} would be denied",
          file=sys.stderr)
    if unknown:
        print(f"uringwatch: {unknown} operations not judged: their rules check arguments "
              "their records do not show", file=sys.stderr)
    return EXIT_DENIED if denials else EXIT_OK


def _describe(ev) -> str:
    """The event itself, compactly: kind, its reason, ring, time."""
    kind = type(ev).__name__.lower()
    extra = f" {ev.reason}" if hasattr(ev, "reason") else ""
    ring = getattr(ev, "ring_id", None)
    return f"[{kind}{extra}{' ring ' + ring if ring else ''} ts {ev.ts}]"


def run_show(args) -> int:
    policy = _load(args.policy)
    if policy is None:
        return EXIT_USAGE
    from ..analysis.confine import programs
    if not args.bpf:
        for r in policy.sqe_ops:
            print(f"op       {r.op:<20} {r.reason}")
            for field, value in msgspec.structs.asdict(r.constraints or Constraints()).items():
                if value is not None and field != "evidence":
                    print(f"           {field} {value}")
        for r in policy.register_ops:
            print(f"register {r.op:<20} {r.reason}")
        return EXIT_OK
    progs = programs(policy)
    for i, (op, prog, pdu) in enumerate(progs):
        last = " flags DENY_REST" if i == len(progs) - 1 else ""
        print(f"IORING_OP_{opcodes.sqe_op_name(op)} ({op}): {len(prog)} instructions, "
              f"pdu_size {pdu}{last}")
        for line in cbpf.disassemble(prog):
            print(f"  {line}")
    return EXIT_OK


def run_confine(args) -> int:
    from ..analysis.confine import ConfineError, apply, unsupported
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        args.parser.error("no command: uringwatch confine --policy POLICY -- CMD ARGS")
    policy = _load(args.policy)
    if policy is None:
        return EXIT_USAGE
    why = unsupported()
    if why:
        if not args.restrictions_only:
            print("uringwatch: this kernel has no io_uring BPF filters "
                  f"(IORING_REGISTER_BPF_FILTER on the task: {why}; Linux 7.0+): not running "
                  f"{cmd[0]} unconfined", file=sys.stderr)
            return EXIT_UNSUPPORTED
        r = policy.restrictions
        print("uringwatch: no io_uring BPF filters here; IORING_REGISTER_RESTRICTIONS only "
              "applies to rings the application creates with IORING_SETUP_R_DISABLED and "
              f"restricts itself: register_ops={r.register_ops} sqe_ops={r.sqe_ops} "
              f"sqe_flags_allowed={r.sqe_flags_allowed}; running {cmd[0]} unconfined",
              file=sys.stderr)
    else:
        try:
            apply(policy)
        except (ConfineError, ValueError) as e:
            screen.error(e)
            return EXIT_ERROR
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        screen.error(f"{cmd[0]}: {e.strerror}")
        return EXIT_EXEC_FAILED
