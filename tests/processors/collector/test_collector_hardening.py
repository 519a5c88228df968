"""Receiver hardening: partial success, backpressure, limits, slow clients, and RELIABILITY.md's bad inputs.

After every bad input the collector must still accept a good request (it stays healthy).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from otlp_builders import SPAN_KIND_SERVER, build_request, json_request

from spansignals.processors.collector import Collector
from spansignals.processors.collector.validation import SpanLimits

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CANARY = "sk-canary-51f0c2"
LIMIT = 4 * 1024 * 1024


@pytest.fixture
async def hardened(make_collector: Callable[..., Any]) -> Collector:
    """A collector with small limits: 4 MiB bodies, 1 s read timeout, 4 KiB headers, 64 attributes."""
    return await make_collector(
        max_request_bytes=LIMIT,
        read_timeout_s=1.0,
        max_header_bytes=4096,
        span_limits=SpanLimits(max_attributes=64, max_attribute_value_bytes=4096),
    )


async def _post(
    collector: Collector, body: bytes, content_type: str = PROTOBUF, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://{collector.http_endpoint}/v1/traces",
            data=body,
            headers={"Content-Type": content_type, **headers},
        ) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def _still_healthy(collector: Collector) -> None:
    before = collector.pipeline.receiver_spans.value(("http", "accepted"))
    status, _, _ = await _post(collector, build_request("ok").SerializeToString())
    assert status == 200
    assert collector.pipeline.receiver_spans.value(("http", "accepted")) == before + 1


def _with_bad_ids(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].trace_id = b"\x01" * 8
    spans[2].span_id = b""
    return request


async def test_http_partial_success_in_protobuf(hardened: Collector) -> None:
    """Wrong id lengths in 2 of 4 spans: 200 with partial_success.rejected_spans = 2 and a message."""
    request = _with_bad_ids(build_request("p", [("op", SPAN_KIND_SERVER, 0)] * 4))
    status, _, body = await _post(hardened, request.SerializeToString())
    assert status == 200
    partial = ExportTraceServiceResponse.FromString(body).partial_success
    assert partial.rejected_spans == 2
    assert "trace_id must be 16 bytes" in partial.error_message
    assert "span_id must be 8 bytes" in partial.error_message
    assert hardened.pipeline.receiver_spans.value(("http", "accepted")) == 2


async def test_http_partial_success_in_json(hardened: Collector) -> None:
    """OTLP/JSON answers partialSuccess with rejectedSpans as a string (proto3 JSON int64)."""
    doc = json_request()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "abcd"
    status, _, body = await _post(hardened, json.dumps(doc).encode(), JSON)
    assert status == 200
    answer = json.loads(body)["partialSuccess"]
    assert answer["rejectedSpans"] == "1"
    assert "span_id" in answer["errorMessage"]


async def test_grpc_partial_success(hardened: Collector) -> None:
    """The gRPC answer carries the same partial_success."""
    request = _with_bad_ids(build_request("g", [("op", SPAN_KIND_SERVER, 0)] * 3))
    async with grpc.aio.insecure_channel(str(hardened.grpc_endpoint)) as channel:
        response = await TraceServiceStub(channel).Export(request)
    assert response.partial_success.rejected_spans == 2
    assert hardened.pipeline.receiver_spans.value(("grpc", "accepted")) == 1


async def test_memory_limit_refuses_http_with_503_and_retry_after(hardened: Collector) -> None:
    """Over the memory limit: 503 + Retry-After + UNAVAILABLE status, nothing derived; then recovery."""
    hardened.admission.memory_limit_bytes = 1  # any RSS is over it
    hardened.admission.retry_after_s = 3.0
    status, headers, body = await _post(hardened, build_request().SerializeToString())
    assert status == 503
    assert headers["Retry-After"] == "3"
    assert status_pb2.Status.FromString(body).code == code_pb2.UNAVAILABLE
    assert hardened.pipeline.receiver_spans.value(("http", "accepted")) == 0
    hardened.admission.memory_limit_bytes = None
    await _still_healthy(hardened)


async def test_memory_limit_refuses_grpc_with_unavailable_and_retry_info(hardened: Collector) -> None:
    """Over the memory limit: UNAVAILABLE with a RetryInfo detail, which OTLP exporters honour."""
    hardened.admission.memory_limit_bytes = 1
    hardened.admission.retry_after_s = 2.0
    async with grpc.aio.insecure_channel(str(hardened.grpc_endpoint)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await TraceServiceStub(channel).Export(build_request())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    details = dict(info.value.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry) and retry.retry_delay.seconds == 2
    assert hardened.admission.refusals.value(("memory_limit",)) >= 1


async def test_unexpected_error_is_retryable_not_internal(hardened: Collector) -> None:
    """A bug in the span path answers 503 / UNAVAILABLE (retryable), never 500/INTERNAL/UNKNOWN."""

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"bug holding {CANARY}")

    hardened.pipeline.ingest = boom  # type: ignore[method-assign]  # JSON bodies
    hardened.pipeline.ingest_received = boom  # type: ignore[method-assign]  # protobuf bodies
    status, headers, body = await _post(hardened, build_request().SerializeToString())
    assert status == 503 and "Retry-After" in headers
    assert CANARY.encode() not in body
    async with grpc.aio.insecure_channel(str(hardened.grpc_endpoint)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await TraceServiceStub(channel).Export(build_request())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert CANARY not in (info.value.details() or "")


async def test_oversized_header_is_431_without_echo(hardened: Collector) -> None:
    """A header over max_header_bytes gets 431 with a fixed text; the value is not echoed."""
    status, _, body = await _post(hardened, b"", **{"X-Api-Key": CANARY + "a" * 5000})
    assert status == 431
    assert CANARY.encode() not in body
    await _still_healthy(hardened)


async def test_too_many_headers_is_431(hardened: Collector) -> None:
    """More than 128 headers gets 431."""
    status, _, _ = await _post(hardened, b"", **{f"X-H{i}": "v" for i in range(200)})
    assert status == 431
    await _still_healthy(hardened)


async def test_grpc_oversized_metadata_is_refused(hardened: Collector) -> None:
    """Metadata over the limit is refused by grpc (RESOURCE_EXHAUSTED or a reset), and the server lives."""
    async with grpc.aio.insecure_channel(str(hardened.grpc_endpoint)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await TraceServiceStub(channel).Export(
                build_request(), metadata=(("x-big", CANARY + "a" * 20000),), timeout=5
            )
        assert info.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL)
        assert CANARY not in (info.value.details() or "")
        await TraceServiceStub(channel).Export(build_request(), timeout=5)


async def test_slowloris_head_is_cut_off_after_the_read_timeout(hardened: Collector) -> None:
    """A connection that never completes its request head is closed by the server (read_timeout 1 s)."""
    endpoint = hardened.http_endpoint
    assert endpoint is not None
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    writer.write(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await writer.drain()
    # The server closes the connection; 10 s is a generous bound for a 1 s timeout.
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    await _still_healthy(hardened)


async def test_slow_body_gets_408_and_the_connection_is_closed(hardened: Collector) -> None:
    """A body that stops arriving gets 408 within about the read timeout, then the connection closes."""
    endpoint = hardened.http_endpoint
    assert endpoint is not None
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    writer.write(
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Length: 1000\r\n\r\n\x0a\x02"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()
    await _still_healthy(hardened)


async def test_grpc_gzip_bomb_is_resource_exhausted(hardened: Collector) -> None:
    """A gzip-compressed gRPC message inflating past the limit is RESOURCE_EXHAUSTED."""
    request = ExportTraceServiceRequest()
    request.resource_spans.add().schema_url = "x" * (LIMIT * 8)
    async with grpc.aio.insecure_channel(
        str(hardened.grpc_endpoint),
        compression=grpc.Compression.Gzip,
        options=[("grpc.max_send_message_length", 64 << 20)],
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await TraceServiceStub(channel).Export(request)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _nested_any_value_request(depth: int) -> bytes:
    request = build_request()
    kv = request.resource_spans[0].scope_spans[0].spans[0].attributes.add()
    kv.key = "deep"
    value = kv.value
    for _ in range(depth):
        value = value.array_value.values.add()
    value.string_value = "leaf"
    return request.SerializeToString()


def _random(n: int) -> bytes:
    return os.urandom(n)


def _many_attributes() -> bytes:
    request = build_request("attrs", [("op", SPAN_KIND_SERVER, 0)] * 2)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for i in range(100_000):
        kv = span.attributes.add()
        kv.key = f"k{i}"
        kv.value.bool_value = True
    return request.SerializeToString()


def _json_span(**overrides: object) -> bytes:
    doc = json_request()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0].update(overrides)
    return json.dumps(doc).encode()


def _json_attr(value: object) -> bytes:
    doc = json_request()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"] = [{"key": "n", "value": value}]
    return json.dumps(doc).encode()


# (case, body, content type, extra headers, expected HTTP status, expected rejected spans or None)
BAD_INPUTS = [
    ("empty protobuf body (a valid empty request)", b"", PROTOBUF, {}, 200, None),
    ("empty JSON body", b"", JSON, {}, 400, None),
    ("random bytes as protobuf", _random(4096), PROTOBUF, {}, 400, None),
    ("random bytes as JSON", _random(4096), JSON, {}, 400, None),
    ("truncated protobuf", build_request().SerializeToString()[:-7], PROTOBUF, {}, 400, None),
    ("invalid UTF-8 in a protobuf string", b"\x0a\x07\x0a\x05\x0a\x03\xff\xfe\xfd", PROTOBUF, {}, 400, None),
    ("invalid UTF-8 JSON", b'{"resourceSpans": "\xff\xfe"}', JSON, {}, 400, None),
    ("JSON trailing comma", b'{"resourceSpans": [],}', JSON, {}, 400, None),
    ("JSON array at top level", b"[]", JSON, {}, 400, None),
    ("JSON deeply nested", b"[" * 100_000 + b"]" * 100_000, JSON, {}, 400, None),
    ("protobuf deeply nested AnyValue", _nested_any_value_request(200), PROTOBUF, {}, 400, None),
    ("JSON negative time", _json_span(startTimeUnixNano="-5"), JSON, {}, 400, None),
    ("JSON overflowing int", _json_attr({"intValue": str(2**70)}), JSON, {}, 400, None),
    ("JSON NaN double (allowed by proto3 JSON)", _json_attr({"doubleValue": "NaN"}), JSON, {}, 200, None),
    ("JSON negative int attribute", _json_attr({"intValue": "-7"}), JSON, {}, 200, None),
    ("JSON enum by name (lenient)", _json_span(kind="SPAN_KIND_SERVER"), JSON, {}, 200, None),
    (
        "JSON time as a number (lenient)",
        _json_span(startTimeUnixNano=1700000000000000000),
        JSON,
        {},
        200,
        None,
    ),
    ("JSON upper-case hex id (lenient)", _json_span(spanId="EEE19B7EC3C1B173"), JSON, {}, 200, None),
    ("JSON wrong id length", _json_span(traceId="abcd"), JSON, {}, 200, 1),
    ("JSON unknown kind number", _json_span(kind=42), JSON, {}, 200, None),
    ("end before start", _json_span(endTimeUnixNano="1"), JSON, {}, 200, 1),
    ("100k attributes", _many_attributes(), PROTOBUF, {}, 200, 1),
    ("body over the limit", b"\x00" * (LIMIT + 1), PROTOBUF, {}, 413, None),
    ("gzip bomb", gzip.compress(b"\x00" * (LIMIT * 40)), PROTOBUF, {"Content-Encoding": "gzip"}, 413, None),
    ("corrupt gzip", b"\x1f\x8b" + _random(100), PROTOBUF, {"Content-Encoding": "gzip"}, 400, None),
    ("wrong content type", b"{}", "text/plain", {}, 415, None),
]


@pytest.mark.parametrize(
    ("case", "body", "content_type", "headers", "expected", "rejected"),
    BAD_INPUTS,
    ids=[c[0] for c in BAD_INPUTS],
)
async def test_bad_input_gets_the_right_status_and_the_process_stays_healthy(
    hardened: Collector,
    caplog: pytest.LogCaptureFixture,
    case: str,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    expected: int,
    rejected: int | None,
) -> None:
    """Each bad input of RELIABILITY.md gets its status (no 5xx, no traceback) and a good request follows."""
    caplog.set_level(logging.DEBUG, logger="spansignals")
    status, _, answer = await _post(hardened, body, content_type, **headers)
    assert status == expected, answer[:300]
    assert b"Traceback" not in answer
    if rejected is not None:
        if content_type == JSON:
            assert json.loads(answer)["partialSuccess"]["rejectedSpans"] == str(rejected)
        else:
            assert ExportTraceServiceResponse.FromString(answer).partial_success.rejected_spans == rejected
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await _still_healthy(hardened)
