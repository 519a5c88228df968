"""The direct Prometheus text writer: the same samples as the OTel exporter path, valid for promtool."""

from __future__ import annotations

import importlib.util
import math
import shutil
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from peers import missing_peer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spansignals.processors.cost import MoneyCounterFamily
from spansignals.processors.exposition import PrometheusTextWriter, escape_label_value, prometheus_name
from spansignals.processors.families import (
    CounterFamily,
    GaugeFamily,
    HistogramCountFamily,
    HistogramFamily,
    MetricFamily,
)
from spansignals.processors.producer import SignalMetricProducer, attach_producer

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "metrics_scrape.py"
RESOURCE = Resource.create({"service.name": "exposition-test", "deployment.environment": 'a"b'})
TRICKY = 'quote " backslash \\ newline \n tab \t é ✓'


def _old_text(producer: SignalMetricProducer) -> str:
    """What the collector's /metrics rendered before: the OTel exporter on a private provider."""
    registry = CollectorRegistry(auto_describe=False)
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    attach_producer(reader, producer)
    try:
        return generate_latest(registry).decode()
    finally:
        provider.shutdown()


def _writer(producer: SignalMetricProducer) -> PrometheusTextWriter:
    return PrometheusTextWriter(
        lambda: producer.families,
        scope=(producer.scope.name, producer.scope.version or ""),
        resource_attributes=RESOURCE.attributes,
        before=producer.prepare,
    )


def _samples(text: str) -> Counter[tuple[Any, ...]]:
    """Every sample as (family, type, help, sample name, labels, value), empty labels left out:
    Prometheus stores a label with an empty value as no label at all."""
    out: Counter[tuple[Any, ...]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if v != ""))
            value = "NaN" if math.isnan(sample.value) else sample.value
            out[(family.name, family.type, family.documentation, sample.name, labels, value)] += 1
    return out


def _tricky_producer() -> SignalMetricProducer:
    """Families covering units, escapes, None labels, non-string labels, overflow and infinities."""
    producer = SignalMetricProducer(resource=RESOURCE)
    requests = CounterFamily(
        "test.requests",
        "Requests with a \\ and a\nnewline in HELP.",
        "{request}",
        ("route", "code"),
        max_series=4,
    )
    requests.add(("/a", 200), 3)
    requests.add(("/a", 500), 0.1)
    requests.add((TRICKY, None), 2)
    requests.add(("/flag", True), 1)
    requests.add(("/overflow-1", 200), 5)  # past the cap: one overflow series
    requests.add(("/overflow-2", 200), 6)
    already_total = CounterFamily("test.events_total", "Events.", "1", ("kind",))
    already_total.add(("x",), 1e20)
    money = MoneyCounterFamily("test.cost.usd", "Spend.", "{USD}", ("provider",))
    money.add(("openai",), Decimal("0.000123"))
    wait = GaugeFamily("test.wait", "Wait.", "s", ("queue",))
    wait.set(("q1",), math.inf)
    wait.set(("q2",), -math.inf)
    wait.set(("q3",), -2.5)
    wait.set(("",), 7)
    suffixed = GaugeFamily("test.size_bytes", "Size.", "By", ("kind",), callback=lambda: [(("cb",), 1024.0)])
    ratio = GaugeFamily("test.used.ratio", "Used.", "1", ("a", "b"))
    ratio.set((None, None), 0.25)
    empty = CounterFamily("test.never", "Never written.", "1", ("x",))
    latency = HistogramFamily(
        "test.latency", "Latency.", "s", ("service.name", "span.name"), (1, 2.5, 10), max_series=3
    )
    for value in (0.5, 1, 2, 2.5, 9.99, 10, 11, 1e9):
        latency.record(("svc", "GET /x"), value)
    latency.record(("svc", None), 3, weight=2.6)
    latency.record(("svc", TRICKY), 0.1)
    latency.record(("svc", "over the cap"), 4)
    calls = HistogramCountFamily("test.calls", "Calls.", "1", latency)
    lag = HistogramFamily("test.loop.lag", "No labels.", "s", (), (0.1, 1.0), max_series=1)
    lag.record((), 0.05)
    stalls = CounterFamily("test.loop.stalls", "No labels.", "{stall}", (), max_series=1)
    stalls.add((), 2)
    producer.register(
        requests, already_total, money, wait, suffixed, ratio, empty, latency, calls, lag, stalls
    )
    return producer


def test_same_samples_as_the_otel_exporter_path() -> None:
    """Names, HELP, TYPE, labels (escapes, JSON non-strings, overflow) and values match the exporter's."""
    producer = _tricky_producer()
    old, new = _samples(_old_text(producer)), _samples(_writer(producer).render().decode())
    assert new == old
    names = {key[3] for key in new}
    assert {"test_requests_total", "test_events_total", "test_cost_usd_total", "test_wait_seconds"} <= names
    assert {
        "test_size_bytes",
        "test_used_ratio",
        "test_latency_seconds_bucket",
        "test_calls_total",
    } <= names
    assert not any(name.startswith("test_never") for name in names)


def _collector_producer(red_series: int) -> SignalMetricProducer:
    """The collector's families (example config), filled by ``benchmarks/metrics_scrape.py``."""
    spec = importlib.util.spec_from_file_location("metrics_scrape", BENCHMARK)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["metrics_scrape"] = bench
    spec.loader.exec_module(bench)
    producer: SignalMetricProducer = bench.collector_producer(RESOURCE)
    bench.fill(producer, red_series)
    return producer


def test_same_samples_at_the_default_cap() -> None:
    """The collector's families, RED filled to its 2000-series cap, render to the same samples."""
    producer = _collector_producer(2000)
    new_text = _writer(producer).render().decode()
    new = _samples(new_text)
    assert new == _samples(_old_text(producer))
    red = [k for k in new if k[3] == "traces_span_metrics_duration_seconds_count"]
    assert len(red) == 2001 and sum(1 for k in red if ("otel_metric_overflow", "true") in k[4]) == 1


def test_promtool_accepts_the_exposition() -> None:
    """promtool check metrics finds nothing to say about the writer's output."""
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_peer("promtool is not installed (apt-get install prometheus)")
    for producer in (_tricky_producer(), _collector_producer(50)):
        text = _writer(producer).render()
        result = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert not (result.stdout + result.stderr).strip()


def test_label_text_is_rendered_once_per_series() -> None:
    """A scrape only formats numbers: a series' labels are turned into text on its first scrape only."""
    calls: list[tuple[Any, ...]] = []

    class Watched(CounterFamily):
        def attributes(self, labels: tuple[Any, ...]) -> dict[str, Any]:
            calls.append(labels)
            return super().attributes(labels)

    family = Watched("test.watched", "Watched.", "1", ("k",))
    producer = SignalMetricProducer()
    producer.register(family)
    writer = _writer(producer)
    family.add(("a",), 1)
    family.add(("b",), 1)
    writer.render()
    family.add(("a",), 1)
    family.add(("c",), 1)
    text = writer.render().decode()
    assert sorted(calls) == [("a",), ("b",), ("c",)]
    assert 'test_watched_total{k="a",otel_scope_name="spansignals"' in text and "} 2\n" in text


def test_label_cache_is_bounded_and_dropped_on_reset() -> None:
    """Series a gauge stops exporting, or a reset family's, do not keep their cached text."""
    gauge = GaugeFamily("test.churn", "Churn.", "1", ("k",))
    producer = SignalMetricProducer()
    producer.register(gauge)
    writer = _writer(producer)
    for i in range(500):
        gauge.set((f"s{i}",), 1)
        writer.render()
        gauge.remove((f"s{i}",))
    assert writer.cached_label_sets() <= 2 + 64
    for i in range(100):
        gauge.set((f"r{i}",), 1)
    writer.render()
    gauge.reset()
    assert writer.render().decode().count("test_churn") == 0
    assert writer.cached_label_sets() == 0


def test_failing_family_is_left_out_alone(caplog: pytest.LogCaptureFixture) -> None:
    """A gauge callback that raises loses its family only (logged), not the scrape."""

    def broken() -> list[tuple[tuple[Any, ...], float]]:
        raise RuntimeError("callback broke")

    bad = GaugeFamily("test.bad", "Bad.", "1", ("k",), callback=broken)
    good = CounterFamily("test.good", "Good.", "1", ("k",))
    good.add(("x",), 1)
    producer = SignalMetricProducer()
    producer.register(bad, good)
    text = _writer(producer).render().decode()
    assert "test_bad" not in text and 'test_good_total{k="x"' in text
    assert "rendering metric test.bad failed" in caplog.text


def test_hooks_run_and_late_families_appear() -> None:
    """The producer's pre-collection hooks run first; families registered after the writer show up."""
    producer = SignalMetricProducer()
    late = CounterFamily("test.late", "Late.", "1", ("k",))
    producer.add_before_produce(lambda: late.add(("hooked",), 1))
    writer = _writer(producer)
    assert "test_late" not in writer.render().decode()
    producer.register(late)
    assert 'test_late_total{k="hooked",' in writer.render().decode()


def test_target_info_and_unknown_family_types() -> None:
    """target_info carries the resource even with no series; an unknown family kind is skipped."""
    producer = SignalMetricProducer()
    producer.register(MetricFamily("test.abstract", "Abstract.", "1", ("k",)))
    text = _writer(producer).render().decode()
    assert text.startswith("# HELP target_info Target metadata\n# TYPE target_info gauge\n")
    assert 'deployment_environment="a\\"b"' in text and 'service_name="exposition-test"' in text
    assert "test_abstract" not in text


@pytest.mark.parametrize(
    ("value", "escaped"),
    [("plain", "plain"), ('a"b', 'a\\"b'), ("a\\b", "a\\\\b"), ("a\nb", "a\\nb"), ('\\"\n', '\\\\\\"\\n')],
)
def test_label_values_are_escaped(value: str, escaped: str) -> None:
    """Backslash, double quote and line feed are escaped as the text format requires."""
    assert escape_label_value(value) == escaped


def test_names_follow_the_exporter() -> None:
    """Unit suffixes and _total come out as the OTel exporter makes them."""
    assert prometheus_name(CounterFamily("traces.span.metrics.calls", "", "1", ())) == (
        "traces_span_metrics_calls_total"
    )
    assert prometheus_name(GaugeFamily("spansignals.ratelimit.reset", "", "s", ())) == (
        "spansignals_ratelimit_reset_seconds"
    )
    assert prometheus_name(GaugeFamily("x.wait_seconds", "", "s", ())) == "x_wait_seconds"
    assert prometheus_name(CounterFamily("x.cost.usd", "", "{USD}", ())) == "x_cost_usd_total"
