"""OTLP request decoding: protobuf, the OTLP/JSON rules, gzip with a size limit."""

from __future__ import annotations

import gzip
import json

import pytest
from otlp_builders import build_request, json_request

from spansignals.processors.collector.decoding import (
    RequestDecodeError,
    RequestTooLarge,
    gunzip_limited,
    parse_json_request,
    parse_protobuf_request,
)


def test_protobuf_round_trip() -> None:
    """A serialized request parses back to the same message."""
    request = build_request(spans=[("a", 2, 0), ("b", 3, 2)])
    assert parse_protobuf_request(request.SerializeToString()) == request


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05abc", b"\x0a"])
def test_protobuf_garbage_is_a_decode_error(body: bytes) -> None:
    """Bodies that are not an ExportTraceServiceRequest raise RequestDecodeError, not DecodeError."""
    with pytest.raises(RequestDecodeError, match="not a valid protobuf"):
        parse_protobuf_request(body)


def test_empty_protobuf_body_is_an_empty_request() -> None:
    """An empty body is a valid (empty) request, as in protobuf."""
    assert len(parse_protobuf_request(b"").resource_spans) == 0


@pytest.mark.parametrize("snake_case", [False, True])
def test_json_hex_ids_and_field_name_styles(snake_case: bool) -> None:
    """OTLP/JSON rules: hex ids, camelCase or snake_case names, ignored unknown fields, string int64."""
    request = parse_json_request(json.dumps(json_request(snake_case=snake_case)).encode())
    rs = request.resource_spans[0]
    assert rs.resource.attributes[0].value.string_value == "json-svc"
    spans = rs.scope_spans[0].spans
    assert [s.name for s in spans] == ["GET /items", "POST upstream"]
    assert spans[0].trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert spans[0].span_id == bytes.fromhex("eee19b7ec3c1b173")
    assert spans[0].parent_span_id == b""
    assert spans[1].links[0].span_id == bytes.fromhex("eee19b7ec3c1b174")
    assert spans[1].kind == 3 and spans[1].status.code == 2
    assert spans[0].end_time_unix_nano - spans[0].start_time_unix_nano == 30_000_000


def test_json_enum_names_are_accepted() -> None:
    """Enum names (SPAN_KIND_SERVER) are accepted as well as integers."""
    doc = json_request()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["kind"] = "SPAN_KIND_SERVER"
    assert parse_json_request(json.dumps(doc).encode()).resource_spans[0].scope_spans[0].spans[0].kind == 2


@pytest.mark.parametrize(
    ("trace_id", "match"),
    [
        ("W47/95gDgQPSabYzgT/GDA==", r"spans\[0\]\.traceId: must be a hex string"),
        (12345, r"spans\[0\]\.traceId: must be a hex string"),
        ("5b8efff79803810", r"traceId: must be a hex string"),
    ],
)
def test_json_bad_ids_name_the_field(trace_id: object, match: str) -> None:
    """A base64, numeric or odd-length id is refused with the path of the field."""
    with pytest.raises(RequestDecodeError, match=match):
        parse_json_request(json.dumps(json_request(trace_id=trace_id)).encode())


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'"x"',
        b"\xff\xfe",
        b'{"resourceSpans": 3}',
        b'{"resourceSpans": [{"resource": 1}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": Infinity}]}]}]}',
    ],
)
def test_json_malformed_is_a_decode_error(body: bytes) -> None:
    """Invalid JSON, a non-object, or a wrong shape raises RequestDecodeError."""
    with pytest.raises(RequestDecodeError):
        parse_json_request(body)


def test_json_error_does_not_echo_request_values() -> None:
    """Parser messages never quote values from the request (they may hold credentials)."""
    doc = json_request()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] = "Bearer sk-canary-secret-123"
    with pytest.raises(RequestDecodeError) as info:
        parse_json_request(json.dumps(doc).encode())
    assert "canary" not in str(info.value)


def test_json_deep_nesting_is_a_decode_error() -> None:
    """Pathologically nested JSON is refused, not a RecursionError."""
    with pytest.raises(RequestDecodeError):
        parse_json_request(b"[" * 100_000 + b"]" * 100_000)


def test_gunzip_within_limit() -> None:
    """A gzip body (also multi-member) inflates to the original bytes."""
    assert gunzip_limited(gzip.compress(b"abc") + gzip.compress(b"def"), 100) == b"abcdef"


def test_gunzip_bomb_stops_at_the_limit() -> None:
    """A body that inflates past the limit raises RequestTooLarge without inflating the rest."""
    bomb = gzip.compress(b"\x00" * (50 * 1024 * 1024))
    with pytest.raises(RequestTooLarge):
        gunzip_limited(bomb, 1024 * 1024)


def test_gunzip_exactly_at_the_limit_is_accepted() -> None:
    """The limit is inclusive."""
    assert len(gunzip_limited(gzip.compress(b"x" * 1000), 1000)) == 1000


@pytest.mark.parametrize("body", [b"not gzip", gzip.compress(b"x" * 1000)[:-12]])
def test_gunzip_corrupt_or_truncated(body: bytes) -> None:
    """Corrupt or truncated gzip raises RequestDecodeError."""
    with pytest.raises(RequestDecodeError):
        gunzip_limited(body, 10_000)


def test_json_uppercase_hex_and_numeric_int64() -> None:
    """Uppercase hex ids and int64 timestamps as JSON numbers (the spec example's style) are accepted."""
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "upper"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "lib", "version": "1.0.0"},
                        "spans": [
                            {
                                "traceId": "0AF7651916CD43DD8448EB211C80319C",
                                "spanId": "B7AD6B7169203331",
                                "parentSpanId": "B7AD6B7169203330",
                                "name": "server span",
                                "startTimeUnixNano": 1544712660000000000,
                                "endTimeUnixNano": 1544712661000000000,
                                "kind": 2,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    span = parse_json_request(json.dumps(doc).encode()).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    assert span.parent_span_id == bytes.fromhex("b7ad6b7169203330")
    assert span.end_time_unix_nano - span.start_time_unix_nano == 1_000_000_000
