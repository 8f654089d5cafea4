"""`uringwatch export --parquet`: two hosts' recordings in one dataset,
queried with DuckDB; the answers equal those computed from `replay --json`
(and `findings --json`) of each recording. The second host is this machine
in a UTS namespace of its own with another hostname, recording with its own
`uringwatch record`; and, for another kernel, a recording made once in the
7.2 guest (tests/data/make_fleet_guest.py: a guest takes minutes under TCG)."""

import collections
import datetime
import grp
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import uuid

import pytest

from helpers import needs_root
from test_rings import submit_tracepoint_has_request

pytest.importorskip("cel")
pytest.importorskip("pyarrow")
duckdb = pytest.importorskip("duckdb")
pytestmark = needs_root

HERE = pathlib.Path(__file__).parent
UW = [sys.executable, "-m", "uringwatch"]
OTHER_HOST = "fleet-b"


def record(path, *what, prefix=(), cgroup=None):
    """Records one run of fleet_workload.py doing `what`."""
    cmd = [sys.executable, str(HERE / "fleet_workload.py"), *what]
    if cgroup:
        cmd = ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh", *cmd]
    work = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rec = None
    try:
        pid = int(work.stdout.readline())
        rec = subprocess.Popen([*prefix, *UW, "record", "-w", str(path), "--rings",
                                "-p", str(pid)], stderr=subprocess.PIPE, text=True)
        line = rec.stderr.readline()
        assert line.startswith("uringwatch: tracing"), line
        work.stdin.write("go\n")
        work.stdin.flush()
        assert work.stdout.readline().strip() == "done"
        rec.send_signal(signal.SIGINT)      # what is queued is written, then it stops
        rec.communicate(timeout=60)
        assert rec.returncode == 0
        work.communicate("\n", timeout=60)
    finally:
        for p in (work, rec):
            if p and p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Host A: a container (a cgroup named as Podman names one) registering a
    root personality and four iovecs over one page. Host B: a ring driven by
    a forked child, and a personality registered outside any container."""
    from uringwatch.system.containers import cgroup2_root
    if not submit_tracepoint_has_request():
        pytest.skip("this kernel's submit tracepoint has no request: no operations")
    root = cgroup2_root()
    if not root:
        pytest.skip("no cgroup2 hierarchy mounted")
    d = tmp_path_factory.mktemp("fleet")
    cid = uuid.uuid4().hex * 2
    parent = pathlib.Path(root) / f"uwtest-{uuid.uuid4().hex[:8]}"
    cg = parent / f"libpod-{cid}.scope"
    cg.mkdir(parents=True)
    try:
        record(d / "a.uwd", "personality", "same-page", cgroup=cg)
    finally:
        cg.rmdir()
        parent.rmdir()
    record(d / "b.uwd", "handoff", "personality",
           prefix=["unshare", "--uts", "sh", "-c", f'hostname {OTHER_HOST} && exec "$@"', "sh"])
    return {os.uname().nodename: d / "a.uwd", OTHER_HOST: d / "b.uwd"}, cid


def jsonl(*argv):
    out = subprocess.run([*UW, *argv], capture_output=True, text=True, check=True, timeout=120)
    return [json.loads(x) for x in out.stdout.splitlines()]


def expected(hosts):
    """The three answers from each recording's own JSON."""
    rules, roots, handoffs = collections.Counter(), set(), set()
    for host, path in hosts.items():
        for f in jsonl("findings", "--json", str(path)):
            rules[host, f["rule"]] += 1
        for e in jsonl("replay", "--json", str(path)):
            if (e["kind"] == "call" and e["opcode_name"] == "REGISTER_PERSONALITY"
                    and e["ret"] > 0 and e["cred"]["euid"] == 0 and e["container_id"]):
                roots.add((host, e["container_id"]))
            if (e["kind"] == "op" and e["creator_pid"] is not None
                    and e["pid"] != e["creator_pid"] and not e["sq_thread"]):
                handoffs.add((host, e["ring_id"], e["pid"]))
    return rules, roots, handoffs


TOP_RULES = """
SELECT host, analytic_uid AS rule, count(*) AS n FROM fleet
WHERE class_uid = 2004 GROUP BY ALL ORDER BY host, n DESC, rule"""
ROOT_PERSONALITIES = """
SELECT DISTINCT host, uw_container_id FROM fleet
WHERE kernel_name = 'IORING_REGISTER_PERSONALITY' AND uw_ret > 0 AND uw_cred_euid = 0
  AND uw_container_id IS NOT NULL"""
HANDOFFS = """
SELECT DISTINCT host, uw_ring_id, actor_process_pid FROM fleet
WHERE uw_kind = 'op' AND uw_creator_pid IS NOT NULL
  AND actor_process_pid <> uw_creator_pid AND NOT uw_sq_thread"""


def test_fleet_questions_answered_with_duckdb_equal_the_replays(fleet, tmp_path):
    hosts, cid = fleet
    out = tmp_path / "fleet"
    subprocess.run([*UW, "export", "--parquet", str(out), "--findings",
                    *map(str, hosts.values())], check=True, timeout=120, capture_output=True)
    db = duckdb.connect()
    db.execute(f"CREATE VIEW fleet AS SELECT * FROM read_parquet('{out}/**/*.parquet', "
               "hive_partitioning = true)")
    rules, roots, handoffs = expected(hosts)
    assert {(h, r): n for h, r, n in db.sql(TOP_RULES).fetchall()} == rules
    assert set(db.sql(ROOT_PERSONALITIES).fetchall()) == roots
    assert set(db.sql(HANDOFFS).fetchall()) == handoffs
    # not vacuous: each question has the answer the workloads were made for
    me = os.uname().nodename
    assert rules[me, "buffers-same-page"] == 1 and rules[OTHER_HOST, "buffers-same-page"] == 0
    assert rules[OTHER_HOST, "ring-driven-by-another-process"] == 1
    assert roots == {(me, cid)}
    assert {h for h, _, _ in handoffs} == {OTHER_HOST}
    # partitioned by host and by the events' UTC day
    days = db.sql("SELECT DISTINCT host, CAST(day AS VARCHAR), "
                  "strftime(time AT TIME ZONE 'UTC', '%Y-%m-%d') FROM fleet").fetchall()
    assert {h for h, _, _ in days} == set(hosts) and all(d == t for _, d, t in days)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"host={h}" for h in hosts)


def test_export_is_owner_only_whatever_the_umask(fleet, tmp_path):
    hosts, _ = fleet
    out = tmp_path / "fleet"
    subprocess.run([*UW, "export", "--parquet", str(out), *map(str, hosts.values())],
                   check=True, timeout=120, capture_output=True, umask=0)
    made = [out, *out.rglob("*")]
    assert any(p.suffix == ".parquet" for p in made)
    for p in made:
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == want, p


def test_export_with_a_group_gives_it_read(fleet, tmp_path):
    hosts, _ = fleet
    group = next(g for g in grp.getgrall() if g.gr_gid != 0)
    out = tmp_path / "fleet"
    subprocess.run([*UW, "export", "--parquet", str(out), "--group", group.gr_name,
                    str(hosts[OTHER_HOST])], check=True, timeout=120, capture_output=True,
                   umask=0)
    for p in out.rglob("*"):
        assert p.stat().st_gid == group.gr_gid
        assert stat.S_IMODE(p.stat().st_mode) == (0o750 if p.is_dir() else 0o640), p


def test_an_unreadable_recording_is_one_line(tmp_path):
    bad = tmp_path / "bad.uwd"
    bad.write_bytes(b"not a recording")
    r = subprocess.run([*UW, "export", "--parquet", str(tmp_path / "o"), str(bad)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "bad.uwd" in r.stderr
    assert not (tmp_path / "o").exists()


GUEST = HERE / "data" / "fleet-guest.uwd"


def test_a_guest_kernels_recording_joins_the_fleet(fleet, tmp_path):
    """Two machines on two kernels: this one's recording and one made in
    the 7.2 guest (tests/data/make_fleet_guest.py: a ring handed to a forked
    child, a root personality, four iovecs over one page), exported into one
    dataset; DuckDB's answers equal those of each recording's replay."""
    from uringwatch.recordings.dump import read_header
    hosts, _ = fleet
    meta, _ = read_header(GUEST.read_bytes(), str(GUEST))
    me = os.uname().nodename
    assert meta.hostname != me and meta.kernel != os.uname().release, meta
    both = {me: hosts[me], meta.hostname: GUEST}
    out = tmp_path / "two"
    subprocess.run([*UW, "export", "--parquet", str(out), "--findings",
                    *map(str, both.values())], check=True, timeout=120, capture_output=True)
    db = duckdb.connect()
    db.execute(f"CREATE VIEW fleet AS SELECT * FROM read_parquet('{out}/**/*.parquet', "
               "hive_partitioning = true)")
    rules, roots, handoffs = expected(both)
    assert {(h, r): n for h, r, n in db.sql(TOP_RULES).fetchall()} == rules
    assert set(db.sql(ROOT_PERSONALITIES).fetchall()) == roots
    assert set(db.sql(HANDOFFS).fetchall()) == handoffs
    # not vacuous: the guest's answers are there
    assert rules[meta.hostname, "buffers-same-page"] == 1
    assert rules[meta.hostname, "ring-driven-by-another-process"] >= 1
    assert [h for h, _, _ in handoffs] == [meta.hostname]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"host={h}" for h in both)
