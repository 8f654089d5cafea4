"""The uringwatch command, run as users run it."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import uring
from helpers import REPO, needs_root, read_lines

UW = [sys.executable, "-m", "uringwatch"]


def start(*args, env=None):
    p = subprocess.Popen(UW + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    # the tracer says so on stderr once attached
    line = p.stderr.readline()
    assert "tracing" in line, line + p.stderr.read()
    return p


@needs_root
def test_json_count_three():
    p = start("--json", "--count", "3", "-p", str(os.getpid()))
    ring = uring.setup()
    fds = uring.ints(0, 1)
    assert uring.register(ring, uring.REGISTER_FILES, fds, 2) == 0
    assert uring.register(ring, uring.UNREGISTER_FILES, None, 0) == 0
    assert uring.register(ring, uring.NO_SUCH_OPCODE, None, 0) < 0
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["opcode_name"] for e in lines] == ["REGISTER_FILES", "UNREGISTER_FILES",
                                                 "UNKNOWN_9999"]
    first = lines[0]
    for key in ("ts", "pid", "tid", "ppid", "uid", "gid", "comm", "cgroup_id", "fd",
                "opcode", "opcode_name", "registered_ring", "arg", "nr_args", "ret",
                "duration_ns", "payload"):
        assert key in first, key
    assert first["payload"] == {"type": "REGISTER_FILES", "truncated": False,
                                "unreadable": [], "fds": [0, 1]}
    assert lines[2]["ret"] == -22 and lines[2]["error"] == "EINVAL"
    assert "3 events shown" in err and "ring_full=0" in err
    os.close(ring)


@needs_root
def test_table_and_sigint_detach():
    p = start("-p", str(os.getpid()))
    ring = uring.setup()
    uring.register(ring, uring.REGISTER_FILES, uring.ints(99999), 1)   # no such fd: EBADF
    header, row = read_lines(p.stdout, 2)     # shown: now the stop
    p.send_signal(2)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and not out, (out, err)
    assert header.split()[:8] == ["TIME", "PID", "TID", "COMM", "FD", "OPCODE", "NR", "RET"]
    assert "REGISTER_FILES" in row and "EBADF" in row and "fds=[99999]" in row
    assert "Traceback" not in err and "events shown" in err
    os.close(ring)


@needs_root
def test_no_compiler_at_run_time(tmp_path):
    """Runs with no compiler reachable and fails on any exec or spawn."""
    hook = tmp_path / "sitecustomize.py"
    hook.write_text(
        "import sys\n"
        "def audit(event, args):\n"
        "    if event in ('subprocess.Popen', 'os.exec', 'os.posix_spawn', 'os.system'):\n"
        "        raise RuntimeError(f'spawned at run time: {event} {args}')\n"
        "sys.addaudithook(audit)\n")
    env = dict(os.environ, PATH="/nonexistent", PYTHONPATH=str(tmp_path))
    sees_one_invalid_call(start("--json", "--count", "1", "-p", str(os.getpid()), env=env))


def sees_one_invalid_call(p):
    """p traces --json --count 1 for this process: make the call, check it."""
    ring = uring.setup()
    uring.register(ring, uring.NO_SUCH_OPCODE, None, 0)
    out, err = p.communicate(timeout=60)
    os.close(ring)
    assert p.returncode == 0, err
    assert json.loads(out)["opcode"] == 9999


@needs_root
@pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv is not installed")
def test_unprivileged_gets_one_clear_line():
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all", "--bounding-set=-all"] + UW,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 77
    assert r.stderr.strip().splitlines() == [
        "uringwatch: tracing needs root, or CAP_BPF and CAP_PERFMON "
        "(missing: CAP_BPF, CAP_PERFMON)"]


CAPS = "+bpf,+perfmon,+dac_read_search"


def as_nobody(caps):
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            f"--inh-caps={caps}", f"--ambient-caps={caps}"]


@needs_root
@pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv is not installed")
def test_non_root_with_the_documented_capabilities():
    p = subprocess.Popen(as_nobody(CAPS) + UW + ["--json", "--count", "1", "-p", str(os.getpid())],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "tracing" in p.stderr.readline()
    sees_one_invalid_call(p)


@needs_root
@pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv is not installed")
def test_non_root_without_dac_read_search_is_told_so():
    r = subprocess.run(as_nobody("+bpf,+perfmon") + UW, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 77 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "uringwatch: cannot read tracepoint ids in /sys/kernel/tracing: "
        "needs root or CAP_DAC_READ_SEARCH"]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args,message", [
    (["--opcode", "NOPE"], "unknown opcode 'NOPE'"),
    (["--opcode", "200"], "opcode filters take opcodes 0..63"),
    (["-c", "a-name-longer-than-15"], "longer than the kernel's 15 characters"),
    (["--container", "ffffffffffff"], "no cgroup belongs to container 'ffffffffffff'"),
    (["--cgroup", "/no/such/cgroup"], "No such file or directory"),
])
def test_bad_filters_are_usage_errors(args, message):
    r = subprocess.run(UW + args, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


@needs_root
def test_cli_filters_in_kernel():
    p = start("--json", "--count", "1", "-p", str(os.getpid()), "--opcode", "FILES",
              "--failed", "-c", open("/proc/self/comm").read().strip())
    ring = uring.setup()
    uring.register(ring, uring.REGISTER_FILES, uring.ints(0), 1)         # succeeds: filtered
    uring.register(ring, uring.NO_SUCH_OPCODE, None, 0)               # other opcode: filtered
    uring.register(ring, uring.REGISTER_FILES, uring.ints(0), 1)         # EBUSY: shown
    out, err = p.communicate(timeout=60)
    ev = json.loads(out)
    assert (ev["opcode_name"], ev["error"]) == ("REGISTER_FILES", "EBUSY")
    assert "filtered=2" in err
    os.close(ring)


def run(*args):
    return subprocess.run(UW + list(args), capture_output=True, text=True, timeout=30)


def test_help_lists_the_commands():
    r = run("--help")
    assert r.returncode == 0, r.stderr
    commands = r.stdout.split("\ncommands:\n")[1].split("\n\n")[0]
    assert [line.split()[0] for line in commands.splitlines()[1:]] == \
        ["record", "replay", "probe", "schema", "policy", "confine", "findings",
         "export"]


@pytest.mark.parametrize("command", ["record", "replay", "probe", "schema", "policy", "confine",
                                     "findings", "export"])
def test_each_command_has_its_own_help(command):
    r = run(command, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"usage: uringwatch {command} [-h]")


def test_record_help_has_the_trace_options_but_json():
    r = run("record", "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: uringwatch record [-h] -w FILE ")
    options = r.stdout.split("\nexamples:\n")[0]
    assert "--rate N" in options and "--json" not in options


@pytest.mark.parametrize("args,message", [
    (["replay"], "uringwatch replay: error: the following arguments are required: FILE"),
    (["record"], "uringwatch record: error: the following arguments are required: -w"),
    (["-w", "-"], "uringwatch: error: -w - writes the recording to stdout: "
                  "use `uringwatch record -w -`"),
    (["-p", "1", "record", "-w", "x"], "uringwatch: error: the command goes first: "
                                       "uringwatch record [OPTIONS]"),
    (["frobnicate"], "uringwatch: error: argument COMMAND: invalid choice: 'frobnicate'"),
    (["record", "-w", "-", "--file-mode", "0640"], "uringwatch record: error: --file-mode "
                                                   "and --group apply to the files of -w FILE"),
    (["--group", "0"], "uringwatch: error: --file-mode and --group apply to the files of -w FILE"),
    (["record", "-w", "x", "--file-mode", "0999"],
     "argument --file-mode: '0999' is not an octal mode from 0 to 0777"),
    (["record", "-w", "x", "--group", "no-such-group"],
     "argument --group: no group named 'no-such-group'"),
])
def test_usage_errors(args, message):
    r = run(*args)
    assert r.returncode == 2 and message in r.stderr and r.stdout == "", r.stderr


@pytest.mark.parametrize("args", [[], ["record", "-w", "x"], ["replay", "x"], ["probe"],
                                  ["schema"]])
def test_unknown_options_are_told_by_their_command(args):
    r = run(*args, "--bogus")
    prog = " ".join(["uringwatch", *args[:1]])
    assert r.returncode == 2
    assert r.stderr.startswith(f"usage: {prog} [-h]")
    assert r.stderr.endswith(f"{prog}: error: unrecognized arguments: --bogus\n")


def test_version_is_the_one_in_meson_build():
    r = run("--version")
    version = re.search(r"version: '([^']+)'", (pathlib.Path(REPO) / "meson.build").read_text())
    assert (r.returncode, r.stdout, r.stderr) == (0, f"uringwatch {version[1]}\n", "")


def test_replay_help_gives_each_exit_code_once():
    from uringwatch.exitcodes import DUMP_PROBLEMS
    text = " ".join(run("replay", "--help").stdout.split())
    assert "Exit codes: " + ", ".join(f"{code} {what}" for code, what in
                                      DUMP_PROBLEMS.items()) in text


def test_dump_format_lists_the_exit_codes_replay_has():
    from uringwatch.exitcodes import DUMP_PROBLEMS, EXIT_ERROR, EXIT_OK, EXIT_USAGE
    doc = open(os.path.join(REPO, "docs", "DUMP_FORMAT.md")).read().split("## Errors")[1]
    codes = [int(line.split("|")[1]) for line in doc.splitlines()
             if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert codes == [EXIT_OK, EXIT_ERROR, EXIT_USAGE, *DUMP_PROBLEMS]


@pytest.mark.parametrize("command", [["replay"], ["replay", "--stats"], ["findings"],
                                     ["export", "--parquet", "{tmp}/out"],
                                     ["policy", "generate"]])
def test_unreadable_recordings_fail_alike(tmp_path, command):
    """Every command that reads recordings says what it could not read in
    one escaped line, without Python's [Errno N], and exits with the code
    the problem has: a missing file, a directory, a file that is no dump
    (with a control character in its name, escaped)."""
    from uringwatch.exitcodes import EXIT_ERROR, EXIT_NOT_A_DUMP
    junk = tmp_path / "junk\x1b.uwd"
    junk.write_bytes(b"not a recording")
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    for path, code in ((tmp_path / "missing.uwd", EXIT_ERROR), (tmp_path, EXIT_ERROR),
                       (junk, EXIT_NOT_A_DUMP)):
        r = run(*args, str(path))
        assert r.returncode == code, (path, r.stderr)
        assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith("uringwatch: ") and "Errno" not in r.stderr
        assert "\x1b" not in r.stderr
