"""Cost of one collector ``/metrics`` scrape at the default cardinality cap, old path against new.

Run:  python benchmarks/metrics_scrape.py [--rounds 7] [--red-series 2000] [--http]

The families are the collector's (every derivation of ``examples/config/spansignals.yaml``, the
pipeline, admission, exporter and pass-through families), with the RED histogram filled to its
cap (2000 series, plus the overflow series) and 20 series in every other family. Three renderers
of the same families, each timed in process CPU time (median of ``--rounds``), with the peak memory one scrape
allocates (tracemalloc):

- ``otel exporter``: what ``/metrics`` used before, the official OTel Prometheus exporter
  (``PrometheusMetricReader`` on a private ``MeterProvider`` and registry, the families merged
  in by ``attach_producer``) and ``prometheus_client.generate_latest``;
- ``prometheus_client``: a custom collector yielding ``prometheus_client`` metric families built
  from the same snapshots (the library way to skip the OTel conversion);
- ``direct writer``: :class:`~spansignals.processors.exposition.PrometheusTextWriter`, what
  ``/metrics`` uses now (and gzip level 1 on top, as served to Prometheus).

It prints bytes, ms per scrape and the ratio to the new path. ``--http`` also starts a real
collector in a child process for each of the old and new paths, sends it spans with 2000+
distinct names over OTLP/HTTP, and scrapes ``/metrics`` over HTTP (plain and gzip): wall ms
per scrape and the collector process' CPU ms per scrape (from ``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from spansignals.processors.config import load_config
from spansignals.processors.exposition import PrometheusTextWriter, prometheus_name
from spansignals.processors.factory import build_engine
from spansignals.processors.families import CounterFamily, HistogramFamily, MetricFamily
from spansignals.processors.producer import SignalMetricProducer, attach_producer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples/config/spansignals.yaml"
CONFIG_ENV = {"SLACK_WEBHOOK_URL": "https://hooks.example.invalid/x"}
RESOURCE_ATTRIBUTES = {"service.name": "spansignals-collector"}


# --- the families ---------------------------------------------------------------------------


def collector_producer(resource: Resource) -> SignalMetricProducer:
    """A producer holding the families a collector with the example config registers."""
    from spansignals.processors.collector.admission import AdmissionControl
    from spansignals.processors.collector.forwarding import ExporterFamilies
    from spansignals.processors.collector.pipeline import TracePipeline
    from spansignals.processors.collector.signals import SignalPassThrough

    engine = build_engine(load_config(CONFIG, env=CONFIG_ENV))
    producer = SignalMetricProducer(resource=resource)
    producer.register(*engine.metric_families(), *TracePipeline(engine).metric_families())
    producer.register(AdmissionControl().refusals)
    producer.register(*ExporterFamilies().metric_families(), *SignalPassThrough(None).metric_families())
    return producer


def fill(producer: SignalMetricProducer, red_series: int, other_series: int = 20) -> None:
    """The RED histogram to ``red_series`` series (plus overflow past its cap), ``other_series``
    series in every other family the span path writes."""
    kinds = ("SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_INTERNAL")
    for family in producer.families:
        if isinstance(family, HistogramFamily):
            for i in range(red_series + 10):
                labels = (
                    "checkout-api",
                    f"GET /api/v1/items/{i}",
                    kinds[i % 3],
                    "STATUS_CODE_ERROR" if i % 7 == 0 else "STATUS_CODE_UNSET",
                )
                labels += (None,) * (len(family.label_names) - len(labels))
                for j in range(5):
                    family.record(labels, 0.001 * (1 + i % 50) * (1 + 3 * j))
        elif isinstance(family, CounterFamily) and not hasattr(family, "histogram"):
            for i in range(other_series):
                family.add(tuple(f"{n}-{i % 4 if n != 'model' else i}" for n in family.label_names), 1 + i)
        elif family.kind == "gauge":
            for i in range(other_series):
                family.set(tuple(f"{n}-{i}" for n in family.label_names), 0.5 + i)  # type: ignore[attr-defined]


# --- the three renderers --------------------------------------------------------------------


class OtelExporterExposition:
    """The old ``/metrics``: the OTel Prometheus exporter on a private provider and registry."""

    def __init__(self, producer: SignalMetricProducer, *, resource: Resource) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        reader = PrometheusMetricReader(registry=self.registry)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        attach_producer(reader, producer)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def render_gzip(self) -> bytes:
        return gzip.compress(self.render(), compresslevel=1, mtime=0)


class _ClientCollector:
    """A ``prometheus_client`` custom collector over the families' snapshots."""

    def __init__(self, producer: SignalMetricProducer, scope: dict[str, str]) -> None:
        self._producer = producer
        self._scope = scope

    def _labels(self, family: MetricFamily, labels: tuple[Any, ...]) -> dict[str, str]:
        out = dict(self._scope)
        for key, value in family.attributes(labels).items():
            out[key.replace(".", "_")] = value if isinstance(value, str) else str(value).lower()
        return out

    def collect(self) -> Iterator[Any]:
        self._producer.prepare()
        for family in self._producer.families:
            name = prometheus_name(family)
            items = family.snapshot()  # type: ignore[attr-defined]
            if not items:
                continue
            if isinstance(family, HistogramFamily):
                metric: Any = HistogramMetricFamily(name, family.description)
                bounds = [*map(str, family.bounds), "+Inf"]
                for labels, (counts, _, total, _, _) in items:
                    attrs = self._labels(family, labels)
                    cumulative = 0
                    for bound, n in zip(bounds, counts, strict=True):
                        cumulative += n
                        metric.add_sample(f"{name}_bucket", {**attrs, "le": bound}, cumulative)
                    metric.add_sample(f"{name}_count", attrs, cumulative)
                    metric.add_sample(f"{name}_sum", attrs, total)
            else:
                counter = isinstance(family, CounterFamily)
                metric = (CounterMetricFamily if counter else GaugeMetricFamily)(name, family.description)
                for labels, value in items:
                    metric.add_sample(
                        metric.name + ("_total" if counter else ""), self._labels(family, labels), value
                    )
            yield metric


class ClientLibraryExposition:
    """The same families through a ``prometheus_client`` custom collector and ``generate_latest``."""

    def __init__(self, producer: SignalMetricProducer) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        scope = {"otel_scope_name": producer.scope.name, "otel_scope_version": producer.scope.version or ""}
        self.registry.register(_ClientCollector(producer, scope))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def direct_writer(producer: SignalMetricProducer, resource: Resource) -> PrometheusTextWriter:
    """What ``/metrics`` uses now (as :class:`~spansignals.processors.collector.PrometheusExposition`)."""
    return PrometheusTextWriter(
        lambda: producer.families,
        scope=(producer.scope.name, producer.scope.version or ""),
        resource_attributes=resource.attributes,
        before=producer.prepare,
    )


def cpu_ms(fn: Callable[[], bytes], rounds: int) -> tuple[float, int, float]:
    """Median process CPU ms of ``fn`` over ``rounds`` calls (after one warm-up), its size, and the
    peak of memory it allocated in one more call (tracemalloc, MB)."""
    size = len(fn())
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1000)
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    return statistics.median(times), size, peak


# --- over HTTP, against a running collector -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(variant: str, http_port: int, metrics_port: int) -> None:
    """Child process: a collector (example config's derivations) whose ``/metrics`` is the
    ``variant`` path (``old``: the OTel exporter swapped in; ``new``: as shipped)."""
    from spansignals.processors.collector import Collector, CollectorSettings, Endpoint

    config = load_config(CONFIG, env=CONFIG_ENV)
    settings = CollectorSettings(
        grpc_endpoint=None,
        http_endpoint=Endpoint("127.0.0.1", http_port),
        metrics_endpoint=Endpoint("127.0.0.1", metrics_port),
        max_request_bytes=64 * 1024 * 1024,
    )
    collector = Collector(build_engine(config), settings)
    if variant == "old":
        old = OtelExporterExposition(collector.producer, resource=Resource.create(RESOURCE_ATTRIBUTES))
        collector.metrics_server._exposition = old  # type: ignore[assignment]

    async def run() -> None:
        await collector.start()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await collector.stop()

    asyncio.run(run())


def _spans_request(names: int) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attr = resource_spans.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", "checkout-api"
    spans = resource_spans.scope_spans.add().spans
    now = time.time_ns()
    for i in range(names):
        for j in range(3):
            span = spans.add()
            span.trace_id = os.urandom(16)
            span.span_id = os.urandom(8)
            span.name = f"GET /api/v1/items/{i}"
            span.kind = 1 + i % 3
            span.start_time_unix_nano = now - 10**6 * (1 + i % 50) * (1 + 3 * j)
            span.end_time_unix_nano = now
    return request.SerializeToString()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_scrapes(variant: str, red_series: int, scrapes: int) -> dict[str, tuple[float, float, int]]:
    """Start a collector child, send spans, scrape: ``{mode: (wall ms, collector CPU ms, bytes)}``."""
    http_port, metrics_port = _free_port(), _free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant, str(http_port), str(metrics_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {variant} collector did not start")
        body = _spans_request(red_series + 10)
        post = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/v1/traces",
            data=body,
            headers={"Content-Type": "application/x-protobuf"},
        )
        with urllib.request.urlopen(post, timeout=60) as resp:
            resp.read()
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        results = {}
        for mode, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
            walls, cpus, size = [], [], 0
            for _ in range(scrapes + 1):
                cpu0, start = _cpu_seconds(child.pid), time.perf_counter()
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as resp:
                    size = len(resp.read())
                walls.append((time.perf_counter() - start) * 1000)
                cpus.append((_cpu_seconds(child.pid) - cpu0) * 1000)
            results[mode] = (statistics.median(walls[1:]), statistics.median(cpus[1:]), size)
        return results
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--red-series", type=int, default=2000)
    parser.add_argument("--http", action="store_true", help="also scrape real collectors over HTTP")
    parser.add_argument("--scrapes", type=int, default=5, help="HTTP scrapes per mode (--http)")
    parser.add_argument(
        "--serve", nargs=3, metavar=("VARIANT", "HTTP_PORT", "METRICS_PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), int(args.serve[2]))
        return 0

    resource = Resource.create(RESOURCE_ATTRIBUTES)
    producer = collector_producer(resource)
    fill(producer, args.red_series)
    series = sum(f.series_count() for f in producer.families)
    print(
        f"load average {os.getloadavg()[0]:.2f}; {series} series in {len(producer.families)} families, "
        f"RED at {args.red_series} (+ overflow); median of {args.rounds} rounds, process CPU"
    )
    old = OtelExporterExposition(producer, resource=resource)
    new = direct_writer(producer, resource)
    rows = [
        ("otel exporter (old)", cpu_ms(old.render, args.rounds)),
        ("prometheus_client collector", cpu_ms(ClientLibraryExposition(producer).render, args.rounds)),
        ("direct writer (new)", cpu_ms(new.render, args.rounds)),
        (
            "direct writer + gzip -1",
            cpu_ms(lambda: gzip.compress(new.render(), compresslevel=1, mtime=0), args.rounds),
        ),
    ]
    new_ms = rows[2][1][0]
    print(f"  {'renderer':30s} {'bytes':>11s} {'ms/scrape':>10s} {'x new':>7s} {'peak MB':>8s}")
    for label, (ms, size, peak) in rows:
        print(f"  {label:30s} {size:11,d} {ms:10.1f} {ms / new_ms:7.1f} {peak:8.1f}")
    print(f"  old / new: {rows[0][1][0] / new_ms:.1f}x CPU, {rows[0][1][1] / rows[2][1][1]:.2f}x bytes")
    old.shutdown()

    if args.http:
        print(f"HTTP scrapes of a running collector (median of {args.scrapes}; collector CPU from /proc)")
        for variant in ("old", "new"):
            for mode, (wall, cpu, size) in http_scrapes(variant, args.red_series, args.scrapes).items():
                print(f"  {variant:3s} {mode:5s} wall {wall:8.1f}  cpu {cpu:8.1f}  bytes {size:11,d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
