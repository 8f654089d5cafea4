"""`uringwatch findings` and the live --findings options."""

from __future__ import annotations

import sys

from ..outputs import ocsf
from .. import screen
from ..record.events import Finding
from ..exitcodes import EXIT_OK, EXIT_USAGE
from .failures import UNREADABLE, unreadable
from ..analysis.findings import Engine, RulesError, Ruleset, shipped_text
from ..recordings.replay import Reader


def add_live_options(ap) -> None:
    """`uringwatch --findings`: findings instead of events."""
    g = ap.add_argument_group("findings (docs/ANALYSIS.md, Findings)")
    g.add_argument("--findings", action="store_true",
                   help="show findings (rules matched) instead of events; traces rings too")
    _rules_option(g)


def _rules_option(g) -> None:
    g.add_argument("--rules", action="append", default=[], metavar="FILE",
                   help="rules to add to the shipped ones, disable or allowlist "
                        "(TOML, as `uringwatch findings --print-rules`); repeatable")


def add_parser(commands) -> None:
    ap = commands.add_parser(
        "findings", help="rules matched over recordings; no root or BPF needed",
        description="Match recorded events against the findings rules and print the "
                    "findings (docs/ANALYSIS.md, Findings).")
    ap.add_argument("files", nargs="*", metavar="RECORDING")
    ap.add_argument("--json", action="store_true", help="print JSON Lines")
    ocsf.add_format_option(ap)
    ap.add_argument("--print-rules", action="store_true",
                    help="print the shipped rules file and exit")
    _rules_option(ap)
    ap.set_defaults(run=run, parser=ap)


def wanted(args) -> bool:
    """--findings given (`record` has no such option); it traces rings too."""
    return bool(getattr(args, "findings", False))


def tracer_options(args) -> dict:
    """Tracer keyword arguments for --findings; RulesError on a bad file."""
    if not wanted(args):
        return {}
    return {"findings": Ruleset(args.rules)}


def only_findings(events: list) -> list:
    return [e for e in events if isinstance(e, Finding)]


def print_errors(engine: Engine | None) -> None:
    """Conditions that could not be evaluated, by rule, at stop."""
    if engine and engine.errors:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(engine.errors.items()))
        print(f"uringwatch: rule conditions that failed to evaluate: {counts}",
              file=sys.stderr)


def run(args) -> int:
    if args.print_rules:
        sys.stdout.write(shipped_text())
        return EXIT_OK
    if not args.files:
        args.parser.error("give RECORDING files (or --print-rules)")
    try:
        engine = Engine(Ruleset(args.rules))
        reader = Reader(args.files)
    except (RulesError, ValueError, OSError) as e:
        args.parser.print_usage(sys.stderr)
        screen.error(e)
        return EXIT_USAGE
    try:
        reader.check()
        writer = ocsf.writer(args, sys.stdout, hostname=lambda: reader.meta.hostname)
        for batch in reader.batches():
            found = engine.feed(batch)
            if found:
                writer.write(found)
        reader.raise_problems()
    except UNREADABLE as e:
        return unreadable(e)
    finally:
        print_errors(engine)
    return EXIT_OK
