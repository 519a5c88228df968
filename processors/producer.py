"""Expose pre-aggregated metric families through ordinary OTel metric readers.

The OpenTelemetry metrics specification defines a ``MetricProducer``: a source of already
aggregated metrics that a ``MetricReader`` merges into each collection. The Python SDK does not
implement it yet, so :func:`attach_producer` adds it to any SDK reader (Prometheus,
periodic OTLP, in-memory): it wraps the collect callback the ``MeterProvider`` installed on the
reader (``MetricReader._collect``, set through ``_set_collect_callback``; the provider's readers
are found in ``MeterProvider._metric_readers``) so that every
collection returns the provider's own metrics plus ours, under the instrumentation scope
``spansignals``. This is the one private SDK attribute we touch; it has been stable since the
metrics SDK went GA, and a test pins it.

Counters and histograms are cumulative; for a reader that prefers delta temporality (for example
``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta``), deltas are computed per reader from
the previous collection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import Counter, Histogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from .families import CounterFamily, GaugeFamily, HistogramFamily, MetricFamily

__all__ = ["SignalMetricProducer", "attach_producer", "attach_to_meter_provider", "readers_of"]

_logger = logging.getLogger(__name__)

SCOPE_NAME = "spansignals"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("spansignals")
    except Exception:  # not installed (running from a source tree)
        return "0"


class SignalMetricProducer:
    """Holds metric families and renders them as OTel ``Metric`` data at collection time.

    Families are registered by derivations (:meth:`register`); the same producer can be attached
    to several readers. ``resource`` is used only when the provider itself has produced nothing
    yet; otherwise our scope joins the provider's first ``ResourceMetrics``.
    """

    def __init__(
        self, *, resource: Resource | None = None, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self._families: list[MetricFamily] = []
        self._names: set[str] = set()
        self._resource = resource
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._before_produce: list[Callable[[], object]] = []
        self.scope = InstrumentationScope(SCOPE_NAME, _version())

    def add_before_produce(self, hook: Callable[[], object]) -> None:
        """Run ``hook`` before every :meth:`produce` (e.g. ``engine.flush`` so that spans the
        in-app front door queued are derived before their metrics are read)."""
        self._before_produce.append(hook)

    def prepare(self) -> None:
        """Run the pre-collection hooks (a failing hook is logged); :meth:`produce` calls it, and
        so does any other reader of :attr:`families` (the collector's ``/metrics`` writer)."""
        for hook in self._before_produce:
            try:
                hook()
            except Exception:
                _logger.exception("spansignals: pre-collection hook failed")

    def register(self, *families: MetricFamily) -> None:
        """Add families; a second family with the same name is an error (it would double count)."""
        with self._lock:
            for family in families:
                if family.name in self._names:
                    raise ValueError(f"metric family {family.name!r} is already registered")
                self._names.add(family.name)
                self._families.append(family)

    @property
    def families(self) -> list[MetricFamily]:
        """The registered families, in registration order."""
        return list(self._families)

    def produce(self, delta_state: dict[Any, Any] | None = None) -> list[Metric]:
        """Render every family. With ``delta_state`` (a dict kept by the caller), sums and histograms
        are rendered as deltas since the previous call that used the same dict."""
        self.prepare()
        now = self._clock_ns()
        out: list[Metric] = []
        for family in self.families:
            try:
                metric = self._render(family, now, delta_state)
            except Exception:  # one broken callback must not hide every other metric
                _logger.exception("spansignals: rendering metric %s failed", family.name)
                continue
            if metric is not None:
                out.append(metric)
        return out

    def _render(self, family: MetricFamily, now: int, delta: dict[Any, Any] | None) -> Metric | None:
        start = family.start_time_ns
        temporality = AggregationTemporality.DELTA if delta is not None else AggregationTemporality.CUMULATIVE
        data: Any
        if isinstance(family, CounterFamily):
            points = []
            for labels, value in family.snapshot():
                point_start = start
                if delta is not None:
                    key = (family.name, labels)
                    prev_value, prev_time = delta.get(key, (0, start))
                    delta[key] = (value, now)
                    value, point_start = value - prev_value, prev_time
                points.append(NumberDataPoint(family.attributes(labels), point_start, now, value))
            if not points:
                return None
            data = Sum(data_points=points, aggregation_temporality=temporality, is_monotonic=True)
        elif isinstance(family, GaugeFamily):
            points = [NumberDataPoint(family.attributes(lb), now, now, v) for lb, v in family.snapshot()]
            if not points:
                return None
            data = Gauge(data_points=points)
        elif isinstance(family, HistogramFamily):
            hpoints = []
            bounds = family.bounds
            for labels, (counts, count, total, lo, hi) in family.snapshot():
                point_start = start
                if delta is not None:
                    key = (family.name, labels)
                    prev = delta.get(key)
                    delta[key] = (counts, count, total, now)
                    if prev is not None:
                        counts = [a - b for a, b in zip(counts, prev[0], strict=True)]
                        count, total, point_start = count - prev[1], total - prev[2], prev[3]
                hpoints.append(
                    HistogramDataPoint(
                        family.attributes(labels), point_start, now, count, total, counts, bounds, lo, hi
                    )
                )
            if not hpoints:
                return None
            data = HistogramData(data_points=hpoints, aggregation_temporality=temporality)
        else:
            raise TypeError(f"unknown metric family type {type(family).__name__}")
        return Metric(name=family.name, description=family.description, unit=family.unit, data=data)

    def merge_into(self, metrics_data: MetricsData | None, delta_state: dict[Any, Any] | None) -> MetricsData:
        """Return ``metrics_data`` with our scope added to its first resource."""
        metrics = self.produce(delta_state)
        scope_metrics = ScopeMetrics(scope=self.scope, metrics=metrics, schema_url="")
        if metrics_data is None or not metrics_data.resource_metrics:
            if not metrics:
                return metrics_data if metrics_data is not None else MetricsData(resource_metrics=[])
            resource = self._resource or Resource.create()
            return MetricsData(
                resource_metrics=[
                    ResourceMetrics(resource=resource, scope_metrics=[scope_metrics], schema_url="")
                ]
            )
        if not metrics:
            return metrics_data
        first, *rest = metrics_data.resource_metrics
        merged = ResourceMetrics(
            resource=first.resource,
            scope_metrics=[*first.scope_metrics, scope_metrics],
            schema_url=first.schema_url,
        )
        return MetricsData(resource_metrics=[merged, *rest])


def _prefers_delta(reader: MetricReader) -> bool:
    """Whether the reader asks for delta sums (keyed by the SDK's instrument classes)."""
    temporality: dict[type, AggregationTemporality] = getattr(reader, "_instrument_class_temporality", {})
    return any(
        t is AggregationTemporality.DELTA and issubclass(cls, (Counter, Histogram))
        for cls, t in temporality.items()
    )


def attach_producer(reader: MetricReader, producer: SignalMetricProducer) -> None:
    """Make every collection of ``reader`` include ``producer``'s metrics.

    The reader must already be registered with a ``MeterProvider`` (the provider installs the
    collect callback we wrap). Attaching the same producer twice is a no-op.
    """
    original = getattr(reader, "_collect", None)
    if original is None:
        raise ValueError("reader is not registered with a MeterProvider yet")
    if getattr(original, "_spansignals_producer", None) is producer:
        return
    delta_state: dict[Any, Any] | None = {} if _prefers_delta(reader) else None

    def collect(reader_arg: MetricReader, timeout_millis: float = 10_000) -> MetricsData:
        data = original(reader_arg, timeout_millis=timeout_millis)
        try:
            return producer.merge_into(data, delta_state)
        except Exception:
            _logger.exception("spansignals: merging derived metrics failed")
            return data

    collect._spansignals_producer = producer  # type: ignore[attr-defined]
    reader._collect = collect  # type: ignore[assignment]


def readers_of(meter_provider: Any) -> tuple[MetricReader, ...]:
    """The readers of an SDK ``MeterProvider`` (empty for any other provider)."""
    readers = getattr(meter_provider, "_metric_readers", None)
    if readers is None:  # older SDKs kept them on the configuration
        readers = getattr(getattr(meter_provider, "_sdk_config", None), "metric_readers", ())
    return tuple(readers or ())


def attach_to_meter_provider(meter_provider: Any, producer: SignalMetricProducer) -> int:
    """Attach ``producer`` to every reader of an SDK ``MeterProvider``; returns how many.

    The producer adopts the provider's resource (used when the provider has produced nothing of
    its own yet) unless it was given one.
    """
    config = getattr(meter_provider, "_sdk_config", None)
    if producer._resource is None and config is not None:
        producer._resource = config.resource
    readers = readers_of(meter_provider)
    for reader in readers:
        attach_producer(reader, producer)
    return len(readers)
