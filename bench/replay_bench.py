#!/usr/bin/env python3
"""Replay throughput, records per CPU-second on one core: into Event
Structs, to JSON Lines, a filtered pass that keeps 1 record in 1000, and
`--stats`. Each dump is made as `uringwatch record` writes one (RING frames
of the ring's bytes) from call records of the committed corpus (real tracer
output at the current record ABI), repeated; every 1000th copy gets another
pid, for the filter. Two dumps: "mix", all the corpus's call records
(every opcode, identities, 16384-fd raced calls; at record ABI 3, 1,752
records of 1.2 KB on average), and "flood", one invalid-opcode call's
record (488 bytes; 688 at ABI 2), what a recording of a process flooding
the tracer holds.

    .venv/bin/python bench/replay_bench.py [--records N] [--repeat R]

With --file DUMP (a real recording, e.g. `uringwatch record --no-fair -w`
around `bench/loadgen -g -n 260000 files 8`: 336 MB of identity-rich
calls) the same passes run over that file instead, reported in MB and
records per CPU-second; the filtered pass there is `-p` of a pid the file
does not hold (it keeps nothing: a search of a large recording).
"""

import argparse
import gzip
import os
import pathlib
import statistics
import struct
import tempfile
import time

from uringwatch import Filters
from uringwatch.recordings import dump
from uringwatch.record import layout
from uringwatch.live import reader, ringbuf
from uringwatch.outputs.output import Writer
from uringwatch.recordings.replay import Reader

# the current record ABI's corpus: the header scan reads only that ABI in place
CORPUS = pathlib.Path(__file__).parent.parent / "tests" / "data" / \
    f"calls-abi{layout.ABI_VERSION}.uwd.gz"
KEEP_EVERY = 1000
FLOOD_OPCODE = 9999            # the corpus's invalid calls (tests/data/make_calls.py)
MARK_PID = 0x7FFFFFF0          # the pid of the records the filtered pass keeps
_PID = struct.Struct("<I")
DUMPS = ("mix", "flood")


def corpus_records() -> tuple[dict, list[bytes], list]:
    """The corpus's header, call records and CONTEXT payloads."""
    data = gzip.decompress(CORPUS.read_bytes())
    meta, start = dump.read_header(data, str(CORPUS))
    frames = list(dump.frames(data, start, str(CORPUS), []))
    records = [bytes(buf[off:off + size]) for f in frames
               for buf, off, size in dump.records(f)
               if layout.REC_HDR.struct.unpack_from(buf, off)[0] == layout.KIND_CALL]
    context = [bytes(f.payload) for f in frames if f.kind == dump.CONTEXT]
    return meta, records, context


def flood_only(records: list[bytes]) -> list[bytes]:
    """The first invalid-opcode call's record: a flood recorded with
    --no-fair is one call's record again and again, only its timestamps
    differ."""
    at = layout.CALL3.offsets["opcode"]
    return [next(r for r in records if struct.unpack_from("<I", r, at)[0] == FLOOD_OPCODE)]


def build(path: pathlib.Path, n: int, which: str = "mix") -> None:
    meta, records, context = corpus_records()
    if which == "flood":
        records = flood_only(records)
    marked = []
    for r in records:
        m = bytearray(r)
        _PID.pack_into(m, layout.CALL3.offsets["pid"], MARK_PID)
        marked.append(bytes(m))
    with open(path, "wb") as f:
        w = dump.DumpWriter(f, meta)
        for c in context:
            w.write(dump.CONTEXT, c)
        batch = bytearray()
        for i in range(n):
            rec = (marked if i % KEEP_EVERY == 0 else records)[i % len(records)]
            batch += ringbuf.HDR.pack(len(rec), 0) + rec
            batch += bytes(-len(batch) % 8)
            if len(batch) >= reader.RING_BYTES:
                w.write_ring(memoryview(batch))
                batch = bytearray()
        if batch:
            w.write_ring(memoryview(batch))


def cpu_rate(n: int, run, repeat: int) -> float:
    """Median records per CPU-second of `run` over `repeat` runs."""
    rates = []
    for _ in range(repeat):
        t = time.process_time()
        got = run()
        rates.append(n / (time.process_time() - t))
        assert got, "nothing replayed"
    return statistics.median(rates)


def measure(records: int, repeat: int = 3, which: str = "mix") -> dict:
    """Records per CPU-second for each pass over dump `which`, on one core."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as d:
        path = str(pathlib.Path(d) / "bench.uwd")
        build(pathlib.Path(path), records, which)

        def structs():
            return sum(len(b) for b in Reader([path]).batches())

        def jsonl():
            with open(os.devnull, "w") as out:
                w = Writer(out, True)
                for batch in Reader([path]).json_batches():     # as `replay --json`
                    w.write(batch)
            return True

        def filtered():
            kept = sum(len(b) for b in Reader([path], Filters(pids=frozenset([MARK_PID])))
                       .batches())
            assert kept == -(-records // KEEP_EVERY), kept
            return kept

        def stats():
            return Reader([path]).stats()["events"] == records

        return {"records": records,
                "structs": cpu_rate(records, structs, repeat),
                "jsonl": cpu_rate(records, jsonl, repeat),
                "filtered": cpu_rate(records, filtered, repeat),
                "stats": cpu_rate(records, stats, repeat)}


ABSENT_PID = 0x7FFFFFFE         # a pid no recording holds


def measure_file(path: str, repeat: int = 3) -> dict:
    """MB and records per CPU-second of each pass over a recording, on one core."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    records = Reader([path]).stats()["events"]

    def structs():
        return sum(len(b) for b in Reader([path]).batches()) == records

    def jsonl():
        with open(os.devnull, "w") as out:
            w = Writer(out, True)
            for batch in Reader([path]).json_batches():
                w.write(batch)
        return True

    def filtered():
        return sum(len(b) for b in Reader([path], Filters(pids=frozenset([ABSENT_PID])))
                   .batches()) == 0

    def stats():
        return Reader([path]).stats()["events"] == records

    mb = os.path.getsize(path) / 1e6
    out = {"records": records, "mb": mb}
    for name, run in (("stats", stats), ("filtered", filtered), ("structs", structs),
                      ("jsonl", jsonl)):
        out[name] = cpu_rate(records, run, repeat)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dump", choices=DUMPS, action="append",
                    help="which dump (default: both)")
    ap.add_argument("--file", action="append", metavar="DUMP",
                    help="measure this recording instead (MB/s and records/s)")
    args = ap.parse_args()
    for path in args.file or ():
        r = measure_file(path, args.repeat)
        per_mb = r["mb"] / r["records"]
        print(f"{path}: {r['mb']:.0f} MB, {r['records']} records, per CPU-second: " + ", ".join(
            f"{name} {r[name] * per_mb:,.0f} MB ({r[name]:,.0f} records)"
            for name in ("stats", "filtered", "structs", "jsonl")))
    for which in args.dump or (() if args.file else DUMPS):
        r = measure(args.records, args.repeat, which)
        print(f"{which}: {r['records']} records, per CPU-second: "
              f"{r['structs']:,.0f} into Structs, {r['jsonl']:,.0f} to JSON Lines, "
              f"{r['filtered']:,.0f} filtered (1 in {KEEP_EVERY} kept), "
              f"{r['stats']:,.0f} --stats")


if __name__ == "__main__":
    main()
