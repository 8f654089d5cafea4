"""The processes a benchmark run is made of: the load generator, tracers
pinned to their own CPU, and what /proc and bpftool say about them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

GEN_CPU, TRACER_CPU = 1, 0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def loadgen(build: str, mode: list[str], calls: int = 0, seconds: float = 0) -> dict:
    """One run of the generator, pinned to GEN_CPU: its JSON result."""
    amount = ["-n", str(calls)] if calls else ["-d", str(seconds)]
    out = subprocess.run([os.path.join(build, "loadgen"), *amount, "-c", str(GEN_CPU), *mode],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _start(argv: list[str], cgroup: str | None) -> subprocess.Popen:
    """argv on GEN_CPU, inside cgroup if given (entered before exec, so its
    children start there too)."""
    def enter():
        os.sched_setaffinity(0, {GEN_CPU})
        if cgroup:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=enter)


class Gated:
    """A generator started, but held before its first call (-g), so a
    tracer can be attached to its process id first: loadgen MODE for
    SECONDS, or any of bench/'s generators (loadgen, swarm) with argv."""

    def __init__(self, build: str, mode: list[str], seconds: float, exe: str = "loadgen",
                 cgroup: str | None = None):
        timing = ["-d", str(seconds)] if seconds else []
        self.proc = _start([os.path.join(build, exe), "-g", *timing, *mode], cgroup)
        self.pid = self.proc.pid

    def interrupt(self) -> None:
        """End the run early; loadgen still prints what it made."""
        self.proc.send_signal(signal.SIGINT)

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()

    def result(self) -> dict:
        out = self.proc.stdout.read()   # stdin is closed: no communicate()
        if self.proc.wait(timeout=600):
            raise RuntimeError(f"loadgen failed ({self.proc.returncode})")
        return json.loads(out)


class Victim:
    """bench/victim.py, held before its first call like Gated."""

    def __init__(self, seconds: float, cgroup: str | None = None):
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = _start([sys.executable, os.path.join(here, "victim.py"), str(seconds)],
                           cgroup)
        self.pid = int(self.proc.stdout.readline())

    interrupt, go, result = Gated.interrupt, Gated.go, Gated.result


class TracerProcess:
    """A tracer in its own process pinned to TRACER_CPU, started and timed
    until it says on stderr that it is attached."""

    def __init__(self, argv: list[str], attached: str, stdout=subprocess.PIPE,
                 merged: bool = False, env: dict | None = None):
        """merged: the tracer says it is attached on stdout (bpftrace)."""
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, env=env, stdout=subprocess.PIPE if merged else stdout,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE, text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {TRACER_CPU}))
        self.pid = self.proc.pid
        said = self._wait_for(self.proc.stdout if merged else self.proc.stderr, attached)
        self.attach_s = time.monotonic() - t0
        if said is not None:
            self.proc.kill()
            raise RuntimeError(f"{argv[0]} did not attach: {said}")
        self.cpu_at_attach = self.cpu_seconds()

    @staticmethod
    def _wait_for(stream, marker: str, max_lines: int = 20):
        """None once a line has the marker; else what was said instead."""
        said = []
        for _ in range(max_lines):
            line = stream.readline()
            if marker in line:
                return None
            said.append(line)
            if not line:
                break
        return "".join(said)

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (from /proc/PID/stat)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_kib(self, field: str) -> int:
        """A memory line of /proc/PID/status: VmHWM (peak RSS), VmRSS."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until the consumer has drained its backlog: its CPU time
        stays put for 0.2 s (it wakes every 50 ms but uses almost nothing)."""
        deadline = time.monotonic() + timeout
        last = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.cpu_seconds()
            if now == last:
                return
            last = now

    def stop(self) -> tuple[str, str]:
        """SIGINT, then its stdout and stderr; killed if it has not exited
        a minute later (bpftrace 0.17 sometimes ignores SIGINT on a loaded
        machine), then what it said is all there is."""
        self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=60)
        return out or "", err or ""


def bpf_prog_stats(pid: int) -> dict[str, tuple[int, int]]:
    """(run count, total run ns) of each BPF program attached by pid; counts
    only while kernel.bpf_stats_enabled is 1."""
    attached = json.loads(subprocess.check_output(["bpftool", "-j", "perf", "list"]))
    ids = {a["prog_id"] for a in attached if a["pid"] == pid}
    progs = json.loads(subprocess.check_output(["bpftool", "-j", "prog", "show"]))
    return {p["name"]: (p.get("run_cnt", 0), p.get("run_time_ns", 0))
            for p in progs if p["id"] in ids}


def per_run_ns(before: dict, after: dict, min_runs: int = 0) -> dict[str, float]:
    """Average ns per run of each program between two bpf_prog_stats, of
    those that ran at least min_runs times (a program that runs on each
    process's exit, not on each call, is left out of a per-call sum)."""
    out = {}
    for prog, (cnt, ns) in after.items():
        cnt0, ns0 = before.get(prog, (0, 0))
        if cnt - cnt0 >= min_runs:
            out[prog] = (ns - ns0) / (cnt - cnt0) if cnt > cnt0 else 0.0
    return out


def foreign_uring_hooks(own: set[int]) -> list[int]:
    """Processes other than ours with BPF attached to io_uring_register:
    they add their own cost to every call made during the run."""
    attached = json.loads(subprocess.check_output(["bpftool", "-j", "perf", "list"]))
    return sorted({a["pid"] for a in attached
                   if "io_uring_register" in a.get("tracepoint", "") and a["pid"] not in own})


class Cgroup:
    """A fresh cgroup2 directory inside the block, removed after (its
    processes have ended by then)."""

    def __init__(self):
        from uringwatch.system.containers import cgroup2_root
        root = cgroup2_root()
        if not root:
            raise RuntimeError("no cgroup2 hierarchy mounted")
        self.path = os.path.join(root, f"uwbench-{os.getpid()}-{time.monotonic_ns()}")

    def __enter__(self) -> str:
        os.mkdir(self.path)
        return self.path

    def __exit__(self, *exc):
        for _ in range(100):            # the last processes may still be leaving
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)


class BpfStats:
    """kernel.bpf_stats_enabled on inside the block, restored after."""
    PATH = "/proc/sys/kernel/bpf_stats_enabled"

    def __enter__(self):
        with open(self.PATH) as f:
            self.old = f.read().strip()
        with open(self.PATH, "w") as f:
            f.write("1")
        return self

    def __exit__(self, *exc):
        with open(self.PATH, "w") as f:
            f.write(self.old)
