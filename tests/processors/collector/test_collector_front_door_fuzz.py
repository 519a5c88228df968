"""Property tests (time-boxed) of the HTTP front door and the span path.

* Any method, path, content type, encoding and body gets one of the statuses RELIABILITY.md maps
  (never a 5xx), and the collector keeps accepting good requests.
* Any structurally valid request with hypothesis-chosen ids, times and attribute values (NaN,
  huge, negative, nested) is ingested without raising, and accepted + rejected = spans sent.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_builders import build_request

from spansignals.processors.collector import Collector, CollectorSettings, Endpoint
from spansignals.processors.collector.pipeline import TracePipeline, count_spans
from spansignals.processors.config import load_config
from spansignals.processors.factory import build_engine

_FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ALLOWED = {200, 400, 401, 404, 405, 408, 413, 415, 431}


class _BackgroundCollector:
    """A collector on its own event loop thread, so sync hypothesis tests can talk to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        any_port = Endpoint("127.0.0.1", 0)
        settings_ = CollectorSettings(
            grpc_endpoint=None,
            http_endpoint=any_port,
            metrics_endpoint=any_port,
            max_request_bytes=64 * 1024,
            shutdown_timeout_s=1.0,
            read_timeout_s=2.0,
        )
        self.collector = Collector(build_engine(load_config({})), settings_)
        asyncio.run_coroutine_threadsafe(self.collector.start(), self.loop).result(30)
        endpoint = self.collector.http_endpoint
        assert endpoint is not None
        self.port = endpoint.port

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.collector.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def front_door() -> Iterator[_BackgroundCollector]:
    """One background collector for the whole module."""
    background = _BackgroundCollector()
    yield background
    background.close()


_GOOD = build_request().SerializeToString()
_bodies = st.one_of(
    st.binary(max_size=2048),
    st.just(_GOOD),
    st.binary(max_size=64).map(lambda b: _GOOD[: len(_GOOD) // 2] + b),
    st.binary(max_size=512).map(gzip.compress),
    st.text(max_size=200).map(str.encode),
)
_content_types = st.sampled_from(
    [
        "application/x-protobuf",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/grpc",
        "",
        "application/x-protobuf; x=1",
    ]
)


@_FUZZ
@given(
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
    path=st.sampled_from(["/v1/traces", "/v1/traces", "/v1/other", "/", "/v1/traces/x"]),
    content_type=_content_types,
    encoding=st.sampled_from([None, "gzip", "identity", "br", "GZIP"]),
    body=_bodies,
)
def test_front_door_answers_every_request_with_a_mapped_status(
    front_door: _BackgroundCollector,
    method: str,
    path: str,
    content_type: str,
    encoding: str | None,
    body: bytes,
) -> None:
    """Whatever arrives, the answer is a mapped 2xx/4xx (never 5xx) and a good request still passes."""
    headers = {"Content-Type": content_type} if content_type else {}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    assert front_door.request(method, path, body, headers) in ALLOWED
    assert front_door.request("POST", "/v1/traces", _GOOD, {"Content-Type": "application/x-protobuf"}) == 200


_any_scalar = st.one_of(
    st.text(max_size=20).map(lambda v: ("string_value", v)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: ("int_value", v)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: ("double_value", v)),
    st.booleans().map(lambda v: ("bool_value", v)),
    st.binary(max_size=20).map(lambda v: ("bytes_value", v)),
)
_attributes = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "http.response.status_code",
                "gen_ai.usage.input_tokens",
                "gen_ai.usage.output_tokens",
                "gen_ai.request.model",
                "gen_ai.system",
                "server.address",
                "url.full",
                "http.response.header.x-ratelimit-remaining",
                "http.response.header.retry-after",
                "http.route",
                "other",
            ]
        ),
        st.one_of(_any_scalar, st.lists(_any_scalar, max_size=3).map(lambda v: ("array", v))),
    ),
    max_size=8,
)
_spans = st.lists(
    st.fixed_dictionaries(
        {
            "trace_id": st.binary(min_size=0, max_size=17),
            "span_id": st.binary(min_size=0, max_size=9),
            "start": st.integers(min_value=0, max_value=2**64 - 1),
            "end": st.integers(min_value=0, max_value=2**64 - 1),
            "kind": st.integers(min_value=0, max_value=9),
            "status": st.integers(min_value=0, max_value=5),
            "attributes": _attributes,
            "trace_state": st.sampled_from(["", "ot=th:8", "ot=th:zz", "ot=th:ffffffffffffff", "a=b"]),
        }
    ),
    min_size=1,
    max_size=6,
)


def _set(value: object, which: str, raw: object) -> None:
    if which == "array":
        for item_which, item in raw:  # type: ignore[attr-defined]
            _set(value.array_value.values.add(), item_which, item)  # type: ignore[attr-defined]
    else:
        setattr(value, which, raw)


def _build(spans: list[dict[str, object]]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "fuzz"
    scope = rs.scope_spans.add()
    for data in spans:
        span = scope.spans.add()
        span.trace_id = data["trace_id"]  # type: ignore[assignment]
        span.span_id = data["span_id"]  # type: ignore[assignment]
        span.start_time_unix_nano = data["start"]  # type: ignore[assignment]
        span.end_time_unix_nano = data["end"]  # type: ignore[assignment]
        span.kind = data["kind"]  # type: ignore[assignment]
        span.status.code = data["status"]  # type: ignore[assignment]
        span.trace_state = data["trace_state"]  # type: ignore[assignment]
        span.name = "op"
        for key, (which, raw) in data["attributes"]:  # type: ignore[attr-defined]
            attr = span.attributes.add()
            attr.key = key
            _set(attr.value, which, raw)
    return request


_PIPELINE = TracePipeline(build_engine(load_config({})), redact=True)


@_FUZZ
@given(_spans)
def test_span_path_never_raises_and_accounts_for_every_span(spans: list[dict[str, object]]) -> None:
    """Any ids, times, kinds and attribute values: no stage fails; accepted + rejected = sent."""
    request = _build(spans)
    sent = count_spans(request)
    result = _PIPELINE.ingest(request, "grpc")
    assert result.accepted + result.rejected == sent
    assert count_spans(request) == result.accepted
    failures = {labels: n for labels, n in _PIPELINE.engine.errors.family.snapshot() if n}
    assert failures == {}, "a derivation or the adapter raised on this input"
