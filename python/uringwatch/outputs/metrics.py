"""Prometheus metrics of a live tracer, served over HTTP (`--metrics`).

Event counts are counted as events are decoded; the kernel's counters,
decode errors and the ring's fill are read from the tracer at each scrape,
so a scrape always sees the kernel's own totals. Label values are bounded:
opcodes the kernel may accept but this version does not name share
`opcode="UNKNOWN"`, errno names are a fixed set, and container ids are
the node's own containers.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from ..record import layout, opcodes
from ..record.events import Action, AnyEvent, Finding, Op, Repeat, Ring, RingBefore
from ..system.libbpf import LibbpfError
from ..errors import TracerError

# Tracer.stats() keys that count records lost, as uringwatch_dropped_total{cause}
DROP_CAUSES = ("ring_full", "no_exit", "no_enter", "inflight_full", "budget", "reserve",
               "recs_held")
# the other counters, by their metric names (a key not listed anywhere is
# exported as uringwatch_<key>_total)
OTHER_COUNTERS = {
    "emitted": ("uringwatch_records_emitted_total", "records the kernel put in the ring"),
    "read_fault": ("uringwatch_read_faults_total", "user-memory reads that faulted"),
    "filtered": ("uringwatch_filtered_total", "calls skipped by in-kernel filters"),
    "decode_errors": ("uringwatch_decode_errors_total", "records user space could not decode"),
    "runs_skipped": ("uringwatch_bpf_runs_skipped_total",
                     "program runs the kernel skipped (the program busy on that CPU): "
                     "their calls and operations uncounted"),
}


class MetricsError(TracerError):
    """--metrics can't be served: bad address, port taken, library missing."""


def parse_address(text: str) -> tuple[str, int]:
    """ADDR:PORT ([v6]:PORT for IPv6) -> (addr, port)."""
    addr, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not addr:
        raise MetricsError(f"--metrics takes ADDR:PORT (e.g. 127.0.0.1:9464), not {text!r}")
    return addr.strip("[]"), int(port)


class Metrics:
    """The metrics of one tracer, in a registry of their own."""

    def __init__(self, tracer):
        try:
            from prometheus_client import CollectorRegistry, Counter
        except ImportError:
            raise MetricsError("--metrics needs prometheus_client: "
                               "pip install 'uringwatch[metrics]'") from None
        self.tracer = tracer
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter("uringwatch_events", "io_uring_register calls traced, "
                              "by opcode and result (ok or errno name)",
                              ["opcode", "result"], registry=self.registry)
        self.container_events = Counter("uringwatch_container_events", "calls traced "
                                        "from containers, by container id",
                                        ["container_id"], registry=self.registry)
        self.operations = Counter("uringwatch_ring_operations", "operations rings "
                                  "accepted (--rings), by IORING_OP", ["opcode"],
                                  registry=self.registry)
        self.findings = Counter("uringwatch_findings", "findings (--findings), by rule id",
                                ["rule"], registry=self.registry)
        self.registry.register(_TracerCollector(tracer))
        self._server = None

    def observe(self, events: Iterable[AnyEvent]) -> None:
        """Calls by opcode and result (a repeat record stands for `count`
        calls), and ring operations by opcode (their counts)."""
        for ev in events:
            if isinstance(ev, Finding):
                self.findings.labels(ev.rule).inc()
                continue
            if isinstance(ev, Op):
                if ev.reason == "count":
                    self.operations.labels(ev.opcode_name).inc(ev.count)
                continue
            if isinstance(ev, (Ring, RingBefore, Action)):
                continue
            n = ev.count if isinstance(ev, Repeat) else 1
            name = ev.opcode_name if ev.opcode < len(opcodes.NAMES) else "UNKNOWN"
            self.events.labels(name, ev.error or "ok").inc(n)
            container = getattr(ev, "container_id", None)
            if container:
                self.container_events.labels(container).inc(n)

    def serve(self, address: str) -> "Metrics":
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        from .scrapes import ScrapeServer
        addr, port = parse_address(address)
        try:
            self._server = ScrapeServer(addr, port, lambda: generate_latest(self.registry),
                                        CONTENT_TYPE_LATEST)
        except OSError as e:
            raise MetricsError(f"--metrics {address}: {e.strerror or e}") from None
        return self

    def close(self) -> None:
        if self._server:
            self._server.close()
            self._server = None


# the aggregates' labels: a uid, its cgroup (id, and container id where it is
# one) and a cause; the overflow aggregate (uid 4294967295, cgroup 0) holds
# those past the map's size. At most counters.AGGREGATES_IN_STATS of them.
AGGREGATE_LABELS = ["uid", "cgroup_id", "container_id"]


class _TracerCollector:
    """The tracer's counters and ring fill, read at scrape time."""

    def __init__(self, tracer):
        self.tracer = tracer

    def _aggregates(self, aggregates: list[dict]) -> Iterator:
        """Calls coalesced and dropped per aggregate (uid and cgroup): what
        every process of one uid in one cgroup hid, ended ones included."""
        from prometheus_client.core import CounterMetricFamily
        coalesced = CounterMetricFamily(
            "uringwatch_aggregate_coalesced", "calls folded into repeat records, per uid "
            "and cgroup", labels=AGGREGATE_LABELS)
        dropped = CounterMetricFamily(
            "uringwatch_aggregate_dropped", "calls not sent, per uid and cgroup, by cause",
            labels=AGGREGATE_LABELS + ["cause"])
        for a in aggregates:
            labels = [str(a["uid"]), str(a["cgroup_id"]),
                      self.tracer.context(a["cgroup_id"])[1] or ""]
            coalesced.add_metric(labels, a["coalesced"])
            for cause in layout.DROPS:
                dropped.add_metric(labels + [cause], a[cause])
        yield coalesced
        yield dropped

    def describe(self):
        return []           # read live: nothing to check at registration

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        try:
            stats = self.tracer.stats()
            used, size = self.tracer.ring_usage()
        except (TracerError, LibbpfError, ValueError, OSError):
            return          # closed under the scrape: serve the event counts alone
        dropped = CounterMetricFamily("uringwatch_dropped", "records lost, by cause",
                                      labels=["cause"])
        for cause in DROP_CAUSES:
            dropped.add_metric([cause], stats.get(cause, 0))
        yield dropped
        yield from self._aggregates(stats.get("aggregates", []))
        for key, value in stats.items():
            if key in DROP_CAUSES or not isinstance(value, int):
                continue    # "processes" is a list: its drops are in the causes
            name, text = OTHER_COUNTERS.get(key, (f"uringwatch_{key}_total",
                                                  f"tracer counter {key}"))
            yield CounterMetricFamily(name.removesuffix("_total"), text, value=value)
        yield GaugeMetricFamily("uringwatch_ring_used_bytes",
                                "bytes queued in the ring buffer, not yet read", value=used)
        yield GaugeMetricFamily("uringwatch_ring_size_bytes",
                                "the ring buffer's size", value=size)
