"""Filters.matches() on events and the header test replay's fast path runs
on records' fixed fields, both made from filters.RULES, keep the same
records: checked on every call record of the committed corpus (real
tracer output), each copied with other pids, uids, cgroups and comms."""

import gzip
import pathlib
import struct

import msgspec
import pytest

from uringwatch import Filters
from uringwatch.recordings import dump
from uringwatch.record import headers, layout
from uringwatch.record.decode import decode
from uringwatch.record.events import Event, Repeat, Ring
from uringwatch.record.opcodes import USE_REGISTERED_RING

CORPUS = pathlib.Path(__file__).parent / "data" / f"calls-abi{layout.ABI_VERSION}.uwd.gz"
# a name, one with bytes after its NUL, one that is not UTF-8, and none
COMMS = [b"python", b"ab\0junk", b"\xff\xfeq", b""]
AT = layout.CALL3.offsets      # the header scan reads the current ABI


def corpus():
    """(record bytes, its event) of every record of the corpus."""
    data = gzip.decompress(CORPUS.read_bytes())
    meta, start = dump.read_header(data, str(CORPUS))
    for f in dump.frames(data, start, str(CORPUS), []):
        for buf, off, size in dump.records(f):
            rec = bytes(buf[off:off + size])
            yield rec, decode(rec, 0, size, meta.boot_to_wall_ns)


def varied(rec: bytes, i: int) -> bytes:
    out = bytearray(rec)
    struct.pack_into("<I", out, AT["pid"], 100 + i % 5)
    struct.pack_into("<I", out, AT["uid"], i % 3 * 1000)
    struct.pack_into("<Q", out, AT["cgroup_id"], 1 + i % 2)
    struct.pack_into("16s", out, AT["comm"], COMMS[i % len(COMMS)])
    return bytes(out)


@pytest.fixture(scope="module")
def calls():
    recs = [rec for rec, ev in corpus() if isinstance(ev, Event)]
    recs += [varied(rec, i) for i, rec in enumerate(recs)]
    return [(rec, decode(rec, 0, len(rec), 0)) for rec in recs]


FILTERS = {
    "pid": Filters(pids=frozenset([101, 103])),
    "uid": Filters(uid=1000),
    "uid 0": Filters(uid=0),
    "cgroup": Filters(cgroups=frozenset([2])),
    "comm": Filters(comm="python"),
    "comm after a NUL": Filters(comm="ab"),
    "comm not UTF-8": Filters(comm="\ufffd\ufffdq"),
    "empty comm": Filters(comm=""),
    "opcode": Filters(opcodes=frozenset([2, 3, 22])),     # 22: REGISTER_RING_FDS, by ring
    "failed": Filters(failed=True),
    "all": Filters(pids=frozenset(range(100, 105)), uid=0, cgroups=frozenset([1, 2]),
                   comm="", opcodes=frozenset([2, 3]), failed=True),
}


@pytest.mark.parametrize("name", FILTERS)
def test_header_test_keeps_what_matches_keeps(calls, name):
    f = FILTERS[name]
    scan = headers.Scan(f)
    by_header = [scan.keep((len(rec), *scan.record.unpack_from(rec))) for rec, _ in calls]
    by_event = [f.matches(ev) for _, ev in calls]
    assert by_header == by_event
    assert True in by_event and False in by_event


def test_the_corpus_has_calls_on_a_registered_ring(calls):
    assert any(ev.registered_ring for _, ev in calls)
    assert any(struct.unpack_from("<I", rec, AT["opcode"])[0] & USE_REGISTERED_RING
               for rec, _ in calls)


def test_rings_and_repeats_pass_the_rules_their_events_carry():
    others = [ev for _, ev in corpus() if isinstance(ev, (Ring, Repeat))]
    ring, repeat = (next(ev for ev in others if isinstance(ev, k)) for k in (Ring, Repeat))
    assert Filters(pids=frozenset([ring.pid]), comm=ring.comm, uid=ring.uid,
                   cgroups=frozenset([ring.cgroup_id])).matches(ring)
    assert repeat.ret < 0      # the corpus's repeat: a flood of an invalid opcode
    assert Filters(pids=frozenset([repeat.pid]), comm=repeat.comm, failed=True).matches(repeat)
    # a repeat record carries no uid or cgroup; a ring is no register call
    assert not Filters(uid=ring.uid).matches(repeat)
    assert not Filters(cgroups=frozenset([ring.cgroup_id])).matches(repeat)
    assert not Filters(opcodes=frozenset(range(64))).matches(ring)
    refused = msgspec.structs.replace(ring, ret=-22, error="EINVAL")
    assert not Filters(failed=True).matches(refused)
