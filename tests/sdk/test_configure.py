"""configure(): provider reuse or creation, settings resolution, Prometheus and OTLP export."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from peers import free_port, http_get, poll_until, scrape_samples
from sdk_fixtures import LOCAL_PROVIDERS, LocalServer, Providers

from spansignals.sdk import RecordAllSampler, Telemetry, active_telemetry, configure


def test_counts_httpx_calls_in_red(
    configured: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """httpx calls through configure() on the app's providers show up in the RED counter, once each."""
    configured(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    with httpx.Client() as client:
        for _ in range(3):
            client.get(local_server.url())
        client.get(local_server.url("/status/500"))
    assert providers.red_calls(span_kind="SPAN_KIND_CLIENT", status_code="STATUS_CODE_UNSET") == 3
    assert providers.red_calls(span_kind="SPAN_KIND_CLIENT", status_code="STATUS_CODE_ERROR") == 1
    assert {a["service.name"] for a, _ in providers.metric_points("traces.span.metrics.calls")} == {
        "test-app"
    }
    assert len(providers.spans()) == 4


def test_second_configure_returns_active_handle(
    configured: Callable[..., Telemetry],
    providers: Providers,
    local_server: LocalServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A second configure() returns the active handle: no second processor, no double count."""
    first = configured(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    with caplog.at_level(logging.WARNING):
        second = configured(
            tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
        )
    assert second is first and active_telemetry() is first
    assert "already called" in caplog.text
    httpx.get(local_server.url())
    assert providers.red_calls(span_kind="SPAN_KIND_CLIENT") == 1
    assert len(providers.spans()) == 1


def test_reconfigure_after_shutdown_counts_once(providers: Providers, local_server: LocalServer) -> None:
    """After shutdown() a new configure() on the same providers counts each call once."""
    first = configure(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    httpx.get(local_server.url())
    assert first.shutdown(timeout=5)
    assert active_telemetry() is None
    second = configure(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    try:
        assert second is not first
        httpx.get(local_server.url())
        assert providers.red_calls(span_kind="SPAN_KIND_CLIENT") == 1
        names = [
            m.name
            for rm in providers.reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        ]
        assert names.count("traces.span.metrics.calls") == 1
    finally:
        second.shutdown(timeout=5)


def test_shutdown_uninstruments_httpx(providers: Providers, local_server: LocalServer) -> None:
    """After shutdown() httpx calls make no spans."""
    telemetry = configure(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    telemetry.shutdown(timeout=5)
    httpx.get(local_server.url())
    assert providers.spans() == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"metrics_exporter": "graphite"}, "metrics_exporter"),
        ({"traces_exporter": ["otlp", "zipkin"]}, "traces_exporter"),
        ({"otlp_protocol": "http/json"}, "otlp_protocol"),
        ({"prometheus_port": 70000}, "prometheus_port"),
        ({"prometheus_port": "9464"}, "prometheus_port"),
        ({"tracer_provider": object()}, "tracer_provider"),
        ({"meter_provider": object()}, "meter_provider"),
        ({"sampler": "always_on"}, "sampler"),
        ({"service_name": ""}, "service_name"),
    ],
)
def test_bad_argument_raises_value_error_naming_it(kwargs: dict[str, Any], name: str) -> None:
    """An invalid argument raises ValueError whose message starts with the argument's name."""
    with pytest.raises(ValueError, match=f"^{name}: "):
        configure(set_global_providers=False, **kwargs)
    assert active_telemetry() is None


def test_bad_env_value_warns_and_uses_default(
    configured: Callable[..., Telemetry],
    providers: Providers,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An invalid OTEL_TRACES_EXPORTER logs a warning naming it and falls back to the default."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin-ish")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.WARNING):
        telemetry = configured(meter_provider=providers.meter_provider)
    assert "OTEL_TRACES_EXPORTER" in caplog.text
    assert telemetry.owns_tracer_provider
    assert isinstance(telemetry.tracer_provider.sampler, RecordAllSampler)


def test_sdk_disabled_installs_nothing(
    providers: Providers, monkeypatch: pytest.MonkeyPatch, local_server: LocalServer
) -> None:
    """OTEL_SDK_DISABLED=true returns an inactive handle and instruments nothing."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    telemetry = configure(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    assert not telemetry.enabled and active_telemetry() is None
    httpx.get(local_server.url())
    assert providers.spans() == []
    assert telemetry.shutdown(timeout=1) and telemetry.force_flush(timeout=1)


def test_resource_from_config_env_and_argument(
    configured: Callable[..., Telemetry], providers: Providers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Service name resolves argument > config service.name > OTEL_SERVICE_NAME; env attributes are kept."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    cfg = {"service": {"name": "from-config", "resource_attributes": {"team": "payments"}}}
    telemetry = configured(cfg, traces_exporter="none", meter_provider=providers.meter_provider)
    attrs = telemetry.tracer_provider.resource.attributes
    assert attrs["service.name"] == "from-config"
    assert attrs["deployment.environment"] == "test" and attrs["team"] == "payments"
    telemetry.shutdown(timeout=5)
    telemetry = configured(
        cfg, service_name="from-arg", traces_exporter="none", meter_provider=providers.meter_provider
    )
    assert telemetry.tracer_provider.resource.attributes["service.name"] == "from-arg"


def test_prometheus_endpoint_shows_red_series(
    configured: Callable[..., Telemetry], local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_METRICS_EXPORTER=prometheus serves /metrics with the RED series and the right counts."""
    port = free_port()
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    app = Providers()
    telemetry = configured(service_name="shop", tracer_provider=app.tracer_provider)
    assert telemetry.prometheus_address == ("127.0.0.1", port)
    with httpx.Client() as client:
        for _ in range(4):
            client.get(local_server.url())
        client.get(local_server.url("/status/503"))
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    samples = scrape_samples(body.decode(), "traces_span_metrics_calls_total")
    by_status = {
        labels["status_code"]: value for labels, value in samples if labels["span_kind"] == "SPAN_KIND_CLIENT"
    }
    assert by_status == {"STATUS_CODE_UNSET": 4.0, "STATUS_CODE_ERROR": 1.0}
    assert all(labels["service_name"] == "test-app" and labels["span_name"] == "GET" for labels, _ in samples)
    buckets = scrape_samples(body.decode(), "traces_span_metrics_duration_seconds_count")
    assert sum(v for _, v in buckets) == 5
    telemetry.shutdown(timeout=5)
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{port}/metrics", timeout=1)


class _TraceSink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    self.spans.extend(ss.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def grpc_sink() -> Iterator[tuple[_TraceSink, int]]:
    """A local OTLP/gRPC trace receiver that keeps what it gets."""
    sink = _TraceSink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield sink, port
    server.stop(0)


class _HttpSink(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).requests.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_otlp_grpc_exports_spans(
    configured: Callable[..., Telemetry], grpc_sink: tuple[_TraceSink, int], local_server: LocalServer
) -> None:
    """Spans of httpx calls reach a local OTLP/gRPC receiver, redacted and with provider attributes."""
    sink, port = grpc_sink
    providers = Providers()
    telemetry = configured(
        LOCAL_PROVIDERS,
        traces_exporter="otlp",
        otlp_protocol="grpc",
        otlp_endpoint=f"http://127.0.0.1:{port}",
        meter_provider=providers.meter_provider,
    )
    httpx.get(local_server.url("/ok?api_key=CANARY"))
    assert telemetry.force_flush(timeout=10)
    spans = poll_until(lambda: list(sink.spans) or None, timeout=10, what="spans at the gRPC sink")
    attrs = {kv.key: kv.value.string_value for kv in spans[0].attributes}
    assert attrs["spansignals.provider"] == "local-llm"
    assert "CANARY" not in str(spans[0])
    assert providers.red_calls(span_kind="SPAN_KIND_CLIENT") == 1


@pytest.mark.parametrize("from_env", [False, True], ids=["arguments", "environment"])
def test_otlp_http_exports_spans(
    configured: Callable[..., Telemetry],
    local_server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    from_env: bool,
) -> None:
    """With http/protobuf (from arguments or OTEL_* variables), spans are POSTed to <endpoint>/v1/traces."""
    _HttpSink.requests = []
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HttpSink)
    threading.Thread(target=sink.serve_forever, args=(0.05,), daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    try:
        providers = Providers()
        if from_env:
            monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            telemetry = configured(meter_provider=providers.meter_provider)
        else:
            telemetry = configured(
                traces_exporter="otlp",
                otlp_protocol="http/protobuf",
                otlp_endpoint=endpoint,
                meter_provider=providers.meter_provider,
            )
        httpx.get(local_server.url())
        assert telemetry.force_flush(timeout=10)
        request = trace_service_pb2.ExportTraceServiceRequest()
        path, body = poll_until(lambda: _HttpSink.requests[0] if _HttpSink.requests else None, timeout=10)
        request.ParseFromString(body)
        assert path == "/v1/traces"
        assert request.resource_spans[0].scope_spans[0].spans[0].name == "GET"
    finally:
        sink.shutdown()
        sink.server_close()


class _MetricsSink(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def Export(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def test_otlp_grpc_exports_derived_metrics(
    configured: Callable[..., Telemetry], local_server: LocalServer
) -> None:
    """The RED counter reaches a local OTLP/gRPC metrics receiver through the periodic reader."""
    sink = _MetricsSink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(sink, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        app = Providers()
        telemetry = configured(
            tracer_provider=app.tracer_provider,
            metrics_exporter="otlp",
            otlp_protocol="grpc",
            otlp_endpoint=f"http://127.0.0.1:{port}",
        )
        httpx.get(local_server.url())
        assert telemetry.force_flush(timeout=10)

        def calls() -> float | None:
            for request in list(sink.requests):
                for rm in request.resource_metrics:
                    for sm in rm.scope_metrics:
                        for metric in sm.metrics:
                            if metric.name == "traces.span.metrics.calls":
                                return sum(p.as_double for p in metric.sum.data_points)
            return None

        assert poll_until(calls, timeout=10, what="RED counter at the metrics sink") == 1.0
        assert telemetry.shutdown(timeout=10)  # while the sink is up: the final export succeeds
    finally:
        server.stop(0)


def test_enrichers_that_emit_spans_get_the_provider_configure_instruments_with(
    configured: Callable[..., Telemetry], providers: Providers
) -> None:
    """A provider handed to configure() (not the global one) also receives the usage enricher's
    streamed-usage report spans."""
    from opentelemetry import trace

    assert trace.get_tracer_provider() is not providers.tracer_provider
    telemetry = configured(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    emitting = [e for e in telemetry.hooks.enrichers if hasattr(e, "tracer_provider")]
    assert emitting, "the usage enricher is built by default"
    assert all(e.tracer_provider is providers.tracer_provider for e in emitting)
