"""Forwarding in a real pipeline with independent peers, every span accounted for:
official OTel exporter -> spansignals -> rotel -> sink, and official exporter -> rotel ->
spansignals -> sink (the sink is the fake downstream, which records each span id)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fake_otlp import FakeOtlpServer
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind
from peers import CollectorProcess, RotelAgent, poll_until

pytestmark = pytest.mark.integration

SPANS = 600


def _emit(exporter: SpanExporter, service: str, count: int) -> set[tuple[bytes, bytes]]:
    """``count`` server spans through ``exporter``; their (trace_id, span_id) as OTLP bytes."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=50, max_export_batch_size=128)
    )
    tracer = provider.get_tracer("tests")
    ids = set()
    for n in range(count):
        with tracer.start_as_current_span(f"GET /item/{n % 5}", kind=SpanKind.SERVER) as span:
            ctx = span.get_span_context()
            ids.add((ctx.trace_id.to_bytes(16, "big"), ctx.span_id.to_bytes(8, "big")))
    assert provider.force_flush(20_000)
    provider.shutdown()
    return ids


def _exporter_block(endpoint: str, protocol: str = "grpc") -> dict[str, object]:
    return {
        "collector": {
            "exporters": {
                "next": {
                    "endpoint": endpoint,
                    "protocol": protocol,
                    "retry": {"initial_interval": "100ms", "max_interval": "500ms"},
                }
            }
        }
    }


def _received_calls(child: CollectorProcess, service: str) -> float:
    return sum(
        v for lb, v in child.samples("traces_span_metrics_calls_total") if lb.get("service_name") == service
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_sdk_to_spansignals_to_rotel_to_sink(
    fake_otlp: FakeOtlpServer,
    start_rotel: Callable[..., RotelAgent],
    start_collector: Callable[..., CollectorProcess],
    protocol: str,
) -> None:
    """Every span the SDK exported through spansignals (forwarding over ``protocol``) and rotel
    reaches the sink exactly once, and spansignals derived each of them."""
    rotel = start_rotel(exporter_endpoint=f"http://{fake_otlp.grpc_endpoint}", protocol="grpc")
    downstream = rotel.grpc_endpoint if protocol == "grpc" else f"http://{rotel.http_endpoint}"
    child = start_collector(config_blocks=_exporter_block(downstream, protocol))
    ids = _emit(GrpcSpanExporter(endpoint=child.grpc_endpoint, insecure=True), "interop-a", SPANS)
    assert len(ids) == SPANS
    poll_until(lambda: set(fake_otlp.spans) >= ids, timeout=30, what="every span at the sink")
    assert set(fake_otlp.spans) == ids and fake_otlp.duplicates() == 0
    assert _received_calls(child, "interop-a") == SPANS
    sent = [v for lb, v in child.samples("spansignals_exporter_spans_total") if lb["outcome"] == "sent"]
    assert sent == [float(SPANS)]


def test_sdk_to_rotel_to_spansignals_to_sink(
    fake_otlp: FakeOtlpServer,
    start_rotel: Callable[..., RotelAgent],
    start_collector: Callable[..., CollectorProcess],
) -> None:
    """Official HTTP exporter (gzip) -> rotel -> spansignals -> sink: all spans, once, derived."""
    child = start_collector(config_blocks=_exporter_block(fake_otlp.http_url, "http/protobuf"))
    rotel = start_rotel(exporter_endpoint=f"http://{child.grpc_endpoint}", protocol="grpc")
    exporter = HttpSpanExporter(
        endpoint=f"http://{rotel.http_endpoint}/v1/traces", compression=Compression.Gzip
    )
    ids = _emit(exporter, "interop-b", SPANS)
    poll_until(lambda: set(fake_otlp.spans) >= ids, timeout=30, what="every span at the sink")
    assert set(fake_otlp.spans) == ids and fake_otlp.duplicates() == 0
    poll_until(lambda: _received_calls(child, "interop-b") == SPANS, timeout=10, what="derived calls")
