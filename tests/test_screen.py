"""Nothing a traced process controls reaches a terminal raw: its comm and
its files' names are shown escaped, one event to a line, in the live
table, replay's table, the summaries, and `probe`; JSON keeps them exact."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys

from hypothesis import given, strategies as st

import uring
from helpers import needs_root
from uringwatch.commands import main as cli
from uringwatch.probe import hooks
from uringwatch import replay
from uringwatch.screen import escape, unescape

UW = str(pathlib.Path(sys.executable).parent / "uringwatch")
TIMEOUT = 300       # a hang's limit only: a replay took over 60 s in a loaded TCG guest
TESTS = pathlib.Path(__file__).parent
COMM = "ev\x1b[31mil\nX"
NAMES = ["uw-evil-\x1b[2J\x1b[31mRED\nFAKE 0 REGISTER_PERSONALITY,8:shadow",
         "back\\slash\t=[x]\u202e\xa0\x9b\x7f é\\x1b\\n",    # the last two: literal
         "end] fds=[9:/etc,8:shadow]"]      # a directory, then a file


@given(st.text(), st.booleans())
def test_escape_round_trips_to_printable_text(text, field):
    out = escape(text, field)
    assert unescape(out) == text
    assert out.isprintable()
    if field:       # nothing the table splits on
        assert not any(c.isspace() or c == "," for c in out)


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                             blacklist_characters="\\,")))
def test_plain_text_is_shown_as_it_is(text):
    assert escape(text) == text


def test_escapes_read_like_strace():
    assert escape(COMM) == "ev\\x1b[31mil\\nX"
    assert escape("a b,c\\d\t\x9b\u202e") == "a\\x20b\\x2cc\\\\d\\t\\x9b\\u202e"
    assert escape("a b,c", field=False) == "a b,c"


HOSTILE = """
import ctypes, os, sys
sys.path.insert(0, sys.argv[1])
import uring
ctypes.CDLL(None).prctl(15, sys.argv[2].encode(), 0, 0, 0)     # PR_SET_NAME
fds = [os.open(p, os.O_RDONLY) for p in sys.argv[3:]]
print(os.getpid(), flush=True)
sys.stdin.readline()
ring = uring.setup()
uring.register(ring, uring.REGISTER_FILES, uring.ints(*fds), len(fds))
for _ in range(4):      # 0, then ENXIO, folded into a repeat after the first
    uring.register(ring, uring.UNREGISTER_FILES, None, 0)
print("done", flush=True)
sys.stdin.readline()    # alive until the tracer stops: its summary names running processes
"""


def start(*args):
    p = subprocess.Popen([UW, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stderr.readline()
    assert "tracing" in line, line + p.stderr.read()
    return p


def uw(*args):
    r = subprocess.run([UW, *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    return r.stdout


def one_line_each(text):
    lines = text.splitlines()
    assert text.count("\n") == len(lines)       # no \r, \v, \x1c... splitting a line
    for line in lines:
        assert line.isprintable(), repr(line)
    return lines


def fds_shown(row):
    """fd -> name (unescaped) in a row's fds=[...]: the list ends at the
    "]" that a space or the line's end follows."""
    items = re.search(r" fds=\[(.*?)\](?: |$)", row)[1].split(",")
    return {int(fd): unescape(name) for fd, _, name in (i.partition(":") for i in items)}


def check_table(out, pid, paths):
    header, *rows = one_line_each(out)
    assert header.split()[3] == "COMM"
    assert [r.split()[5] for r in rows] == ["REGISTER_FILES", "UNREGISTER_FILES",
                                            "UNREGISTER_FILES", "UNREGISTER_FILES"]
    for r in rows:
        assert int(r.split()[1]) == pid and unescape(r.split()[3]) == COMM, r
    assert fds_shown(rows[0]) == paths
    assert "repeated 2x more" in rows[3]


@needs_root
def test_hostile_names_are_shown_escaped(tmp_path):
    files = [tmp_path / n for n in NAMES]
    for f in files:
        f.parent.mkdir(exist_ok=True)
        f.write_text("")
    child = subprocess.Popen([sys.executable, "-c", HOSTILE, str(TESTS), COMM,
                              *map(str, files)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = int(child.stdout.readline())
    rec = tmp_path / "rec.uwd"
    table = start("-p", str(pid), "-w", str(rec))
    js = start("--json", "--count", "3", "-p", str(pid))
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline() == "done\n"
    table.send_signal(signal.SIGINT)        # the kernel has every record: all are shown
    out, err = table.communicate(timeout=TIMEOUT)
    child.communicate("exit\n", timeout=TIMEOUT)
    assert table.returncode == 0, err
    live_json, _ = js.communicate(timeout=TIMEOUT)
    assert js.returncode == 0

    calls = [json.loads(line) for line in live_json.splitlines()]     # JSON: exact
    paths = dict(zip(calls[0]["payload"]["fds"], map(os.path.realpath, files)))
    assert {e["comm"] for e in calls} == {COMM}
    assert {f["fd"]: f["path"] for f in calls[0]["files"] if f["role"] != "ring"} == paths
    recorded = list(replay(str(rec)))
    assert {e.comm for e in recorded} == {COMM}
    assert {f.fd: f.path for f in recorded[0].files if f.role != "ring"} == paths

    check_table(out, pid, paths)
    assert uw("replay", rec) == out                     # replay's table: the same lines
    summary = [line for line in one_line_each(err) if line.startswith(f"uringwatch: pid {pid} ")]
    m = re.fullmatch(r"uringwatch: pid \d+ \((\S+)\) coalesced=2, dropped: .*", summary[0])
    assert unescape(m[1]) == COMM

    stats = one_line_each(uw("replay", "--stats", rec))
    named = [re.fullmatch(rf" +\d+  {pid} (\S+)|  {pid} (\S+): .*", line)
             for line in stats]
    shown = [unescape(m[1] or m[2]) for m in named if m]
    assert shown == [COMM] * 3          # by process, coalesced by process, drops by process


def test_probe_escapes_the_kernels_text(monkeypatch, capsys):
    monkeypatch.setattr(hooks, "report", lambda tracefs: {
        "kernel": "6.1\x1b[2J\nfake yes", "coalesce": "any call", "hooks": {"x": "a\rb"}})
    assert cli.probe(False) == 0
    out = capsys.readouterr().out
    assert one_line_each(out) == ["kernel                     6.1\\x1b[2J\\nfake yes",
                                  "coalesce                   any call",
                                  "hook x                     a\\rb"]


def test_errors_are_one_escaped_line(tmp_path):
    bad = tmp_path / "not\x1b[2Ja dump\n"
    bad.write_bytes(b"junk" * 8)
    r = subprocess.run([UW, "replay", str(bad)], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode != 0
    assert one_line_each(r.stderr) == [f"uringwatch: {tmp_path}/not\\x1b[2Ja dump\\n: "
                                       "byte 0: not a uringwatch dump (bad magic)"]
