"""Events say who called as the caller's own namespaces see it: its pid
and tid in its pid namespace, and its UTS nodename, read in the kernel."""

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

import uring
from helpers import REPO, needs_root
from uringwatch import Filters, Tracer

# In a new pid and UTS namespace: the main thread and a second thread each
# register once, then print what they are in there.
CALLER = f"""
import os, sys, threading
sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
import uring
ring, ids = uring.setup(), []
def call():
    ids.append(threading.get_native_id())
    uring.register(ring, 9999, None, 0)
call()
t = threading.Thread(target=call); t.start(); t.join()
print(os.getpid(), *ids)
"""


def run_in_namespaces(cg, hostname):
    cmd = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh",
           "unshare", "--pid", "--fork", "--uts", "sh", "-c", f'hostname {hostname} && exec "$@"',
           "sh", sys.executable, "-c", CALLER]
    return [int(x) for x in subprocess.run(cmd, check=True, capture_output=True, text=True,
                                           timeout=30).stdout.split()]


@needs_root
def test_pid_tid_and_hostname_inside_a_namespace(cgroup):
    # no fairness: the two threads' calls are identical, and would be coalesced
    with Tracer(Filters(cgroups=frozenset([cgroup.stat().st_ino])), fair=False) as t:
        if not t.features["task_btf"]:
            pytest.skip("this kernel refuses BTF task reads: nspid and hostname are None")
        pid, main_tid, thread_tid = run_in_namespaces(cgroup, "uw-ns-test")
        events = []
        while len(events) < 2:
            polled = t.poll(5)
            assert polled or events, "no events within 5 s"
            events += polled
    assert pid == main_tid == 1 and thread_tid > 1     # a fresh pid namespace
    assert [(e.nspid, e.nstid, e.hostname) for e in events] == \
        [(1, 1, "uw-ns-test"), (1, thread_tid, "uw-ns-test")]
    assert len({e.pid for e in events}) == 1 and events[0].pid > thread_tid
    assert events[0].tid == events[0].pid and events[1].tid != events[0].pid


@needs_root
def test_on_the_host_the_namespaced_ids_are_the_host_ones(tracer):
    if not tracer.tracer.features["task_btf"]:
        pytest.skip("this kernel refuses BTF task reads: nspid and hostname are None")
    ring = uring.setup()
    uring.register(ring, 9999, None, 0)
    os.close(ring)
    (ev,) = tracer.mine(1)
    assert (ev.nspid, ev.nstid, ev.hostname) == \
        (os.getpid(), threading.get_native_id(), socket.gethostname())


# One process that changes what it is between its calls, each way the
# context read once per process (bpf/context.h) must notice: it prints, after
# each change, what its next call must say.
CHANGER = f"""
import ctypes, json, os, sys
sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
import uring
libc = ctypes.CDLL(None, use_errno=True)
NEWNS, NEWUTS, NEWPID = 0x20000, 0x4000000, 0x20000000
def ok(r):
    assert r == 0, os.strerror(ctypes.get_errno())
def sethostname(name):
    ok(libc.sethostname(name.encode(), len(name)))
def sysctl_hostname(name):
    with open("/proc/sys/kernel/hostname", "w") as f:
        f.write(name)
def setns_back(fd):
    ok(libc.setns(fd, NEWUTS))
def new_pid_and_mnt():
    ok(libc.unshare(NEWNS | NEWPID))
    if os.fork() == 0:      # the new pid namespace's first: it is named from then
        os._exit(0)
    os.wait()
home_uts = os.open("/proc/self/ns/uts", os.O_RDONLY)
ok(libc.unshare(NEWUTS))
sethostname("uw-first")
steps = [lambda: None, lambda: sethostname("uw-set"), lambda: sysctl_hostname("uw-sysctl"),
         new_pid_and_mnt, lambda: setns_back(home_uts),
         lambda: (ok(libc.unshare(NEWUTS)), sethostname("uw-again")),
         lambda: (ok(libc.unshare(NEWUTS)), ok(libc.unshare(NEWUTS)))]
ring = uring.setup()
for step in steps:
    step()
    ns = lambda n: os.stat(f"/proc/self/ns/{{n}}").st_ino
    print(json.dumps([ns("pid_for_children"), ns("mnt"), os.uname().nodename]), flush=True)
    uring.register(ring, 9999, None, 0)
"""


@needs_root
def test_a_process_that_changes_namespaces_or_hostname_between_calls(cgroup):
    with Tracer(Filters(cgroups=frozenset([cgroup.stat().st_ino])), fair=False) as t:
        if not t.features["task_btf"]:
            pytest.skip("this kernel refuses BTF task reads: nspid and hostname are None")
        cmd = ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh",
               sys.executable, "-c", CHANGER]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)
        want = [tuple(json.loads(line)) for line in out.stdout.split("\n") if line]
        events = []
        while len(events) < len(want):
            polled = t.poll(5)
            assert polled or events, "no events within 5 s"
            events += polled
    assert [(e.pidns, e.mntns, e.hostname) for e in events] == want
    assert len({w[2] for w in want}) == 5 and len({w[:2] for w in want}) == 2
