"""The typed reports read like the dicts they replaced: the same JSON, key
for key and in order, and the same item access, with no key for a field
the JSON leaves out."""

import json

import msgspec
import pytest

from uringwatch.record import layout
from uringwatch.record.events import RegisteredFile
from uringwatch.record.reports import USER_SPACE, Features, ProcessCounts, Stats

FEATURES = dict(task_btf=True, tracefs="/sys/kernel/tracing", bpf_loop=False, hook="syscalls",
                resolve="btf", hooks=["tracepoint/syscalls/x"], rings=[], cgroups="off")


def test_stats_keys_are_the_kernels_counters_then_the_tracers_own():
    s = Stats(emitted=3, processes=[ProcessCounts(pid=7, comm="x", budget=2)])
    assert list(s) == [*layout.COUNTERS, *USER_SPACE, "processes", "aggregates"]
    as_dict = json.loads(msgspec.json.encode(s))
    assert list(as_dict) == list(s) and s == as_dict
    assert s["emitted"] == 3 and s.get("nothing", 0) == 0 and s["processes"][0]["budget"] == 2
    with pytest.raises(KeyError):
        s["nothing"]


def test_a_field_left_out_of_the_json_is_no_key():
    f = Features(**FEATURES)
    assert "rings_before_error" not in f and f.get("rings_before_error") is None
    with pytest.raises(KeyError):
        f["rings_before_error"]
    assert dict(f) == FEATURES == msgspec.to_builtins(f)
    f.rings_before_error = "no ring of its own: EPERM"
    assert f["rings_before_error"] == "no ring of its own: EPERM"
    assert list(json.loads(msgspec.json.encode(f))) == [*FEATURES, "rings_before_error"]


def test_equality_is_the_jsons():
    assert RegisteredFile(1) == {"slot": 1} != RegisteredFile(1, 3)
    assert RegisteredFile(1, 3) == {"slot": 1, "fd": 3} and RegisteredFile(1) != {"slot": 1, "fd": None}
    assert RegisteredFile(1) != ProcessCounts(pid=1, comm="")
