"""`uringwatch export --parquet OUT RECORDING...`: events (and findings) as
OCSF-shaped rows in Parquet, partitioned host=/day=, for engines that read
a directory of Parquet (DuckDB, Spark, Trino, Athena, Security Lake).

A row has the OCSF fields (class_uid, activity_id, type_uid, severity_id,
time, status_id, status_code, count, kernel_name, actor_process_*,
finding_*, analytic_uid, attack_technique_uid), the io_uring fields fleet
questions ask about as uw_* columns, and `unmapped`: the whole event as
`--json` prints it. host and day (UTC) are the partition directories."""

from __future__ import annotations

import collections
import datetime
import os
import sys
import urllib.parse
import uuid

import msgspec

from .. import screen
from ..record.events import Finding
from ..exitcodes import EXIT_OK, EXIT_USAGE
from .failures import UNREADABLE, unreadable
from ..analysis.findings import Engine, RulesError, Ruleset
from ..outputs.ocsf import Mapper
from ..recordings.recorder import FILE_MODE, GROUP_FILE_MODE, create, file_mode, group_id
from ..recordings.replay import Reader

ROWS_PER_FILE = 1 << 20     # a partition's rows are written at most this many at once

COLUMNS = {     # name -> arrow type name, in order
    "time": "timestamp", "class_uid": "int32", "activity_id": "int32", "type_uid": "int32",
    "severity_id": "int32", "status_id": "int32", "status_code": "string", "count": "int64",
    "kernel_name": "string", "actor_process_pid": "int64", "actor_process_name": "string",
    "actor_user_uid": "string", "finding_uid": "string", "finding_title": "string",
    "analytic_uid": "string", "attack_technique_uid": "string",
    "uw_kind": "string", "uw_tid": "int64", "uw_ring_id": "string",
    "uw_container_id": "string", "uw_opcode_name": "string", "uw_ret": "int64",
    "uw_creator_pid": "int64", "uw_sq_thread": "bool", "uw_creds_differ": "bool",
    "uw_cred_euid": "int64", "uw_personality_euid": "int64", "uw_task_euid": "int64",
    "unmapped": "string",
}


def add_parser(commands) -> None:
    ap = commands.add_parser(
        "export", help="recordings to Parquet, partitioned by host and day",
        description="Write recorded events, OCSF-shaped, to Parquet files under "
                    "OUT/host=HOST/day=YYYY-MM-DD/ (docs/ANALYSIS.md, Fleet queries). "
                    "Needs uringwatch[export] (pyarrow).")
    ap.add_argument("files", nargs="+", metavar="RECORDING")
    ap.add_argument("--parquet", required=True, metavar="OUT", help="the dataset's directory")
    ap.add_argument("--findings", action="store_true",
                    help="also the findings of the rules (needs uringwatch[findings])")
    ap.add_argument("--rules", action="append", default=[], metavar="FILE",
                    help="with --findings: rules files, as for `uringwatch findings`")
    ap.add_argument("--file-mode", type=file_mode, metavar="MODE",
                    help="permissions of files made (octal; default 0600, 0640 with --group)")
    ap.add_argument("--group", type=group_id, metavar="NAME|GID", help="group of files made")
    ap.set_defaults(run=run, parser=ap)


def _row(obj: dict, ev) -> dict:
    """One row from an event and its OCSF object."""
    raw = obj["unmapped"]["uringwatch"]
    info = obj.get("finding_info", {})
    process = obj.get("actor", {}).get("process", {})
    pc, tc = getattr(ev, "personality_cred", None), getattr(ev, "task_cred", None)
    cred = getattr(ev, "cred", None)
    return {
        "time": ev.ts, "class_uid": obj["class_uid"], "activity_id": obj["activity_id"],
        "type_uid": obj["type_uid"], "severity_id": obj["severity_id"],
        "status_id": obj.get("status_id"), "status_code": obj.get("status_code"),
        "count": obj.get("count"), "kernel_name": obj.get("kernel", {}).get("name"),
        "actor_process_pid": process.get("pid", ev.pid),
        "actor_process_name": process.get("name", ev.comm),
        "actor_user_uid": process.get("user", {}).get("uid"),
        "finding_uid": info.get("uid"), "finding_title": info.get("title"),
        "analytic_uid": info.get("analytic", {}).get("uid"),
        "attack_technique_uid": ev.technique if isinstance(ev, Finding) else None,
        "uw_kind": raw["kind"], "uw_tid": raw.get("tid"), "uw_ring_id": raw.get("ring_id"),
        "uw_container_id": raw.get("container_id"), "uw_opcode_name": raw.get("opcode_name"),
        "uw_ret": raw.get("ret"), "uw_creator_pid": raw.get("creator_pid"),
        "uw_sq_thread": raw.get("sq_thread"), "uw_creds_differ": raw.get("creds_differ"),
        "uw_cred_euid": cred.euid if cred else None,
        "uw_personality_euid": pc.euid if pc else None,
        "uw_task_euid": tc.euid if tc else None,
        "unmapped": msgspec.json.encode(raw).decode(),
    }


class Dataset:
    """Rows gathered per (host, day), written as Parquet files made by
    recorder.create: owner-only unless a group is asked for, whatever the umask."""

    def __init__(self, out: str, mode: int, gid: int | None):
        import pyarrow as pa
        self.pa = pa
        self.out, self.mode, self.gid = out, mode, gid
        types = {"timestamp": pa.timestamp("ns", tz="UTC"), "int32": pa.int32(),
                 "int64": pa.int64(), "string": pa.string(), "bool": pa.bool_()}
        self.schema = pa.schema([(k, types[t]) for k, t in COLUMNS.items()])
        self.parts: dict[tuple, list[dict]] = collections.defaultdict(list)
        self.files: list[str] = []
        self.rows = 0
        self._id = uuid.uuid4().hex[:12]

    def add(self, host: str, row: dict) -> None:
        day = datetime.datetime.fromtimestamp(row["time"] / 1e9, datetime.timezone.utc)
        rows = self.parts[host, day.strftime("%Y-%m-%d")]
        rows.append(row)
        self.rows += 1
        if len(rows) >= ROWS_PER_FILE:
            self._write((host, day.strftime("%Y-%m-%d")))

    def close(self) -> None:
        for key in list(self.parts):
            self._write(key)

    def _write(self, key: tuple) -> None:
        import pyarrow.parquet as pq
        rows = self.parts.pop(key)
        if not rows:
            return
        host, day = key
        d = os.path.join(self.out, f"host={urllib.parse.quote(host, safe='')}", f"day={day}")
        self._mkdirs(d)
        path = os.path.join(d, f"uw-{self._id}-{len(self.files)}.parquet")
        table = self.pa.Table.from_pylist(rows, schema=self.schema)
        with os.fdopen(create(path, self.mode, self.gid), "wb") as f:
            pq.write_table(table, f)
        self.files.append(path)

    def _mkdirs(self, d: str) -> None:
        """Directories with the files' read bits as search bits too."""
        dmode = self.mode | (self.mode & 0o444) >> 2
        parts, path = os.path.relpath(d, self.out).split(os.sep), self.out
        os.makedirs(self.out, mode=0o700 if self.gid is None else dmode, exist_ok=True)
        for p in parts:
            path = os.path.join(path, p)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            if self.gid is not None:
                os.chown(path, -1, self.gid)
            os.chmod(path, dmode)


def export(paths: list[str], out: str, engine=None, mode: int = FILE_MODE,
           gid: int | None = None) -> Dataset:
    """The recordings' events (and with an engine, its findings) into out."""
    reader = Reader(paths)
    reader.check()
    data = Dataset(out, mode, gid)
    mapper = Mapper(lambda: reader.meta.hostname)
    for batch in reader.batches():
        host = reader.meta.hostname
        if engine:
            batch = batch + engine.feed(batch)
        for ev in batch:
            data.add(host, _row(mapper(ev), ev))
    data.close()
    reader.raise_problems()
    return data


def run(args) -> int:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        screen.error("export needs pyarrow: pip install 'uringwatch[export]'")
        return EXIT_USAGE
    engine = None
    mode = args.file_mode if args.file_mode is not None else (
        GROUP_FILE_MODE if args.group is not None else FILE_MODE)
    try:
        engine = Engine(Ruleset(args.rules)) if args.findings else None
    except RulesError as e:
        screen.error(e)
        return EXIT_USAGE
    try:
        data = export(args.files, args.parquet, engine, mode, args.group)
    except UNREADABLE as e:
        return unreadable(e)
    print(f"uringwatch: {data.rows} rows in {len(data.files)} files under {args.parquet}",
          file=sys.stderr)
    return EXIT_OK
