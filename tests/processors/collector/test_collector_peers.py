"""The collector against independent peers: the official OTel OTLP exporters, Prometheus, rotel."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from peers import CollectorProcess, PrometheusPeer, RotelAgent, poll_until

pytestmark = pytest.mark.integration

Key = tuple[str, str, str, str]


def _send(exporter: SpanExporter, service: str, spans: dict[tuple[str, SpanKind, bool], int]) -> None:
    """Emit ``count`` spans per (name, kind, is_error) through ``exporter`` and flush."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    tracer = provider.get_tracer("tests")
    for (name, kind, is_error), count in spans.items():
        for _ in range(count):
            with tracer.start_as_current_span(name, kind=kind) as span:
                if is_error:
                    span.set_status(Status(StatusCode.ERROR, "failed"))
    assert provider.force_flush(10_000)
    provider.shutdown()


def _calls(child: CollectorProcess, service: str) -> dict[Key, float]:
    return {
        (lb["service_name"], lb["span_name"], lb["span_kind"], lb["status_code"]): value
        for lb, value in child.samples("traces_span_metrics_calls_total")
        if lb.get("service_name") == service
    }


def _wait_for_calls(child: CollectorProcess, service: str, expected: dict[Key, float]) -> None:
    poll_until(
        lambda: _calls(child, service) == expected,
        timeout=20,
        what=f"calls of {service} to be {expected} (last: {_calls(child, service)})",
    )


def test_official_exporters_grpc_and_http(start_collector: Callable[..., CollectorProcess]) -> None:
    """Official OTLP gRPC, HTTP and gzip HTTP exporters' spans appear on /metrics with exact counts."""
    child = start_collector()
    _send(
        GrpcSpanExporter(endpoint=child.grpc_endpoint, insecure=True),
        "exporter-svc",
        {("GET /grpc", SpanKind.SERVER, False): 11, ("SELECT", SpanKind.CLIENT, True): 2},
    )
    _send(
        HttpSpanExporter(endpoint=child.traces_url), "exporter-svc", {("GET /http", SpanKind.SERVER, True): 5}
    )
    _send(
        HttpSpanExporter(endpoint=child.traces_url, compression=Compression.Gzip),
        "exporter-svc",
        {("GET /http", SpanKind.SERVER, True): 4},
    )
    _wait_for_calls(
        child,
        "exporter-svc",
        {
            ("exporter-svc", "GET /grpc", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"): 11.0,
            ("exporter-svc", "SELECT", "SPAN_KIND_CLIENT", "STATUS_CODE_ERROR"): 2.0,
            ("exporter-svc", "GET /http", "SPAN_KIND_SERVER", "STATUS_CODE_ERROR"): 9.0,
        },
    )
    received = {
        (lb["transport"], lb["outcome"]): v for lb, v in child.samples("spansignals_receiver_spans_total")
    }
    assert received == {("grpc", "accepted"): 13.0, ("http", "accepted"): 9.0}
    assert child.stop() == 0


def test_prometheus_scrapes_the_collector(
    start_collector: Callable[..., CollectorProcess], start_prometheus: Callable[..., PrometheusPeer]
) -> None:
    """A real Prometheus scraping the collector answers a PromQL query with the exact call counts."""
    child = start_collector()
    _send(
        GrpcSpanExporter(endpoint=child.grpc_endpoint, insecure=True),
        "prom-svc",
        {("checkout", SpanKind.SERVER, False): 6, ("checkout", SpanKind.SERVER, True): 3},
    )
    prometheus = start_prometheus([child.metrics_endpoint])
    query = (
        "sum by (service_name, span_name, span_kind, status_code)"
        ' (traces_span_metrics_calls_total{service_name="prom-svc"})'
    )

    def as_counts(result: list[dict[str, object]]) -> dict[str, float]:
        return {r["metric"]["status_code"]: float(r["value"][1]) for r in result}  # type: ignore[index]

    result = prometheus.wait_for(
        query, lambda r: as_counts(r) == {"STATUS_CODE_UNSET": 6.0, "STATUS_CODE_ERROR": 3.0}
    )
    assert {r["metric"]["span_kind"] for r in result} == {"SPAN_KIND_SERVER"}
    up = prometheus.query('up{job="spansignals"}')
    assert [float(r["value"][1]) for r in up] == [1.0]


def test_rotel_forwards_to_the_collector(
    start_collector: Callable[..., CollectorProcess], start_rotel: Callable[..., RotelAgent]
) -> None:
    """Official exporter -> rotel -> our gRPC receiver: every span is counted exactly once."""
    child = start_collector()
    rotel = start_rotel(exporter_endpoint=f"http://{child.grpc_endpoint}", protocol="grpc")
    _send(
        GrpcSpanExporter(endpoint=rotel.grpc_endpoint, insecure=True),
        "via-rotel",
        {("GET /r", SpanKind.SERVER, False): 25, ("upstream", SpanKind.CLIENT, True): 5},
    )
    _send(
        HttpSpanExporter(endpoint=f"http://{rotel.http_endpoint}/v1/traces"),
        "via-rotel",
        {("GET /r", SpanKind.SERVER, False): 10},
    )
    _wait_for_calls(
        child,
        "via-rotel",
        {
            ("via-rotel", "GET /r", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"): 35.0,
            ("via-rotel", "upstream", "SPAN_KIND_CLIENT", "STATUS_CODE_ERROR"): 5.0,
        },
    )
    received = {
        (lb["transport"], lb["outcome"]): v for lb, v in child.samples("spansignals_receiver_spans_total")
    }
    assert received == {("grpc", "accepted"): 40.0}
