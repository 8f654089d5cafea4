"""examples/agent.py end to end: a real cgroup, a real workload, a real
Unix socket; and its backpressure when the socket's reader stalls."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import uring
from helpers import Workload, needs_root, unread_bytes, wait_for

AGENT = pathlib.Path(__file__).parent.parent / "examples" / "agent.py"


def start_agent(tmp_path, cg, *extra):
    path = str(tmp_path / "collector.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    agent = subprocess.Popen([sys.executable, str(AGENT), "--cgroup", f"/{cg.name}",
                              "--socket", path, *extra],
                             stderr=subprocess.PIPE, text=True)
    assert "forwarding" in agent.stderr.readline()
    conn, _ = server.accept()
    return agent, conn, server


def stop(agent):
    agent.send_signal(signal.SIGTERM)
    return agent.communicate(timeout=60)[1]


@needs_root
def test_agent_forwards_only_its_cgroup(tmp_path, cgroup):
    agent, conn, server = start_agent(tmp_path, cgroup)
    inside, outside = Workload(uring.REGISTER_FILES, uring.NO_SUCH_OPCODE, cgroup=cgroup),\
        Workload(uring.REGISTER_FILES)
    inside.go()
    outside.go()
    conn.settimeout(60)
    lines = b""
    while lines.count(b"\n") < 2:
        lines += conn.recv(65536)
    events = [json.loads(line) for line in lines.splitlines()]
    assert [e["opcode"] for e in events] == [2, 9999]
    assert {e["cgroup_id"] for e in events} == {cgroup.stat().st_ino}
    assert events[0]["cgroup_path"] == f"/{cgroup.name}"
    err = stop(agent)
    assert "sent=2 dropped=0" in err
    conn.close()
    server.close()


@needs_root
def test_agent_backpressure_drops_are_counted(tmp_path, cgroup):
    agent, conn, server = start_agent(tmp_path, cgroup, "--queue", "4")
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # distinct calls, so none is coalesced; we never read: the socket fills
    w = Workload(*([uring.NO_SUCH_OPCODE, uring.NO_SUCH_OPCODE - 1] * 1500), cgroup=cgroup)
    w.go()
    wait_for(lambda: unread_bytes(conn), "the agent to start sending")
    rss_kb = int(next(line.split()[1] for line in open(f"/proc/{agent.pid}/status")
                      if line.startswith("VmRSS")))
    err = stop(agent)
    n = {k: int(err.split(f" {k}=" if k != "sent" else "sent=")[1].split()[0])
         for k in ("sent", "dropped", "unsent", "cut")}
    assert n["dropped"] > 0 and n["sent"] + n["dropped"] + n["unsent"] + n["cut"] == 3000
    assert rss_kb < 200_000
    got = b""                         # the collector catches up: lines are whole
    while chunk := conn.recv(1 << 20):
        got += chunk
    *whole, tail = got.split(b"\n")
    assert len(whole) == n["sent"] and bool(tail) == bool(n["cut"])
    assert all(json.loads(line)["kind"] == "call" for line in whole)
    conn.close()
    server.close()
    assert os.path.exists(tmp_path / "collector.sock")
