"""The image under a real container runtime, run with exactly what
deploy/daemonset.yaml grants, attributing real containers' calls.

Podman (Debian 12's, with runc) runs everything: the image is built from
the freshly built wheel on a debootstrapped Debian base (ci/container-image);
workloads in two containers (seccomp allowing io_uring: a profile derived
from podman's default, and unconfined) and one on the host register while
the image traces. Every container and image made here is removed, also on
failure. Why each flag: docs/DEPLOYMENT.md, "Deployment"."""

import json
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid

import pytest
import yaml

from helpers import REPO, ROOT

HERE = pathlib.Path(__file__).parent
RUN_ID = uuid.uuid4().hex[:8]
COMM = f"uwload-{RUN_ID[:6]}"         # the workloads' command name: the tracer's filter
PODMAN = ["podman", "--runtime", "runc"]   # crun 1.8 refuses hybrid cgroups
# the host lacks CAP_SYS_RESOURCE: the runtime can't keep its default rlimits
LIMITS = "--ulimit nofile=1024:1024 --ulimit nproc=1000:1000"
# deploy/daemonset.yaml's securityContext, hostPID, limits and volumes, as podman flags
CAPS = ("BPF", "PERFMON", "DAC_READ_SEARCH")
CONTRACT = ("--cap-drop=all --cap-add=BPF,PERFMON,DAC_READ_SEARCH --pid=host --read-only "
            "--security-opt no-new-privileges --security-opt seccomp=unconfined --memory 128m "
            "-v /sys/kernel/btf:/sys/kernel/btf:ro -v /sys/fs/cgroup:/sys/fs/cgroup:ro "
            "-v /sys/kernel/tracing:/sys/kernel/tracing:ro")
# the line docs/DEPLOYMENT.md's deployment section shows
README_LINE = f"podman --runtime runc run --rm {LIMITS} {CONTRACT} uringwatch"
TIMEOUT = 60

pytestmark = pytest.mark.skipif(not ROOT, reason="podman, BPF and cgroups need root")


def podman(*args, timeout=TIMEOUT, check=True) -> str:
    r = subprocess.run(PODMAN + list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"podman {' '.join(args[:3])}...: {r.stderr[-2000:]}")
    return r.stdout.strip()


def ensure_podman() -> None:
    """podman and runc from apt where missing (a fresh CI machine)."""
    if shutil.which("podman") and shutil.which("runc"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, env=env,
                   timeout=300)
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq",
                    "podman", "runc"], check=True, capture_output=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def image():
    """The image, built from a freshly built wheel; removed afterwards with
    every container this module ran (all carry its label)."""
    ensure_podman()
    from uringwatch.system.host import tracefs
    tracefs()                           # the host's, which the image mounts read-only
    tag = f"localhost/uwtest-{RUN_ID}"
    try:
        r = subprocess.run([os.path.join(REPO, "ci", "container-image"), tag],
                           capture_output=True, text=True, timeout=900,
                           env={**os.environ, "PYTHON": sys.executable})
        assert r.returncode == 0, r.stderr[-4000:]
        yield tag
    finally:
        ids = podman("ps", "-aq", "--filter", f"label=uwtest={RUN_ID}", check=False).split()
        if ids:
            podman("rm", "-f", *ids, check=False)
        for name in (tag, f"{tag}-base"):   # the image, then the base it is built on
            podman("rmi", "-f", name, check=False)


def run_args(role: str, *flags: str) -> list[str]:
    return PODMAN + ["run", "--rm", "--name", f"uwtest-{RUN_ID}-{role}",
                     "--label", f"uwtest={RUN_ID}", *shlex.split(LIMITS), *flags]


def seccomp_allowing_io_uring(tmp_path) -> str:
    """Podman's default profile (which answers io_uring_setup with ENOSYS)
    with the three io_uring syscalls allowed."""
    profile = json.loads(pathlib.Path("/usr/share/containers/seccomp.json").read_text())
    profile["syscalls"].append({"names": ["io_uring_setup", "io_uring_enter",
                                          "io_uring_register"], "action": "SCMP_ACT_ALLOW"})
    path = tmp_path / "seccomp-io_uring.json"
    path.write_text(json.dumps(profile))
    return str(path)


class Workload:
    """tests/container_calls.py in a container (image given) or on the host."""

    def __init__(self, role, image=None, seccomp=None):
        if image:
            cmd = run_args(role, "-i", "--hostname", f"uw-{role}", "--security-opt",
                           f"seccomp={seccomp}", "-v", f"{HERE}:/uwtests:ro",
                           "--entrypoint", "python3", image, "/uwtests/container_calls.py", COMM)
        else:
            cmd = [sys.executable, str(HERE / "container_calls.py"), COMM]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        first = self.p.stdout.readline().split()
        assert first, f"{role} did not start: {self.p.communicate(timeout=TIMEOUT)[1]}"
        self.nspid, self.hostname = int(first[0]), first[1]
        self.id = podman("inspect", "--format", "{{.Id}}", f"uwtest-{RUN_ID}-{role}") \
            if image else None
        self.pid = int(podman("inspect", "--format", "{{.State.Pid}}",
                              f"uwtest-{RUN_ID}-{role}")) if image else self.p.pid
        self.cgroup = next(line.split(":", 2)[2].strip()
                           for line in open(f"/proc/{self.pid}/cgroup")
                           if line.startswith("0::"))

    def go(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        out, err = self.p.communicate(timeout=TIMEOUT)
        assert out.strip() == "done", err


def start_tracer(image, role, *flags, entrypoint_args=()):
    """The image as the DaemonSet runs it (plus flags); returns once tracing."""
    p = subprocess.Popen(run_args(role, *shlex.split(CONTRACT), *flags, image,
                                  *entrypoint_args),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    assert "tracing" in line or "forwarding" in line, line + p.communicate(timeout=TIMEOUT)[1]
    return p


def test_the_contract_is_the_manifests():
    """CONTRACT is deploy/daemonset.yaml's grant, flag for flag."""
    ds = yaml.safe_load((HERE.parent / "deploy" / "daemonset.yaml").read_text())
    spec = ds["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert f"--cap-add={','.join(sc['capabilities']['add'])}" in CONTRACT
    assert sc["capabilities"]["drop"] == ["ALL"] and "--cap-drop=all" in CONTRACT
    assert spec["hostPID"] and "--pid=host" in CONTRACT
    assert sc["readOnlyRootFilesystem"] and "--read-only" in CONTRACT
    assert not sc["allowPrivilegeEscalation"] and "no-new-privileges" in CONTRACT
    assert sc["seccompProfile"] == {"type": "Unconfined"} and "seccomp=unconfined" in CONTRACT
    assert c["resources"]["limits"]["memory"] == "128Mi" and "--memory 128m" in CONTRACT
    hosts = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    mounts = {f"-v {hosts[m['name']]}:{m['mountPath']}:ro" for m in c["volumeMounts"]}
    assert mounts == {f"-v {v}" for v in CONTRACT.split(" -v ")[1:]}


def test_readme_shows_the_podman_line_used_here():
    assert README_LINE in (HERE.parent / "docs" / "DEPLOYMENT.md").read_text()


def test_default_seccomp_refuses_io_uring(image):
    out = subprocess.run(run_args("seccomp", "--entrypoint", "python3", "-v",
                                  f"{HERE}:/uwtests:ro", image, "-c",
                                  "import sys; sys.path.insert(0, '/uwtests'); import uring; "
                                  "print(uring.syscall(425, 8, bytes(120)))"),
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.stdout.strip() == "-38", out.stderr          # ENOSYS


def read_lines(stream, n: int, timeout: float = TIMEOUT) -> list[str]:
    """n lines from a pipe, or fewer if it has no more within the timeout."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(
        line for line, _ in zip(stream, range(n))), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines


def test_containers_calls_are_attributed(image, tmp_path):
    a = Workload("a", image, seccomp_allowing_io_uring(tmp_path))
    b = Workload("b", image, "unconfined")
    host = Workload("host")
    tracer = start_tracer(image, "tracer",
                          entrypoint_args=("--comm", COMM, "--metrics", "127.0.0.1:9464"))
    try:
        assert "metrics at" in tracer.stderr.readline()
        # started after the tracer, removed as soon as its call is made
        late = Workload("late", image, "unconfined")
        for w in (a, b, host, late):
            w.go()
        events = {e["pid"]: e for e in map(json.loads, read_lines(tracer.stdout, 4))}
        # the metrics port in the tracer's own network namespace, as a node agent scrapes it
        scraped = podman("exec", f"uwtest-{RUN_ID}-tracer", "/opt/uringwatch/bin/python", "-c",
                         "import urllib.request; print(urllib.request.urlopen("
                         "'http://127.0.0.1:9464/metrics').read().decode())")
    finally:
        tracer.send_signal(signal.SIGTERM)      # podman passes it on
        err = tracer.communicate(timeout=TIMEOUT)[1]
    assert tracer.returncode == 0, err
    assert set(events) == {a.pid, b.pid, host.pid, late.pid}, events
    for w in (a, b, late):
        ev = events[w.pid]
        assert ev["container_id"] == w.id and len(w.id) == 64
        assert ev["cgroup_path"] == w.cgroup == f"/libpod_parent/libpod-{w.id}"
        assert (ev["nspid"], ev["nstid"], ev["hostname"]) == (w.nspid, w.nspid, w.hostname)
        assert w.nspid != w.pid and ev["opcode"] == 9999 and ev["comm"] == COMM
        assert f'uringwatch_container_events_total{{container_id="{w.id}"}} 1.0' in scraped
    ev = events[host.pid]
    assert ev["container_id"] is None and ev["cgroup_path"] == host.cgroup
    assert (ev["nspid"], ev["hostname"]) == (host.pid, socket.gethostname())
    assert 'uringwatch_events_total{opcode="UNKNOWN",result="EINVAL"} 4.0' in scraped


def without(cap: str) -> list[str]:
    """CONTRACT's flags less one capability."""
    caps = ",".join(c for c in CAPS if c != cap)
    return shlex.split(CONTRACT.replace(f"--cap-add={','.join(CAPS)}", f"--cap-add={caps}"))


@pytest.mark.parametrize("missing", ["BPF", "PERFMON"])
def test_missing_one_capability_exits_77(image, missing):
    r = subprocess.run(run_args(f"no-{missing.lower()}", *without(missing), image,
                                "--duration", "5"),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 77, r.stderr
    assert r.stderr.splitlines() == [f"uringwatch: tracing needs root, or CAP_BPF and "
                                     f"CAP_PERFMON (missing: CAP_{missing})"]


def test_dac_read_search_is_needed_by_a_non_root_user_only(image):
    """tracefs is mode 700, owned by uid 0: the container's root (the host's
    uid 0, as the DaemonSet runs it) reads it as its owner; another uid needs
    CAP_DAC_READ_SEARCH (podman hands added capabilities to it as ambient)."""
    r = subprocess.run(run_args("nobody", "--user", "65534:65534", *without("DAC_READ_SEARCH"),
                                image, "--duration", "5"),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 77, r.stderr
    assert r.stderr.splitlines() == ["uringwatch: cannot read tracepoint ids in "
                                     "/sys/kernel/tracing: needs root or CAP_DAC_READ_SEARCH"]
    r = subprocess.run(run_args("root-no-dac", *without("DAC_READ_SEARCH"), image,
                                "--duration", "0.5", "-p", "1"),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and "tracing via" in r.stderr, r.stderr


def test_agent_example_forwards_one_containers_events(image, tmp_path):
    target = Workload("target", image, "unconfined")
    other = Workload("other", image, "unconfined")
    sockdir = tmp_path / "collector"
    sockdir.mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sockdir / "collector.sock"))
    server.listen(1)
    server.settimeout(TIMEOUT)
    agent = start_tracer(image, "agent", "-v", f"{sockdir}:/run/uw",
                         "--entrypoint", "/opt/uringwatch/bin/python",
                         entrypoint_args=("/opt/uringwatch/examples/agent.py", "--container",
                                          target.id[:12], "--socket", "/run/uw/collector.sock"))
    try:
        conn, _ = server.accept()
        other.go()                      # filtered out in the kernel: never sent
        target.go()
        conn.settimeout(TIMEOUT)
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            assert chunk, "the agent closed the socket"
            data += chunk
        (ev,) = map(json.loads, data.splitlines())
        assert (ev["container_id"], ev["pid"], ev["nspid"]) == (target.id, target.pid,
                                                                target.nspid)
    finally:
        agent.send_signal(signal.SIGTERM)   # podman passes it on to the agent
        err = agent.communicate(timeout=TIMEOUT)[1]
        server.close()
    assert "agent: sent=1 dropped=0" in err, err
