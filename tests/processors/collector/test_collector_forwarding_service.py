"""The collector service with forwarding on: received bytes forwarded, metrics and logs passed
through unchanged, retryable refusals (UNAVAILABLE + RetryInfo, 503 + Retry-After) when the
queue is full and before derivation, readiness, and the accounting check at the end."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import grpc
import pytest
from fake_otlp import FakeOtlpServer
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from otlp_builders import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, build_request, json_request
from peers import scrape_samples

from spansignals.processors.collector import Collector
from spansignals.processors.config import load_config

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
PROTOBUF = "application/x-protobuf"


def _config(fake: FakeOtlpServer, **collector: Any) -> Any:
    exporter = {
        "endpoint": fake.grpc_endpoint,
        "retry": {"initial_interval": "20ms", "max_interval": "100ms"},
    }
    exporter.update(collector.pop("exporter", {}))
    block = {"exporters": {"down": exporter}, **collector}
    return load_config({"collector": block, "alerts": {"api": {"enabled": False}}})


def _unique_request(start: int, spans: int = 4) -> bytes:
    request = build_request("svc", [("GET /a", SPAN_KIND_SERVER, 0)] * spans)
    for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.trace_id = (start + i).to_bytes(16, "big")
    return request.SerializeToString()


def _metrics_request() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "queue.depth"
    for value in (1, 2, 3):
        point = metric.gauge.data_points.add()
        point.as_int = value
        point.time_unix_nano = 1_700_000_000_000_000_000
    return request


def _logs_request() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for text in ("a", "b"):
        record = scope.log_records.add()
        record.body.string_value = text
        record.trace_id = bytes(range(16))
    return request


async def _accounting(collector: Collector, acked: int) -> dict[str, float]:
    """acked = sent + dropped + queued, read once no batch is in flight (the queue drained)."""
    assert collector.forwarder is not None
    await _until(lambda: all(w.queue.empty() for w in collector.forwarder.workers))  # type: ignore[union-attr]
    totals = {outcome: v for (_, outcome), v in collector.exporter_families.spans.snapshot()}
    queued = sum(w.queue.items for w in collector.forwarder.workers)
    assert acked == totals.get("sent", 0) + totals.get("dropped", 0) + queued, (acked, totals, queued)
    return totals


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)  # polling progress, not waiting for time to pass


async def test_grpc_bytes_are_forwarded_as_received(fake_otlp: FakeOtlpServer, make_collector: Any) -> None:
    """Spans sent over gRPC and over HTTP (protobuf, gzip, OTLP/JSON re-encoded with its hex ids)
    all reach the downstream once."""
    collector = await make_collector(_config(fake_otlp))
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        await channel.unary_unary(TRACES)(_unique_request(1))
    url = f"http://{collector.http_endpoint}/v1/traces"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=_unique_request(100), headers={"Content-Type": PROTOBUF}) as resp:
            assert resp.status == 200
        headers = {"Content-Type": PROTOBUF, "Content-Encoding": "gzip"}
        async with session.post(url, data=gzip.compress(_unique_request(200)), headers=headers) as resp:
            assert resp.status == 200
        async with session.post(url, json=json_request()) as resp:  # OTLP/JSON: re-encoded
            assert resp.status == 200
    await _until(lambda: collector.exporter_families.spans.value(("down", "sent")) == 14)
    assert fake_otlp.delivered_spans() == 14 and fake_otlp.duplicates() == 0
    json_ids = {(t, s) for t, s in fake_otlp.spans if s == bytes.fromhex("eee19b7ec3c1b173")}
    assert json_ids == {
        (bytes.fromhex("5b8efff798038103d269b633813fc60c"), bytes.fromhex("eee19b7ec3c1b173"))
    }
    assert (await _accounting(collector, 14))["sent"] == 14


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_metrics_and_logs_pass_through_unchanged(
    fake_otlp: FakeOtlpServer, make_collector: Any, transport: str
) -> None:
    """OTLP metrics and logs are accepted and forwarded with their items, counted per signal."""
    collector = await make_collector(_config(fake_otlp))
    metrics, logs = _metrics_request().SerializeToString(), _logs_request().SerializeToString()
    if transport == "grpc":
        async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
            await channel.unary_unary(METRICS)(metrics)
            await channel.unary_unary(LOGS)(logs)
    else:
        async with aiohttp.ClientSession() as session:
            for path, body in (("/v1/metrics", metrics), ("/v1/logs", logs)):
                url = f"http://{collector.http_endpoint}{path}"
                async with session.post(url, data=body, headers={"Content-Type": PROTOBUF}) as resp:
                    assert resp.status == 200
    await _until(lambda: fake_otlp.items["metrics"] == 3 and fake_otlp.items["logs"] == 2)
    received = collector.signals.receiver_items
    assert received.value((transport, "metrics", "accepted")) == 3
    assert received.value((transport, "logs", "accepted")) == 2
    sent = collector.exporter_families.items
    await _until(lambda: sent.value(("down", "logs", "sent")) == 2)
    assert sorted(fake_otlp.bodies) == [("logs", logs), ("metrics", metrics)]  # the received bytes


async def test_json_logs_are_re_encoded_with_hex_ids(fake_otlp: FakeOtlpServer, make_collector: Any) -> None:
    """An OTLP/JSON logs body is forwarded as protobuf, its hex trace id decoded."""
    collector = await make_collector(_config(fake_otlp))
    document = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"body": {"stringValue": "x"}, "traceId": "000102030405060708090a0b0c0d0e0f"}
                        ]
                    }
                ]
            }
        ]
    }
    url = f"http://{collector.http_endpoint}/v1/logs"
    async with aiohttp.ClientSession() as session, session.post(url, json=document) as resp:
        assert resp.status == 200 and await resp.read() == b"{}"
    await _until(lambda: fake_otlp.items["logs"] == 1)
    ((signal, body),) = fake_otlp.bodies
    record = ExportLogsServiceRequest.FromString(body).resource_logs[0].scope_logs[0].log_records[0]
    assert (signal, record.trace_id, record.body.string_value) == ("logs", bytes(range(16)), "x")


def _retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return info.retry_delay.ToNanoseconds() / 1e9
    return None


async def test_full_queue_is_refused_retryably_before_derivation(
    fake_otlp: FakeOtlpServer, make_collector: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Downstream down past the queue bound: gRPC UNAVAILABLE + RetryInfo, HTTP 503 + Retry-After,
    counted refused, not derived; readiness 503; once the downstream is back everything acked is
    delivered and readiness recovers."""
    fake_otlp.down()
    collector = await make_collector(_config(fake_otlp, queue={"max_items": 8, "retry_after": "2s"}))
    ready_url = f"http://{collector.metrics_endpoint}/health/ready"
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        export = channel.unary_unary(TRACES)
        await export(_unique_request(1))
        await export(_unique_request(10))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await export(_unique_request(20))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _retry_delay(refused.value) == 2.0
    async with aiohttp.ClientSession() as session:
        url = f"http://{collector.http_endpoint}/v1/traces"
        async with session.post(url, data=_unique_request(30), headers={"Content-Type": PROTOBUF}) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "2"
        async with session.get(ready_url) as resp:
            assert resp.status == 503
    receiver = collector.pipeline.receiver_spans
    assert receiver.value(("grpc", "refused")) == 4 and receiver.value(("http", "refused")) == 4
    assert receiver.value(("grpc", "accepted")) == 8
    red_calls = sum(v for _, v in collector.engine.processors[0].metric_families()[0].snapshot())
    assert red_calls == 8  # refused spans were not derived
    assert caplog.text.count("exporter down: queue full or not writable") == 1  # once a minute

    fake_otlp.up()
    await _until(lambda: collector.exporter_families.spans.value(("down", "sent")) == 8)
    assert fake_otlp.delivered_spans() == 8
    async with aiohttp.ClientSession() as session, session.get(ready_url) as resp:
        assert resp.status == 200
    assert (await _accounting(collector, 8))["sent"] == 8


async def test_metrics_page_shows_exporter_series(fake_otlp: FakeOtlpServer, make_collector: Any) -> None:
    """/metrics carries spansignals_exporter_spans_total and spansignals_exporter_queue_spans."""
    collector = await make_collector(_config(fake_otlp))
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        await channel.unary_unary(TRACES)(_unique_request(1))
    await _until(lambda: fake_otlp.delivered_spans() == 4)
    await _until(lambda: collector.exporter_families.spans.value(("down", "sent")) == 4)
    url = f"http://{collector.metrics_endpoint}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        text = await resp.text()
    sent = [
        v
        for labels, v in scrape_samples(text, "spansignals_exporter_spans_total")
        if labels["outcome"] == "sent"
    ]
    assert sent == [4.0]
    assert [v for _, v in scrape_samples(text, "spansignals_exporter_queue_spans")] == [0.0]


async def test_redacted_spans_are_forwarded_re_encoded(
    fake_otlp: FakeOtlpServer, make_collector: Any
) -> None:
    """With collector.redaction on, the downstream gets the redacted request, never the secret."""
    collector = await make_collector(_config(fake_otlp, redaction={"enabled": True}))
    request = build_request("svc", [("GET /a", SPAN_KIND_CLIENT, 0)])
    kv = request.resource_spans[0].scope_spans[0].spans[0].attributes.add()
    kv.key = "url.full"
    kv.value.string_value = "https://ana:CANARY-s3cret@api.example.com/v1?api_key=CANARY-k3y"
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        await channel.unary_unary(TRACES)(request.SerializeToString())
    await _until(lambda: fake_otlp.delivered_spans() == 1)
    forwarded = b"".join(body for _, body in fake_otlp.bodies)
    assert b"CANARY" not in forwarded and b"REDACTED" in forwarded
