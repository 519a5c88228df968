"""Build OTLP trace requests for collector tests (protobuf messages and OTLP/JSON documents)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_CODE_ERROR = 2


def build_request(
    service: str | None = "checkout",
    spans: Sequence[tuple[str, int, int]] = (("GET /cart", SPAN_KIND_SERVER, 0),),
    *,
    resources: int = 1,
) -> ExportTraceServiceRequest:
    """A request with ``resources`` copies of one resource holding ``spans`` (name, kind, status),
    each span 30 ms long with distinct ids."""
    request = ExportTraceServiceRequest()
    n = 0
    for _ in range(resources):
        rs = request.resource_spans.add()
        if service is not None:
            kv = rs.resource.attributes.add()
            kv.key = "service.name"
            kv.value.string_value = service
        ss = rs.scope_spans.add()
        ss.scope.name = "tests"
        for name, kind, status in spans:
            n += 1
            span = ss.spans.add()
            span.trace_id = n.to_bytes(16, "big")
            span.span_id = n.to_bytes(8, "big")
            span.name = name
            span.kind = kind  # type: ignore[assignment]
            span.start_time_unix_nano = 1_700_000_000_000_000_000
            span.end_time_unix_nano = span.start_time_unix_nano + 30_000_000
            span.status.code = status  # type: ignore[assignment]
    return request


def json_request(
    *, snake_case: bool = False, trace_id: Any = "5b8efff798038103d269b633813fc60c"
) -> dict[str, Any]:
    """An OTLP/JSON document with one server span and one error client span of ``json-svc``."""

    def key(camel: str) -> str:
        if not snake_case:
            return camel
        return "".join("_" + c.lower() if c.isupper() else c for c in camel)

    def span(name: str, kind: int, status: int, span_id: str) -> dict[str, Any]:
        return {
            key("traceId"): trace_id,
            key("spanId"): span_id,
            key("parentSpanId"): "",
            "name": name,
            "kind": kind,
            key("startTimeUnixNano"): "1700000000000000000",
            key("endTimeUnixNano"): "1700000000030000000",
            "attributes": [{"key": "http.request.method", "value": {key("stringValue"): "GET"}}],
            "status": {"code": status},
            "links": [
                {key("traceId"): "5b8efff798038103d269b633813fc60d", key("spanId"): "eee19b7ec3c1b174"}
            ],
            "someFutureField": {"ignored": True},
        }

    return {
        key("resourceSpans"): [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {key("stringValue"): "json-svc"}}]
                },
                key("scopeSpans"): [
                    {
                        "scope": {"name": "tests"},
                        "spans": [
                            span("GET /items", SPAN_KIND_SERVER, 0, "eee19b7ec3c1b173"),
                            span("POST upstream", SPAN_KIND_CLIENT, STATUS_CODE_ERROR, "eee19b7ec3c1b174"),
                        ],
                    }
                ],
            }
        ]
    }
