"""Tests of the engine, the metric producer bridge and the RED processor together."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, generate_latest

from spansignals.processors import (
    CounterFamily,
    EngineSpanProcessor,
    RedSpanProcessor,
    SignalEngine,
    SignalMetricProducer,
    SignalSpanProcessor,
    SpanView,
)
from spansignals.processors.producer import attach_to_meter_provider
from spansignals.processors.red import Dimension


class Exploding(SignalSpanProcessor):
    """A derivation that always raises."""

    processor_name = "exploding"

    def observe(self, view: SpanView) -> None:
        raise RuntimeError("boom")


def _setup(*processors: SignalSpanProcessor, reader: Any = None):
    engine = SignalEngine(list(processors))
    reader = reader or InMemoryMetricReader()
    meter_provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "meter-owner"})
    )
    producer = SignalMetricProducer()
    producer.register(*engine.metric_families())
    assert attach_to_meter_provider(meter_provider, producer) == 1
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    tracer_provider.add_span_processor(EngineSpanProcessor(engine))
    return engine, reader, tracer_provider.get_tracer("test")


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    return list(m.data.data_points)
    return []


def test_red_counts_calls_per_labels_through_a_reader():
    """Three client spans and one failing server span give two exact call series."""
    _, reader, tracer = _setup(RedSpanProcessor())
    for _ in range(3):
        with tracer.start_as_current_span("GET /x", kind=SpanKind.CLIENT):
            pass
    with tracer.start_as_current_span("handle", kind=SpanKind.SERVER) as s:
        s.set_status(StatusCode.ERROR)
    calls = {
        tuple(sorted(p.attributes.items())): p.value for p in _points(reader, "traces.span.metrics.calls")
    }
    assert calls == {
        (
            ("service.name", "svc"),
            ("span.kind", "SPAN_KIND_CLIENT"),
            ("span.name", "GET /x"),
            ("status.code", "STATUS_CODE_UNSET"),
        ): 3,
        (
            ("service.name", "svc"),
            ("span.kind", "SPAN_KIND_SERVER"),
            ("span.name", "handle"),
            ("status.code", "STATUS_CODE_ERROR"),
        ): 1,
    }
    durations = _points(reader, "traces.span.metrics.duration")
    assert sorted(p.count for p in durations) == [1, 3]


def test_processor_exception_never_reaches_span_end_and_is_counted():
    """A raising derivation leaves span.end() quiet, RED still counts, the error is counted."""
    engine, reader, tracer = _setup(Exploding(), RedSpanProcessor())
    for _ in range(4):
        with tracer.start_as_current_span("op"):
            pass
    assert engine.errors.count("exploding") == 4
    errors = _points(reader, "spansignals.processor.errors")
    assert [(p.attributes, p.value) for p in errors] == [({"processor": "exploding"}, 4)]
    assert sum(p.value for p in _points(reader, "traces.span.metrics.calls")) == 4


def test_standalone_derivation_as_sdk_span_processor_swallows_errors():
    """A derivation added directly to a TracerProvider also never raises into span.end()."""
    proc = Exploding()
    tp = TracerProvider()
    tp.add_span_processor(proc)
    with tp.get_tracer("t").start_as_current_span("op"):
        pass
    assert proc.errors.count("exploding") == 1


def test_extra_dimensions_from_span_then_resource_then_default():
    """Dimensions come from span attributes, else resource, else default, else are omitted."""
    red = RedSpanProcessor(
        dimensions=[Dimension("http.method"), Dimension("deployment", "none"), Dimension("region")]
    )
    red.observe(SpanView("a", 2, 0, 1, 0, {"http.method": "GET"}, {"region": "eu"}, service_name="s"))
    red.observe(SpanView("a", 2, 0, 1, 0, {}, {}, service_name="s"))
    attrs = sorted((tuple(sorted(red.calls.attributes(k).items())) for k, _ in red.calls.snapshot()))
    assert attrs == [
        (
            ("deployment", "none"),
            ("http.method", "GET"),
            ("region", "eu"),
            ("service.name", "s"),
            ("span.kind", "SPAN_KIND_SERVER"),
            ("span.name", "a"),
            ("status.code", "STATUS_CODE_UNSET"),
        ),
        (
            ("deployment", "none"),
            ("service.name", "s"),
            ("span.kind", "SPAN_KIND_SERVER"),
            ("span.name", "a"),
            ("status.code", "STATUS_CODE_UNSET"),
        ),
    ]


def test_sampling_weight_scales_calls():
    """A span standing for 4 counts 4 calls; a fractional adjusted count stays exact in calls."""
    red = RedSpanProcessor()
    red.observe(SpanView("a", 2, 0, 1_000_000, 0, {}, {}, service_name="s", weight=4.0))
    assert sum(v for _, v in red.calls.snapshot()) == 4
    [(_, (_, count, _, _, _))] = red.duration.snapshot()
    assert count == 4
    red.observe(SpanView("a", 2, 0, 1_000_000, 0, {}, {}, service_name="s", weight=1 / 0.3))
    assert sum(v for _, v in red.calls.snapshot()) == pytest.approx(4 + 1 / 0.3)
    [(_, (_, count, _, _, _))] = red.duration.snapshot()
    assert count == 7  # histogram counts are whole spans


def test_calls_counter_cannot_be_updated_on_its_own():
    """RED's calls counter is derived from the histogram; adding to it directly is an error."""
    red = RedSpanProcessor()
    with pytest.raises(TypeError, match="derived"):
        red.calls.add(("x",), 1)


def test_prometheus_exposition_uses_spanmetrics_names_and_overflow_label():
    """The Prometheus reader renders spanmetrics names, labels and the overflow series."""
    registry = CollectorRegistry()
    _, _, tracer = _setup(RedSpanProcessor(max_series=1), reader=PrometheusMetricReader(registry=registry))
    for name in ("a", "b", "c"):
        with tracer.start_as_current_span(name, kind=SpanKind.SERVER):
            pass
    text = generate_latest(registry).decode()
    assert "target_info{" in text and 'service_name="meter-owner"' in text
    calls = [ln for ln in text.splitlines() if ln.startswith("traces_span_metrics_calls_total{")]
    assert len(calls) == 2 and all('otel_scope_name="spansignals"' in ln for ln in calls)
    assert 'span_kind="SPAN_KIND_SERVER"' in text and 'service_name="svc"' in text
    assert 'status_code="STATUS_CODE_UNSET"' in text
    assert "traces_span_metrics_duration_seconds_bucket{" in text
    assert 'le="0.002"' in text
    overflow = [
        ln
        for ln in text.splitlines()
        if ln.startswith("traces_span_metrics_calls_total") and 'otel_metric_overflow="true"' in ln
    ]
    assert len(overflow) == 1 and overflow[0].endswith(" 2.0")


def test_delta_reader_gets_deltas():
    """A reader that prefers delta temporality sees per-collection increments."""
    reader = InMemoryMetricReader(
        preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
    )
    red = RedSpanProcessor()
    _setup(red, reader=reader)
    view = SpanView("a", 2, 0, 1, 0, {}, {}, service_name="s")
    red.observe(view)
    red.observe(view)
    first = _points(reader, "traces.span.metrics.calls")
    red.observe(view)
    data = reader.get_metrics_data()
    second = [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "traces.span.metrics.calls"
        for p in m.data.data_points
    ]
    assert [p.value for p in first] == [2] and [p.value for p in second] == [1]
    metric = next(
        m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "traces.span.metrics.duration"
    )
    assert metric.data.aggregation_temporality is AggregationTemporality.DELTA
    assert [p.count for p in metric.data.data_points] == [1]


def test_duplicate_family_names_are_refused():
    """Registering two families with one name would double count, so it raises."""
    producer = SignalMetricProducer()
    producer.register(CounterFamily("x", "", "1", ()))
    try:
        producer.register(CounterFamily("x", "", "1", ()))
    except ValueError as exc:
        assert "already registered" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_attach_producer_relies_on_the_sdk_collect_callback():
    """Pins the one private SDK hook we use: readers registered with a provider have _collect."""
    reader = InMemoryMetricReader()
    assert getattr(reader, "_collect", None) is None
    MeterProvider(metric_readers=[reader])
    assert callable(reader._collect)
