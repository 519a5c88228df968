"""RED metrics compatible with the OTel Collector's spanmetrics connector.

``traces_span_metrics_calls_total`` and ``traces_span_metrics_duration_seconds`` (a histogram),
labelled ``service_name``, ``span_name``, ``span_kind`` (``SPAN_KIND_CLIENT`` …) and
``status_code`` (``STATUS_CODE_ERROR`` …) plus configured dimensions, exactly as the connector
names them with its ``traces.span.metrics`` namespace, so dashboards and rules written for the
connector work unchanged.

A dimension is looked up in the span attributes, then the resource attributes; when absent, its
``default`` is used, or the label is left out when no default is given (the connector's rule).
Spans that carry a sampling threshold count for their adjusted count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .engine import SignalSpanProcessor
from .families import DEFAULT_MAX_SERIES, CounterFamily, HistogramFamily, MetricFamily
from .view import SpanView

__all__ = ["DEFAULT_BUCKETS_S", "Dimension", "RedSpanProcessor"]

# The spanmetrics connector's default explicit buckets (2ms … 15s), in seconds.
DEFAULT_BUCKETS_S: tuple[float, ...] = (
    0.002,
    0.004,
    0.006,
    0.008,
    0.01,
    0.05,
    0.1,
    0.2,
    0.4,
    0.8,
    1.0,
    1.4,
    2.0,
    5.0,
    10.0,
    15.0,
)
_BASE_LABELS = ("service.name", "span.name", "span.kind", "status.code")


@dataclass(frozen=True)
class Dimension:
    """An extra label taken from a span or resource attribute (``name``), with an optional default."""

    name: str
    default: str | None = None


class RedSpanProcessor(SignalSpanProcessor):
    """Calls and duration per service, span name, kind and status (and extra dimensions).

    Defaults: the connector's buckets, no extra dimensions, 2000 series per metric.
    """

    processor_name = "red"

    def __init__(
        self,
        *,
        dimensions: Sequence[Dimension] = (),
        buckets_s: Sequence[float] = DEFAULT_BUCKETS_S,
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> None:
        super().__init__()
        self.dimensions = tuple(dimensions)
        labels = _BASE_LABELS + tuple(d.name for d in self.dimensions)
        self.calls = CounterFamily(
            "traces.span.metrics.calls",
            "Number of spans (spanmetrics-compatible).",
            "1",
            labels,
            max_series=max_series,
        )
        self.duration = HistogramFamily(
            "traces.span.metrics.duration",
            "Span duration (spanmetrics-compatible).",
            "s",
            labels,
            buckets_s,
            max_series=max_series,
        )

    def metric_families(self) -> list[MetricFamily]:
        return [self.calls, self.duration]

    def observe(self, view: SpanView) -> None:
        labels: tuple[object, ...] = (view.service_name, view.name, view.kind_name, view.status_name)
        if self.dimensions:
            attrs, resource = view.attributes, view.resource
            extra = []
            for dim in self.dimensions:
                value = attrs.get(dim.name)
                if value is None:
                    value = resource.get(dim.name, dim.default)
                extra.append(None if value is None else str(value))
            labels += tuple(extra)
        weight = view.weight
        self.calls.add(labels, weight)
        self.duration.record(labels, view.duration_s, max(1, round(weight)))
