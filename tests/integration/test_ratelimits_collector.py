"""The collector derives rate-limit signals from spans of any language (headers as string arrays)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from peers import CollectorProcess, poll_until

pytestmark = pytest.mark.integration

PREFIX = "http.response.header."


def _kv(key: str, value: str | int | list[str]) -> KeyValue:
    if isinstance(value, list):
        return KeyValue(
            key=key, value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value]))
        )
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _request(now: float) -> bytes:
    """What a Java or Go service's OTel SDK sends: GitHub calls with captured response headers."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", "java-billing"))
    ss = rs.scope_spans.add()
    end = int(now * 1e9)
    calls = [
        (
            200,
            {
                "x-ratelimit-limit": ["5000"],
                "x-ratelimit-remaining": ["4999"],
                "x-ratelimit-reset": [str(int(now) + 3600)],
                "x-ratelimit-resource": ["core"],
            },
        ),
        (
            403,
            {
                "x-ratelimit-limit": ["30"],
                "x-ratelimit-remaining": ["0"],
                "x-ratelimit-reset": [str(int(now) + 600)],
                "x-ratelimit-resource": ["search"],
            },
        ),
    ]
    for i, (status, headers) in enumerate(calls, 1):
        span = ss.spans.add(
            trace_id=i.to_bytes(16, "big"),
            span_id=i.to_bytes(8, "big"),
            name="GET",
            kind=3,
            start_time_unix_nano=end - 5_000_000,
            end_time_unix_nano=end,
        )
        span.attributes.extend(
            [
                _kv("http.request.method", "GET"),
                _kv("server.address", "api.github.com"),
                _kv("http.response.status_code", status),
            ]
        )
        span.attributes.extend(_kv(PREFIX + name, value) for name, value in headers.items())
    return request.SerializeToString()


def test_collector_turns_foreign_spans_into_ratelimit_metrics(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    """OTLP spans with GitHub headers yield the gauges, a throttle count and an open breaker."""
    collector = start_collector()
    post = urllib.request.Request(
        collector.traces_url,
        data=_request(time.time()),
        method="POST",
        headers={"content-type": "application/x-protobuf"},
    )
    with urllib.request.urlopen(post, timeout=5) as resp:
        assert resp.status == 200

    def remaining() -> dict[str, float]:
        return {
            labels["resource"]: v
            for labels, v in collector.samples("spansignals_ratelimit_remaining")
            if labels.get("service_name") == "java-billing" and labels.get("provider") == "github"
        }

    assert poll_until(remaining, timeout=10, what="ratelimit gauges") == {"core": 4999, "search": 0}
    limits = {labels["resource"]: v for labels, v in collector.samples("spansignals_ratelimit_limit")}
    assert limits == {"core": 5000, "search": 30}
    resets = {labels["resource"]: v for labels, v in collector.samples("spansignals_ratelimit_reset_seconds")}
    assert 3500 < resets["core"] <= 3600 and 500 < resets["search"] <= 600
    throttled = collector.samples("spansignals_ratelimit_throttled_total")
    assert [(labels["status_code"], v) for labels, v in throttled] == [("403", 1.0)]
    states = collector.samples("spansignals_breaker_state")
    assert [(labels["provider"], v) for labels, v in states] == [("github", 2.0)]
