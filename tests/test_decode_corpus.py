"""A recording of every opcode and of the benchmark's workloads decodes to
the JSON Lines the decoder printed when it was made (tests/data/make_calls.py):
a faster decoder must print the same bytes, through replay and through
decode() record by record."""

import gzip
import json
import os
import pathlib
import subprocess
import sys

import msgspec
import pytest

from uringwatch import dump
from uringwatch.decode import Runs, decode

DATA = pathlib.Path(__file__).parent / "data"
CORPUS = DATA / "calls-abi2.uwd.gz"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[pathlib.Path, bytes]:
    path = tmp_path_factory.mktemp("corpus") / "calls.uwd"
    path.write_bytes(gzip.decompress(CORPUS.read_bytes()))
    return path, gzip.decompress(CORPUS.with_name("calls-abi2.jsonl.gz").read_bytes())


def test_replay_prints_the_same_json_lines(corpus):
    path, expected = corpus
    r = subprocess.run([sys.executable, "-m", "uringwatch", "replay", "--json", str(path)],
                       capture_output=True, timeout=120,
                       env=dict(os.environ, URINGWATCH_LIBBPF="/nonexistent"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected


def test_each_record_decodes_to_the_same_json(corpus):
    path, expected = corpus
    data = path.read_bytes()
    meta, start = dump.read_header(data, str(path))
    context, runs, got = {}, Runs(), []
    for f in dump.frames(data, start, str(path), []):
        if f.kind == dump.CONTEXT:
            c = json.loads(bytes(f.payload))
            context[c["cgroup_id"]] = (c["path"], c["container_id"])
        for buf, off, size in dump.records(f, str(path)):
            ev = decode(buf, off, size, meta["boot_to_wall_ns"],
                        lambda cg: context.get(cg, (None, None)), runs=runs)
            if ev is not None:
                got.append(msgspec.json.encode(ev) + b"\n")
    assert b"".join(got) == expected
