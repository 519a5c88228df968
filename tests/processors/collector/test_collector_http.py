"""The OTLP/HTTP receiver: encodings, compression, and the error mapping of RELIABILITY.md."""

from __future__ import annotations

import gzip
import json

import aiohttp
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from otlp_builders import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_CODE_ERROR, build_request, json_request

from spansignals.processors.collector import Collector

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def _url(collector: Collector, path: str = "/v1/traces") -> str:
    return f"http://{collector.http_endpoint}{path}"


async def _post(
    collector: Collector, body: bytes, content_type: str, **headers: str
) -> tuple[int, str, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(_url(collector), data=body, headers={"Content-Type": content_type, **headers}) as resp,
    ):
        return resp.status, resp.content_type, await resp.read()


def _calls(collector: Collector, service: str, name: str, kind: str, status: str) -> float:
    red = collector.engine.get("red")
    assert red is not None
    return red.calls.value((service, name, kind, status))  # type: ignore[attr-defined]


def _accepted(collector: Collector, transport: str = "http") -> float:
    return collector.pipeline.receiver_spans.value((transport, "accepted"))


async def test_protobuf_request_is_derived_and_answered_in_protobuf(collector: Collector) -> None:
    """A protobuf export returns 200 with an ExportTraceServiceResponse and feeds RED."""
    request = build_request("shop", [("GET /", SPAN_KIND_SERVER, 0)] * 3 + [("call", SPAN_KIND_CLIENT, 2)])
    status, ctype, body = await _post(collector, request.SerializeToString(), PROTOBUF)
    assert (status, ctype) == (200, PROTOBUF)
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    assert _calls(collector, "shop", "GET /", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET") == 3
    assert _calls(collector, "shop", "call", "SPAN_KIND_CLIENT", "STATUS_CODE_ERROR") == 1
    assert _accepted(collector) == 4


async def test_json_request_is_answered_in_json(collector: Collector) -> None:
    """An OTLP/JSON export (charset parameter allowed) returns 200 with a JSON response."""
    body = json.dumps(json_request()).encode()
    status, ctype, answer = await _post(collector, body, "application/json; charset=utf-8")
    assert (status, ctype) == (200, JSON)
    assert json.loads(answer) == {}
    assert _calls(collector, "json-svc", "POST upstream", "SPAN_KIND_CLIENT", "STATUS_CODE_ERROR") == 1


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
async def test_gzip_bodies_are_accepted(collector: Collector, content_type: str) -> None:
    """Content-Encoding: gzip works for both encodings."""
    raw = (
        build_request("gz", [("op", SPAN_KIND_SERVER, STATUS_CODE_ERROR)]).SerializeToString()
        if content_type == PROTOBUF
        else json.dumps(json_request()).encode()
    )
    status, _, _ = await _post(collector, gzip.compress(raw), content_type, **{"Content-Encoding": "gzip"})
    assert status == 200
    assert _accepted(collector) == (1 if content_type == PROTOBUF else 2)


async def test_malformed_protobuf_is_400_with_a_status_body(collector: Collector) -> None:
    """Garbage protobuf gets 400 and a google.rpc.Status INVALID_ARGUMENT in protobuf."""
    status, ctype, body = await _post(collector, b"\xff\xff\xff\xff", PROTOBUF)
    assert (status, ctype) == (400, PROTOBUF)
    answer = status_pb2.Status.FromString(body)
    assert answer.code == code_pb2.INVALID_ARGUMENT
    assert "not a valid protobuf" in answer.message
    assert _accepted(collector) == 0


async def test_malformed_json_is_400_with_a_json_status(collector: Collector) -> None:
    """Invalid OTLP/JSON gets 400 and a JSON status naming the bad field, no traceback."""
    body = json.dumps(json_request(trace_id="not-hex")).encode()
    status, ctype, answer = await _post(collector, body, JSON)
    assert (status, ctype) == (400, JSON)
    decoded = json.loads(answer)
    assert decoded["code"] == code_pb2.INVALID_ARGUMENT
    assert "spans[0].traceId" in decoded["message"]
    assert "Traceback" not in answer.decode()


async def test_corrupt_gzip_is_400(collector: Collector) -> None:
    """A body declared gzip that is not gzip gets 400."""
    status, _, _ = await _post(collector, b"plain", PROTOBUF, **{"Content-Encoding": "gzip"})
    assert status == 400


@pytest.mark.parametrize("content_type", ["text/plain", "application/grpc", ""])
async def test_wrong_content_type_is_415(collector: Collector, content_type: str) -> None:
    """A content type other than protobuf or JSON gets 415 naming the accepted ones."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            _url(collector), data=b"x", headers={"Content-Type": content_type} if content_type else {}
        ) as resp,
    ):
        assert resp.status == 415
        text = await resp.text()
        assert PROTOBUF in text
        assert not content_type or content_type not in text


async def test_unsupported_content_encoding_is_415(collector: Collector) -> None:
    """Only gzip (or identity) is accepted as Content-Encoding."""
    status, _, _ = await _post(collector, b"x", PROTOBUF, **{"Content-Encoding": "br"})
    assert status == 415


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_wrong_method_is_405(collector: Collector, method: str) -> None:
    """Methods other than POST on /v1/traces get 405 with Allow: POST."""
    async with aiohttp.ClientSession() as session, session.request(method, _url(collector)) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"


@pytest.mark.parametrize("path", ["/v1/profiles", "/v1/metric", "/", "/v1/traces/x"])
async def test_unknown_path_is_404(collector: Collector, path: str) -> None:
    """Paths other than /v1/traces, /v1/metrics and /v1/logs get 404."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(_url(collector, path), data=b"", headers={"Content-Type": PROTOBUF}) as resp,
    ):
        assert resp.status == 404


async def test_oversized_body_is_413(collector: Collector) -> None:
    """A body over the limit gets 413 RESOURCE_EXHAUSTED."""
    limit = collector.settings.max_request_bytes
    status, _, body = await _post(collector, b"\x00" * (limit + 1), PROTOBUF)
    assert status == 413
    assert status_pb2.Status.FromString(body).code == code_pb2.RESOURCE_EXHAUSTED


async def test_gzip_bomb_is_413(collector: Collector) -> None:
    """A small gzip body that inflates past the limit gets 413 (limit applies after decompression)."""
    limit = collector.settings.max_request_bytes
    bomb = gzip.compress(b"\x00" * (limit * 40))
    assert len(bomb) < limit
    status, _, _ = await _post(collector, bomb, PROTOBUF, **{"Content-Encoding": "gzip"})
    assert status == 413


async def test_collector_stays_healthy_after_bad_input(collector: Collector) -> None:
    """After a run of bad requests a good one is still accepted."""
    for body in (b"\xff", b"", b"\x0a\x05abc"):
        await _post(collector, body, PROTOBUF)
    status, _, _ = await _post(collector, build_request().SerializeToString(), PROTOBUF)
    assert status == 200
    assert _accepted(collector) == 1


async def test_error_bodies_never_echo_request_content(collector: Collector) -> None:
    """A canary planted in the content type, encoding, JSON values or protobuf bytes is in no answer."""
    canary = "sk-canary-7f3a"
    doc = json_request()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] = canary
    attempts = [
        (b"x", f"text/{canary}", {}),
        (b"x", PROTOBUF, {"Content-Encoding": canary}),
        (json.dumps(doc).encode(), JSON, {}),
        (b"\xff" + canary.encode(), PROTOBUF, {}),
        (
            json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": canary}]}]}]}).encode(),
            JSON,
            {},
        ),
    ]
    for body, content_type, headers in attempts:
        status, _, answer = await _post(collector, body, content_type, **headers)
        assert status in (400, 415)
        assert canary.encode() not in answer
