"""Property tests: the decoders answer any input with a request or a RequestDecodeError, nothing else."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from otlp_builders import json_request

from spansignals.processors.collector.decoding import (
    RequestDecodeError,
    RequestTooLarge,
    gunzip_limited,
    parse_json_request,
    parse_protobuf_request,
)

_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
_SPAN_FIELDS = ["traceId", "spanId", "name", "kind", "startTimeUnixNano", "status", "attributes", "links"]


@_FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_as_protobuf(body: bytes) -> None:
    """Random bytes parse or raise RequestDecodeError."""
    with contextlib.suppress(RequestDecodeError):
        parse_protobuf_request(body)


@_FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_as_json(body: bytes) -> None:
    """Random bytes as OTLP/JSON parse or raise RequestDecodeError."""
    with contextlib.suppress(RequestDecodeError):
        parse_json_request(body)


@_FUZZ
@given(st.sampled_from(_SPAN_FIELDS), _json_values)
def test_valid_document_with_one_field_replaced(field: str, value: object) -> None:
    """A valid document with any span field set to any JSON value parses or raises RequestDecodeError."""
    doc = json_request()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0][field] = value
    with contextlib.suppress(RequestDecodeError):
        parse_json_request(json.dumps(doc).encode())


@_FUZZ
@given(st.binary(max_size=512), st.integers(min_value=0, max_value=4096))
def test_random_bytes_as_gzip(body: bytes, limit: int) -> None:
    """Random bytes declared gzip inflate within the limit or raise one of the two decode errors."""
    with contextlib.suppress(RequestDecodeError, RequestTooLarge):
        assert len(gunzip_limited(body, limit)) <= limit
