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


# One process that changes what it is between its calls, each way a
# context kept per process would have to notice (bpf/capture.h reads it at
# every call: why there): it prints, after each change, what its next call
# must say.
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


def traced_in(cgroup, script: str) -> tuple[list, list]:
    """script run in cgroup, traced: the JSON value of each line it printed
    (one per call it makes), and at least as many events."""
    with Tracer(Filters(cgroups=frozenset([cgroup.stat().st_ino])), fair=False) as t:
        if not t.features["task_btf"]:
            pytest.skip("this kernel refuses BTF task reads: ppid, nspid and hostname are None")
        cmd = ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh",
               sys.executable, "-c", script]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
        wants = [json.loads(line) for line in out.stdout.split("\n") if line]
        events = []
        while len(events) < len(wants):
            polled = t.poll(5)
            assert polled or events, "no events within 5 s"
            events += polled
    return wants, events


@needs_root
def test_a_process_that_changes_namespaces_or_hostname_between_calls(cgroup):
    wants, events = traced_in(cgroup, CHANGER)
    want = [tuple(w) for w in wants]
    assert [(e.pidns, e.mntns, e.hostname) for e in events] == want
    assert len({w[2] for w in want}) == 5 and len({w[:2] for w in want}) == 2


# Changes that a context kept per process or per thread would miss: each
# process says, just before each call, what that call's record must hold
# (the field names of Event; "tid_is_pid": the tid is the process's).
# - threads: one unshares its own UTS namespace (a thread's, not the
#   process's) and names it; the main thread's calls keep the old name;
# - setns into another process's mount namespace, and back;
# - reparenting: a child whose parent dies is its subreaper's (this one's);
# - a reused pid: a process gets the exact pid of one that ended (clone3's
#   set_tid) and must say its own hostname and mount namespace, not the
#   dead one's;
# - exec from a thread, in a new pid namespace: the thread takes the
#   process's pid (1 there), its tid and comm change.
CONTEXTS = f"""
import ctypes, json, os, struct, subprocess, sys, threading, time
sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
import uring
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NEWNS, NEWUTS, NEWPID, SUBREAPER, SET_NAME = 0x20000, 0x4000000, 0x20000000, 36, 15
def ok(r):
    assert r == 0, os.strerror(ctypes.get_errno())
def mnt():
    return os.stat("/proc/thread-self/ns/mnt").st_ino
def call(ring, **want):
    print(json.dumps(dict(want, tid=threading.get_native_id())), flush=True)
    uring.register(ring, 9999, None, 0)
def sethostname(name):
    ok(libc.sethostname(name.encode(), len(name)))
def clone3_at(pid):     # a fork, with the exact pid asked for
    tid = (ctypes.c_int * 1)(pid)
    args = struct.pack("11Q", 0, 0, 0, 0, 17, 0, 0, 0, ctypes.addressof(tid), 1, 0)
    r = libc.syscall(435, ctypes.c_char_p(args), len(args))
    assert r >= 0, os.strerror(ctypes.get_errno())
    return r

ok(libc.unshare(NEWUTS))
sethostname("uw-main")
ring, me, home = uring.setup(), os.getpid(), mnt()
call(ring, hostname="uw-main", mntns=home)
def thread():
    ok(libc.unshare(NEWUTS))
    sethostname("uw-thread")
    call(ring, hostname="uw-thread", nstid=threading.get_native_id())
t = threading.Thread(target=thread); t.start(); t.join()
call(ring, hostname="uw-main")

other = subprocess.Popen(["unshare", "--mount", "sleep", "60"])
while os.stat(f"/proc/{{other.pid}}/ns/mnt").st_ino == home:
    time.sleep(0.01)
there, back = os.open(f"/proc/{{other.pid}}/ns/mnt", os.O_RDONLY), os.open("/proc/self/ns/mnt", os.O_RDONLY)
ok(libc.setns(there, NEWNS))
call(ring, mntns=os.fstat(there).st_ino)
ok(libc.setns(back, NEWNS))
call(ring, mntns=home)
other.kill(); other.wait()

ok(libc.prctl(SUBREAPER, 1, 0, 0, 0))
r, w = os.pipe()
parent = os.fork()
if parent == 0:
    if os.fork() == 0:
        call(ring, ppid=os.getppid())
        os.write(w, b"x")
        while os.getppid() != me:
            time.sleep(0.01)
        call(ring, ppid=me)
        os._exit(0)
    os.read(r, 1)
    os._exit(0)
os.waitpid(parent, 0)
os.wait()

old = os.fork()
if old == 0:
    ok(libc.unshare(NEWUTS | NEWNS))
    sethostname("uw-old")
    call(ring, hostname="uw-old", mntns=mnt(), ppid=me)
    os._exit(0)
os.waitpid(old, 0)
sys.stdout.flush()
if clone3_at(old) == 0:
    assert os.getpid() == old
    call(ring, hostname="uw-main", mntns=home, ppid=me, pid=old)
    os._exit(0)
os.waitpid(old, 0)

AFTER = "import json, os, sys; sys.path.insert(0, %r); import uring; " \\
        "c = open('/proc/self/comm').read().strip(); " \\
        "print(json.dumps(dict(nspid=1, nstid=1, tid_is_pid=True, comm=c)), flush=True); " \\
        "uring.register(uring.setup(), 9999, None, 0)" % sys.path[0]
ok(libc.unshare(NEWPID))
if os.fork() == 0:
    def execs():
        ok(libc.prctl(SET_NAME, b"uw-before", 0, 0, 0))
        call(ring, nspid=1, nstid=threading.get_native_id(), comm="uw-before")
        os.execv(sys.executable, [sys.executable, "-c", AFTER])
    threading.Thread(target=execs).start()
    time.sleep(60)
os.wait()
"""


@needs_root
def test_context_changes_a_per_process_cache_would_miss(cgroup):
    wants, events = traced_in(cgroup, CONTEXTS)
    assert len(wants) == 11 and len(events) == len(wants)
    for e, want in zip(events, wants):
        if want.pop("tid_is_pid", False):
            assert e.tid == e.pid, want
        if "nspid" in want:         # the tid it saw is its pid namespace's
            want.pop("tid", None)
        assert {k: getattr(e, k) for k in want} == want
