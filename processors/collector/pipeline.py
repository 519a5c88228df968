"""The collector's span path: a decoded OTLP trace request in, derived signals out.

For each ``ResourceSpans`` the resource attributes are indexed and the service name resolved once;
each span then becomes a :class:`~spansignals.processors.view.SpanView` (attributes indexed lazily,
so spans no derivation inspects stay cheap) and goes through the
:class:`~spansignals.processors.engine.SignalEngine`, which never raises.

Received spans are counted in ``spansignals_receiver_spans_total{transport, outcome}`` through a
pre-aggregated family: one update per request, never an instrument call per span.

Forwarding is not part of this stage yet (issue #6): after derivation, spans are dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..engine import SignalEngine
from ..families import CounterFamily, MetricFamily
from ..view import OtlpAttributes, view_from_otlp_span

__all__ = ["OUTCOME_ACCEPTED", "OUTCOME_REFUSED", "TracePipeline", "count_spans"]

_logger = logging.getLogger(__name__)

OUTCOME_ACCEPTED = "accepted"
OUTCOME_REFUSED = "refused"
_UNKNOWN_SERVICE = "unknown_service"


def count_spans(request: ExportTraceServiceRequest) -> int:
    """Number of spans in a request."""
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


class TracePipeline:
    """Feeds every span of a request to ``engine`` and counts what the receivers took in.

    ``receiver_spans`` is the ``spansignals.receiver.spans`` family (labels ``transport``,
    ``outcome``); register it with the metric producer next to the engine's families.
    """

    def __init__(self, engine: SignalEngine) -> None:
        self.engine = engine
        self.receiver_spans = CounterFamily(
            "spansignals.receiver.spans",
            "Spans received by the collector, by transport and outcome (accepted, refused).",
            "{span}",
            ("transport", "outcome"),
            max_series=32,
        )

    def metric_families(self) -> list[MetricFamily]:
        """The pipeline's own families (not the engine's)."""
        return [self.receiver_spans]

    def consume(self, request: ExportTraceServiceRequest, transport: str) -> int:
        """Derive signals from every span of ``request``; return the number of spans accepted.

        Never raises: a resource that cannot be read is counted as a processor error and its
        spans still count as accepted (they were acknowledged, and derivation is best effort).
        """
        process = self.engine.process
        accepted = 0
        for resource_spans in request.resource_spans:
            try:
                resource = OtlpAttributes(resource_spans.resource.attributes)
                service_name = _service_name(resource)
                for scope_spans in resource_spans.scope_spans:
                    spans = scope_spans.spans
                    accepted += len(spans)
                    for span in spans:
                        process(view_from_otlp_span(span, resource, service_name))
            except Exception as exc:  # the engine never raises; this guards the adapter
                self.engine.errors.record("collector.pipeline", exc)
        if accepted:
            self.receiver_spans.add((transport, OUTCOME_ACCEPTED), accepted)
        return accepted

    def refuse(self, transport: str, spans: int) -> None:
        """Count ``spans`` refused by a receiver (for example when shutting down)."""
        if spans > 0:
            self.receiver_spans.add((transport, OUTCOME_REFUSED), spans)


def _service_name(resource: Any) -> str:
    raw = resource.get("service.name")
    return raw if isinstance(raw, str) and raw else _UNKNOWN_SERVICE
