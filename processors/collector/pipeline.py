"""The collector's span path: an OTLP trace request in, derived signals out.

The receivers hand protobuf bodies to :meth:`TracePipeline.receive`, which lets the native wire
check and scanner read them without building a protobuf message when they can (see
:mod:`.spanscan`), and has upb parse them otherwise; :meth:`TracePipeline.ingest_received` then
derives. :meth:`TracePipeline.ingest` takes a parsed request (OTLP/JSON, tests) and the same rules.

For each ``ResourceSpans`` the resource attributes are indexed and the service name resolved once;
each span then becomes a :class:`~spansignals.processors.view.SpanView` (attributes indexed lazily,
so spans no derivation inspects stay cheap) and goes through the
:class:`~spansignals.processors.engine.SignalEngine`, which never raises.

Spans inside a well-formed request that break a rule of :mod:`.validation` (ids, times,
attribute caps) are removed from the request, never derived, and reported by :meth:`TracePipeline.ingest`
for the response's ``partial_success``. With ``redact=True`` the credentials in every attribute are
rewritten in place first (:mod:`.redaction_stage`), so derivations never see them.

Received spans are counted in ``spansignals_receiver_spans_total{transport, outcome}`` (outcome
``accepted``, ``rejected`` for invalid spans, ``refused`` for retryable refusals) through a
pre-aggregated family: one update per request, never an instrument call per span.

Whether the request still equals the received bytes afterwards is :attr:`IngestResult.modified`
(spans removed or redacted): forwarding sends the received bytes only when it is false.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..engine import SignalEngine
from ..families import CounterFamily, MetricFamily
from ..view import OtlpAttributes, OtlpSpanView, SpanView, _sampling_weight
from .decoding import RequestDecodeError, parse_protobuf_request
from .redaction_stage import redact_request
from .span_offsets import EncodedSpans
from .spanscan import ScannedBatch, count_unparsed, scan_views
from .validation import Rejections, SpanLimits, span_rule_broken, values_too_long

__all__ = [
    "OUTCOME_ACCEPTED",
    "OUTCOME_REFUSED",
    "OUTCOME_REJECTED",
    "IngestResult",
    "ReceivedTraces",
    "TracePipeline",
    "count_spans",
]

_logger = logging.getLogger(__name__)

OUTCOME_ACCEPTED = "accepted"
OUTCOME_REFUSED = "refused"
OUTCOME_REJECTED = "rejected"
_UNKNOWN_SERVICE = "unknown_service"
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)


def count_spans(request: ExportTraceServiceRequest) -> int:
    """Number of spans in a request."""
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


class IngestResult(NamedTuple):
    """What :meth:`TracePipeline.ingest` did with one request."""

    accepted: int
    """Spans derived (and to be forwarded)."""
    rejected: int
    """Invalid spans removed from the request (``partial_success.rejected_spans``)."""
    error_message: str
    """``partial_success.error_message``: empty when nothing was rejected."""
    modified: bool
    """The request no longer equals the received bytes (spans removed or redacted): re-encode it
    to forward."""


VERIFY_NATIVE_ENV = "SPANSIGNALS_VERIFY_NATIVE"
"""Set to 1, every request the native wire check accepted is parsed with upb as well, and a
difference (upb refusing it, or another span count) is logged and counted as a processor error
(``collector.wirecheck``); upb's answer then counts. A diagnostic switch: it adds upb's parse
to every request."""


@dataclass(slots=True)
class ReceivedTraces:
    """A received protobuf body, decoded as far as admitting it needs (:meth:`TracePipeline.receive`):
    its span count, and ``request``, upb's parse, unless the native wire check found the body to
    be a request upb accepts without building one (then ``request`` is ``None`` until
    :meth:`message` is called).
    """

    body: bytes
    span_count: int
    request: ExportTraceServiceRequest | None

    def message(self) -> ExportTraceServiceRequest:
        """The parsed request (parsed now if the native path skipped it)."""
        if self.request is None:
            self.request = parse_protobuf_request(self.body)
        return self.request


class TracePipeline:
    """Feeds every valid span of a request to ``engine`` and counts what the receivers took in.

    ``limits`` are the per-span caps of :mod:`.validation` (defaults: :class:`SpanLimits`);
    ``redact`` turns on the credential redaction stage. ``receiver_spans`` is the
    ``spansignals.receiver.spans`` family (labels ``transport``, ``outcome``); register it with the
    metric producer next to the engine's families.
    """

    def __init__(
        self, engine: SignalEngine, *, limits: SpanLimits | None = None, redact: bool = False
    ) -> None:
        self.engine = engine
        self.limits = limits or SpanLimits()
        self.redact = redact
        self.verify_native = os.environ.get(VERIFY_NATIVE_ENV, "").strip() == "1"
        self.receiver_spans = CounterFamily(
            "spansignals.receiver.spans",
            "Spans received by the collector, by transport and outcome (accepted, rejected, refused).",
            "{span}",
            ("transport", "outcome"),
            max_series=32,
        )

    @property
    def mutates(self) -> bool:
        """True when a stage rewrites spans (redaction): forwarding must then always re-encode."""
        return self.redact

    def metric_families(self) -> list[MetricFamily]:
        """The pipeline's own families (not the engine's)."""
        return [self.receiver_spans]

    def consume(self, request: ExportTraceServiceRequest, transport: str) -> int:
        """:meth:`ingest` returning only the number of spans accepted."""
        return self.ingest(request, transport).accepted

    def receive(self, body: bytes) -> ReceivedTraces:
        """Check and count a protobuf ``ExportTraceServiceRequest`` for :meth:`ingest_received`;
        raises :class:`~.decoding.RequestDecodeError` when it is not one.

        The receivers' way in: cheap, so that a request refused for want of queue room (see
        ``TraceForwarding``) costs little more than this. Without redaction the native wire check
        (:func:`~.spanscan.count_unparsed`) answers without building a message; when it is not
        sure, or with redaction, upb parses the body.
        """
        if not self.redact:
            try:
                span_count = count_unparsed(body)
            except Exception as exc:  # memory, say: upb still decides
                self.engine.errors.record("collector.wirecheck", exc)
                span_count = None
            if span_count is not None:
                if self.verify_native:
                    return self._verified(body, span_count)
                return ReceivedTraces(body, span_count, None)
        request = parse_protobuf_request(body)
        return ReceivedTraces(body, count_spans(request), request)

    def _verified(self, body: bytes, span_count: int) -> ReceivedTraces:
        """:data:`VERIFY_NATIVE_ENV`'s check of a body the wire check accepted: upb parses it too,
        and any difference is logged and counted; upb's answer is the one that counts."""
        try:
            request = parse_protobuf_request(body)
        except RequestDecodeError:
            self._native_differs(f"the wire check accepted a body upb refuses ({len(body)} bytes)")
            raise
        upb_count = count_spans(request)
        if upb_count != span_count:
            self._native_differs(f"the wire check counted {span_count} spans, upb {upb_count}")
        return ReceivedTraces(body, upb_count, request)

    def _native_differs(self, what: str) -> None:
        _logger.error("spansignals collector: %s", what)
        self.engine.errors.record("collector.wirecheck", RuntimeError(what))

    def ingest_received(self, received: ReceivedTraces, transport: str) -> IngestResult:
        """:meth:`ingest` for what :meth:`receive` checked: the native scanner's views when it
        takes the request (its span count checked against the wire check's or upb's), else the
        Python path over upb's parse (made now if the wire check had spared it)."""
        body = received.body
        if not self.redact:
            views = self._scan(body, received.span_count)
            if views is not None:
                return self._derive_scanned(views, transport)
        return self._ingest_parsed(received.message(), transport, len(body), body, received.span_count)

    def ingest(
        self,
        request: ExportTraceServiceRequest,
        transport: str,
        *,
        body_bytes: int = 0,
        body: bytes | None = None,
        span_count: int | None = None,
    ) -> IngestResult:
        """Redact (if on), drop invalid spans, derive signals from the rest.

        ``body_bytes`` is the decoded body's size: the attribute length rule runs only when it is
        over the limit (see :mod:`.validation`); 0 means unknown (checked via the request size).
        ``body``, the protobuf encoding ``request`` was parsed from, lets derivations rule keys out
        for every span at once (:mod:`.span_offsets`); its length stands for ``body_bytes``.
        ``span_count`` is :func:`count_spans` of ``request`` when the caller has it already.
        Never raises: a resource that cannot be read is counted as a processor error and its
        spans still count as accepted (they were acknowledged, and derivation is best effort).
        """
        if body is not None and span_count is None:
            span_count = count_spans(request)
        if body is not None and not self.redact:
            assert span_count is not None
            views = self._scan(body, span_count)
            if views is not None:
                return self._derive_scanned(views, transport)
        return self._ingest_parsed(request, transport, body_bytes, body, span_count)

    def _ingest_parsed(
        self,
        request: ExportTraceServiceRequest,
        transport: str,
        body_bytes: int,
        body: bytes | None,
        span_count: int | None,
    ) -> IngestResult:
        """The Python path: validation of every span, views over upb's message, derivation."""
        modified = False
        if self.redact and redact_request(request):
            modified = True
        hint: EncodedSpans | None = None
        if body is not None:
            body_bytes = body_bytes or len(body)
            assert span_count is not None
            hint = EncodedSpans(body, span_count)
        position = 0  # the span's number in the request, as EncodedSpans counts them
        limits = self.limits
        max_attributes = limits.max_attributes
        value_limit = limits.max_attribute_value_bytes
        if not body_bytes:
            body_bytes = request.ByteSize()
        check_lengths = body_bytes > value_limit
        views: list[SpanView] = []
        add_view = views.append
        rejections: Rejections | None = None
        accepted = 0
        for r, resource_spans in enumerate(request.resource_spans):
            # Numbered before anything can fail, so a resource that raises cannot shift the
            # numbers of the spans after it.
            count = sum(len(ss.spans) for ss in resource_spans.scope_spans)
            cursor = position
            position += count
            try:
                resource_kvs = resource_spans.resource.attributes
                bad_resource = None
                if len(resource_kvs) > max_attributes:
                    bad_resource = "attribute_count"
                elif check_lengths and values_too_long(resource_kvs, value_limit):
                    bad_resource = "attribute_length"
                if bad_resource is not None:
                    if count:
                        rejections = rejections or Rejections()
                        rejections.add(bad_resource, count, f"resourceSpans[{r}].resource")
                    for scope_spans in resource_spans.scope_spans:
                        del scope_spans.spans[:]
                    modified = True
                    continue
                resource = OtlpAttributes(resource_kvs)
                service_name = _service_name(resource)
                for s, scope_spans in enumerate(resource_spans.scope_spans):
                    spans = scope_spans.spans
                    first = cursor
                    cursor += len(spans)
                    bad: list[int] | None = None
                    for i, span in enumerate(spans):
                        # The rules of validation.py, inlined on fields the view needs anyway; the
                        # slow path (span_rule_broken) only runs to name the rule broken.
                        trace_id = span.trace_id
                        span_id = span.span_id
                        parent = span.parent_span_id
                        start = span.start_time_unix_nano
                        end = span.end_time_unix_nano
                        kvs = span.attributes
                        if (
                            len(trace_id) != 16
                            or len(span_id) != 8
                            or (parent and len(parent) != 8)
                            or end < start
                            or len(kvs) > max_attributes
                            or trace_id == _ZERO_TRACE_ID
                            or span_id == _ZERO_SPAN_ID
                        ):
                            rule = span_rule_broken(span, len(kvs), limits)
                        elif (
                            check_lengths
                            and span.ByteSize() > value_limit
                            and values_too_long(kvs, value_limit)
                        ):
                            rule = "attribute_length"
                        else:
                            rule = None
                        if rule is not None:
                            rejections = rejections or Rejections()
                            rejections.add(rule, 1, f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]")
                            bad = bad or []
                            bad.append(i)
                            continue
                        accepted += 1
                        trace_state = span.trace_state
                        add_view(
                            OtlpSpanView(
                                span.name,
                                span.kind,
                                start,
                                end,
                                span.status.code,
                                kvs,
                                span,
                                hint,
                                first + i,
                                resource,
                                service_name,
                                _sampling_weight(trace_state) if trace_state else 1.0,
                            )
                        )
                    if bad:
                        for i in reversed(bad):
                            del spans[i]
                        modified = True
            except Exception as exc:  # the engine never raises; this guards the adapter
                self.engine.errors.record("collector.pipeline", exc)
        if views:
            self.engine.process_batch(views)
        if accepted:
            self.receiver_spans.add((transport, OUTCOME_ACCEPTED), accepted)
        if rejections is None:
            return IngestResult(accepted, 0, "", modified)
        self.receiver_spans.add((transport, OUTCOME_REJECTED), rejections.total)
        return IngestResult(accepted, rejections.total, rejections.message(), modified)

    def _scan(self, body: bytes, span_count: int) -> ScannedBatch | None:
        """The native views of ``body``, which upb or the wire check found to hold ``span_count``
        spans; ``None`` when the request needs the Python path (the scanner is missing or unsure,
        or a span breaks a rule). The scanner's span count is checked against that count, so a
        scanner that read the request differently could never derive from the wrong spans
        unnoticed."""
        try:
            limits = self.limits
            views = scan_views(body, limits.max_attributes, limits.max_attribute_value_bytes)
        except Exception as exc:  # memory, or a scanner bug: the Python path still derives
            self.engine.errors.record("collector.spanscan", exc)
            return None
        if views is not None and len(views) != span_count:
            mismatch = RuntimeError("native scanner span count differs from the parsed request")
            self.engine.errors.record("collector.spanscan", mismatch)
            return None
        return views

    def _derive_scanned(self, views: ScannedBatch, transport: str) -> IngestResult:
        """The fast path (:mod:`.spanscan`): every span valid, views built natively."""
        accepted = len(views)
        if views:
            self.engine.process_batch(views)
            self.receiver_spans.add((transport, OUTCOME_ACCEPTED), accepted)
        return IngestResult(accepted, 0, "", False)

    def refuse(self, transport: str, spans: int) -> None:
        """Count ``spans`` refused by a receiver (for example when shutting down)."""
        if spans > 0:
            self.receiver_spans.add((transport, OUTCOME_REFUSED), spans)


def _service_name(resource: Any) -> str:
    raw = resource.get("service.name")
    return raw if isinstance(raw, str) and raw else _UNKNOWN_SERVICE
