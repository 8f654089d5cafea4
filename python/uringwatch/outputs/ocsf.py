"""Events as OCSF 1.8 (https://schema.ocsf.io): a ring's creation, register
calls, repeats and operations as Kernel Activity (1003), findings as
Detection Finding (2004). What OCSF has no field for stays in `unmapped`,
under `uringwatch`: the event as uringwatch's own JSON has it."""

from __future__ import annotations

import argparse
import os
from typing import IO, Callable, Literal, get_args

import msgspec

from ..record.events import Action, Event, Finding, Op, Repeat, Ring, RingBefore
from .output import WholeWriter

VERSION = "1.8.0"
KERNEL_ACTIVITY, DETECTION_FINDING = 1003, 2004
FILE_ACTIVITY, NETWORK_ACTIVITY = 1001, 4001    # for actions
SYSTEM_ACTIVITY, FINDINGS, NETWORK = 1, 2, 4    # their categories
CREATE, READ, INVOKE = 1, 2, 4           # activity ids
SYSCALL, OTHER = 2, 99                  # kernel object type ids
SUCCESS, FAILURE = 1, 2                 # status ids
SEVERITY_IDS = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


def _product() -> dict:
    from ..version import version
    return {"name": "uringwatch", "vendor_name": "uringwatch", "version": version()}


class Mapper:
    """Makes OCSF objects of events; `hostname()` names the machine traced
    (the recording's, in a replay)."""

    def __init__(self, hostname: Callable[[], str] = lambda: os.uname().nodename):
        self.hostname = hostname
        self._product = _product()

    def __call__(self, ev) -> dict:
        if isinstance(ev, Finding):
            return self._finding(ev)
        if isinstance(ev, Action) and ev.opcode_name in FILE_ACTIVITIES:
            return self._file(ev)
        if isinstance(ev, Action) and ev.opcode_name in NETWORK_ACTIVITIES:
            return self._network(ev)
        return self._kernel(ev)

    def _file(self, ev: Action) -> dict:
        """File System Activity: the path the action named (the file it
        made of it on RENAMEAT, LINKAT, SYMLINKAT in file_result)."""
        activity = FILE_ACTIVITIES[ev.opcode_name]
        if ev.opcode_name.startswith("OPENAT") and "O_CREAT" in (ev.target.flag_names or ()):
            activity = CREATE
        out = self._base(ev, FILE_ACTIVITY, SYSTEM_ACTIVITY, activity, 1)
        out["actor"] = _actor(ev)
        out["file"] = _file(ev.target.path, ev.opcode_name == "MKDIRAT")
        if ev.target.path2 is not None:
            out["file_result"] = _file(ev.target.path2, False)
        _status(out, ev)
        return out

    def _network(self, ev: Action) -> dict:
        """Network Activity: the address connected to (dst_endpoint) or
        bound (src_endpoint), where the action has one."""
        out = self._base(ev, NETWORK_ACTIVITY, NETWORK, NETWORK_ACTIVITIES[ev.opcode_name], 1)
        out["metadata"]["profiles"] = ["host"]      # what adds actor and device here
        out["actor"] = _actor(ev)
        endpoint = _endpoint(ev.target.address)
        if endpoint:
            out["dst_endpoint" if ev.opcode_name == "CONNECT" else "src_endpoint"] = endpoint
        _status(out, ev)
        return out

    def _base(self, ev, class_uid: int, category: int, activity: int, severity: int) -> dict:
        return {
            "class_uid": class_uid, "category_uid": category, "activity_id": activity,
            "type_uid": class_uid * 100 + activity, "severity_id": severity,
            "time": ev.ts // 1_000_000,
            "metadata": {"version": VERSION, "product": self._product,
                         "log_name": type(ev).__struct_config__.tag},
            "device": {"type_id": 0, "hostname": self.hostname()},
            "unmapped": {"uringwatch": msgspec.to_builtins(ev)},
        }

    def _kernel(self, ev) -> dict:
        if isinstance(ev, Ring):
            kernel = {"name": "io_uring", "type_id": SYSCALL, "system_call": "io_uring_setup"}
            activity = CREATE
        elif isinstance(ev, RingBefore):
            kernel = {"name": "io_uring", "type_id": OTHER,
                      "type": "io_uring ring made before tracing"}
            activity = READ
        elif isinstance(ev, (Op, Action)):
            kernel = {"name": f"IORING_OP_{ev.opcode_name}", "type_id": OTHER,
                      "type": "io_uring operation"}
            activity = INVOKE
        else:
            kernel = {"name": f"IORING_{ev.opcode_name}", "type_id": SYSCALL,
                      "system_call": "io_uring_register"}
            activity = INVOKE
        out = self._base(ev, KERNEL_ACTIVITY, SYSTEM_ACTIVITY, activity, 1)
        out["kernel"] = kernel
        out["actor"] = _actor(ev)
        if isinstance(ev, (Event, Ring, Repeat)):
            out["status_id"] = FAILURE if ev.ret < 0 else SUCCESS
            if ev.error:
                out["status_code"] = ev.error
        if isinstance(ev, Action):
            _status(out, ev)
        if isinstance(ev, (Repeat, Op)):
            out["count"] = ev.count
        return out

    def _finding(self, ev: Finding) -> dict:
        out = self._base(ev, DETECTION_FINDING, FINDINGS, CREATE, SEVERITY_IDS[ev.severity])
        out["message"] = ev.explanation
        out["finding_info"] = {
            "uid": f"{ev.rule}:{ev.ts}:{ev.pid}", "title": ev.title, "desc": ev.explanation,
            "types": [ev.rule],
            "analytic": {"name": ev.rule, "uid": ev.rule, "type_id": 1},     # 1: Rule
            "attacks": [{"technique": {"uid": ev.technique}}],
            "first_seen_time": ev.evidence[0].ts // 1_000_000 if ev.evidence else None,
            "last_seen_time": ev.ts // 1_000_000,
        }
        if out["finding_info"]["first_seen_time"] is None:
            del out["finding_info"]["first_seen_time"]
        return out


# OCSF activity ids by action: File System Activity's (OPENAT is Create
# with O_CREAT), Network Activity's (1 Open, 7 Listen, 99 Other)
FILE_ACTIVITIES = {"OPENAT": 14, "OPENAT2": 14, "STATX": 8, "UNLINKAT": 4, "RENAMEAT": 5,
                   "MKDIRAT": 1, "SYMLINKAT": 1, "LINKAT": 1}
NETWORK_ACTIVITIES = {"CONNECT": 1, "LISTEN": 7, "BIND": 99}


def _file(path: str | None, folder: bool) -> dict:
    path = path or ""
    return {"name": path.rstrip("/").rsplit("/", 1)[-1] or path, "path": path,
            "type_id": 2 if folder else 0}     # 2: Folder, 0: Unknown


def _endpoint(address: str | None) -> dict | None:
    """127.0.0.1:443 or [::1]:80 as ip and port; a Unix path as name."""
    if not address:
        return None
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and host and not address.startswith(("/", "@")):
        return {"ip": host.strip("[]"), "port": int(port)}
    return {"name": address}


def _status(out: dict, ev: Action) -> None:
    if ev.result is not None:
        out["status_id"] = FAILURE if ev.result < 0 else SUCCESS
        if ev.error:
            out["status_code"] = ev.error


def _actor(ev) -> dict:
    process = {"pid": ev.pid, "name": ev.comm}
    uid = getattr(ev, "uid", None)
    if uid is not None:
        process["user"] = {"uid": str(uid)}
    return {"process": process}


class OcsfWriter:
    """output.Writer's twin for --format ocsf: one OCSF object a line."""

    def __init__(self, out: IO[str], stop=None, hostname: Callable[[], str] | None = None):
        out.flush()
        self.lines = 0
        self._out = WholeWriter(out.fileno(), stop)
        self._map = Mapper(hostname) if hostname else Mapper()
        self._enc = msgspec.json.Encoder()

    def write(self, events: list) -> bool:
        """False when signals stopped the write, as output.Writer's."""
        buf = self._enc.encode_lines([self._map(ev) for ev in events])
        got = self._out.write(buf)
        self.lines += len(events) if got.whole else buf.count(b"\n", 0, got.count)
        return got.whole


OutputFormat = Literal["table", "json", "ocsf"]     # --format


class _Format(argparse.Action):
    """--format json is --json."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.format = values
        if values == "json":
            namespace.json = True


def add_format_option(ap) -> None:
    """--format, beside --json (which is --format json)."""
    ap.add_argument("--format", choices=get_args(OutputFormat), default=None,
                    action=_Format,
                    help="table (default), json (as --json), or ocsf: OCSF 1.8 objects, "
                         "one a line (docs/ANALYSIS.md, OCSF)")


def writer(args, out: IO[str], stop=None, hostname: Callable[[], str] | None = None):
    """The writer --format (or --json) asks for."""
    if args.format == "ocsf":
        if args.json:
            args.parser.error("--json and --format ocsf exclude each other")
        return OcsfWriter(out, stop, hostname)
    from .output import Writer as Plain
    return Plain(out, args.json, stop)
