"""OTLP metrics and logs: accepted on gRPC and HTTP and forwarded unchanged.

The collector sits in any OTLP pipeline, so it must not swallow the other signals: gRPC
``MetricsService/Export`` and ``LogsService/Export`` and HTTP ``POST /v1/metrics`` and
``POST /v1/logs`` (protobuf or OTLP/JSON, optionally gzip) are decoded only to validate them and
count their items (metric data points, log records), then queued for every exporter — the received
protobuf bytes as they came, a JSON body re-encoded to protobuf. Nothing is derived from them.

Answers follow the trace receivers: 200 / ``OK`` with an empty response; malformed body 400 /
``INVALID_ARGUMENT``; over the size limit after decompression 413 / ``RESOURCE_EXHAUSTED``; other
content types 415; a full queue is a retryable refusal (:class:`~.refusals.Refused`: gRPC
``UNAVAILABLE`` + ``RetryInfo``, HTTP 503 + ``Retry-After``). HTTP routes run behind the trace
receiver's auth, size limit, gzip handling and error mapping. Without exporters the items are
counted and dropped, as traces are after derivation.

Counted in ``spansignals_receiver_items_total{transport, signal, outcome}`` (accepted, refused).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from ..families import CounterFamily, MetricFamily
from .decoding import RequestDecodeError, parse_json_message
from .queue import SIGNAL_LOGS, SIGNAL_METRICS
from .refusals import Refused, refuse_grpc, refuse_grpc_unavailable

__all__ = ["LOGS_PATH", "METRICS_PATH", "SignalPassThrough", "count_data_points", "count_log_records"]

_logger = logging.getLogger(__name__)

METRICS_PATH, LOGS_PATH = "/v1/metrics", "/v1/logs"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
_PROTOBUF, _JSON = "application/x-protobuf", "application/json"
_ID_KEYS = frozenset({"traceId", "trace_id", "spanId", "span_id"})
_POINT_FIELDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def count_data_points(request: ExportMetricsServiceRequest) -> int:
    """Data points in a metrics request (what ``rejected_data_points`` counts)."""
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind in _POINT_FIELDS:
                    total += len(getattr(metric, kind).data_points)
    return total


def count_log_records(request: ExportLogsServiceRequest) -> int:
    """Log records in a logs request."""
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


_JSON_TOP_FIELD = {SIGNAL_METRICS: "resourceMetrics", SIGNAL_LOGS: "resourceLogs"}
_SIGNALS: dict[str, tuple[type[Message], Callable[[Any], int], bytes]] = {
    SIGNAL_METRICS: (
        ExportMetricsServiceRequest,
        count_data_points,
        ExportMetricsServiceResponse().SerializeToString(),
    ),
    SIGNAL_LOGS: (
        ExportLogsServiceRequest,
        count_log_records,
        ExportLogsServiceResponse().SerializeToString(),
    ),
}

Submit = Callable[[str, bytes, int], Any]  # async (signal, payload, items) -> None


class SignalPassThrough:
    """Registers the metrics and logs services on the receivers and forwards what they take in.

    ``submit`` is :meth:`~.forwarding.Forwarder.submit` (``None``: count and drop). Size limits,
    gzip, auth and admission are the trace receivers' (see :meth:`http_routes`).
    """

    def __init__(self, submit: Submit | None) -> None:
        self._submit = submit
        self.read_body: Callable[[web.Request], Awaitable[bytes]] | None = None
        self.receiver_items = CounterFamily(
            "spansignals.receiver.items",
            "Metric data points and log records received, by transport, signal and outcome.",
            "{item}",
            ("transport", "signal", "outcome"),
            max_series=32,
        )

    def metric_families(self) -> list[MetricFamily]:
        return [self.receiver_items]

    # --- shared --------------------------------------------------------------------------------

    def _decode(self, signal: str, body: bytes, as_json: bool) -> tuple[bytes, int]:
        request_type, count, _ = _SIGNALS[signal]
        request = request_type()
        if as_json:
            request = parse_json_message(body, request_type, _hex_ids, _JSON_TOP_FIELD[signal])
        else:
            try:
                request.ParseFromString(body)
            except (DecodeError, RecursionError, ValueError):
                raise RequestDecodeError(f"body is not a valid protobuf {request_type.__name__}") from None
        payload = request.SerializeToString() if as_json else body
        return payload, count(request)

    async def _accept(self, signal: str, transport: str, payload: bytes, items: int) -> None:
        if self._submit is not None:
            try:
                await self._submit(signal, payload, items)
            except Refused:
                self.receiver_items.add((transport, signal, "refused"), items)
                raise
        self.receiver_items.add((transport, signal, "accepted"), items)

    # --- gRPC ----------------------------------------------------------------------------------

    def grpc_handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        """Generic handlers (raw bytes in and out) for both services."""
        return tuple(
            grpc.method_handlers_generic_handler(
                service, {"Export": grpc.unary_unary_rpc_method_handler(self._grpc_export(signal))}
            )
            for service, signal in ((METRICS_SERVICE, SIGNAL_METRICS), (LOGS_SERVICE, SIGNAL_LOGS))
        )

    def _grpc_export(self, signal: str) -> Callable[[bytes, grpc.aio.ServicerContext], Any]:
        async def export(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                payload, items = self._decode(signal, body, as_json=False)
                await self._accept(signal, "grpc", payload, items)
                return _SIGNALS[signal][2]
            except RequestDecodeError as exc:
                return refuse_grpc(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except Refused as exc:
                # Without its traceback: this local outlives the block, and the traceback holds this
                # frame (the body, the parsed request), a cycle only a full GC pass would free.
                refusal = exc.with_traceback(None)
            except Exception:  # a bug: answered retryably, never UNKNOWN/INTERNAL with our text
                _logger.exception("spansignals collector: unexpected error in %s Export", signal)
                refusal = Refused("temporary collector error (logged); retry later")
            return refuse_grpc_unavailable(context, refusal.message, refusal.retry_after_s)

        return export

    # --- HTTP ----------------------------------------------------------------------------------

    def http_routes(self) -> list[tuple[str, Callable[[web.Request], Any]]]:
        """``(path, handler)`` for ``POST /v1/metrics`` and ``POST /v1/logs``: give them to the
        HTTP receiver's ``extra_routes`` (its auth, limits and error mapping apply) and set
        :attr:`read_body` to its ``read_body``."""
        return [
            (METRICS_PATH, self._http_handler(SIGNAL_METRICS)),
            (LOGS_PATH, self._http_handler(SIGNAL_LOGS)),
        ]

    def _http_handler(self, signal: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if self.read_body is None:
                raise RuntimeError("SignalPassThrough.read_body is not set")
            # Content type and encoding (415), size limit, gzip, read timeout, admission.
            body = await self.read_body(request)
            as_json = request.content_type == _JSON
            payload, items = self._decode(signal, body, as_json)
            await self._accept(signal, "http", payload, items)
            if as_json:
                return web.Response(status=200, body=b"{}", content_type=_JSON)
            return web.Response(status=200, body=_SIGNALS[signal][2], content_type=_PROTOBUF)

        return handle


def _hex_ids(node: Any, depth: int = 0) -> None:
    """Rewrite OTLP/JSON hex ``traceId``/``spanId`` (exemplars, log records) to base64 in place."""
    if depth > 64:
        raise RequestDecodeError("JSON body is nested too deeply")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(binascii.unhexlify(value)).decode("ascii")
                except (binascii.Error, ValueError):
                    raise RequestDecodeError(f"{key}: must be a hex string") from None
            elif isinstance(value, dict | list):
                _hex_ids(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _hex_ids(item, depth + 1)
