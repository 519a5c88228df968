"""Invalid spans inside a valid request: removed, not derived, reported for partial_success."""

from __future__ import annotations

import pytest
from otlp_builders import SPAN_KIND_SERVER, build_request

from spansignals.processors.collector.pipeline import TracePipeline, count_spans
from spansignals.processors.collector.validation import SpanLimits
from spansignals.processors.engine import SignalEngine
from spansignals.processors.red import RedSpanProcessor


def _pipeline(**limits: int) -> TracePipeline:
    return TracePipeline(SignalEngine([RedSpanProcessor()]), limits=SpanLimits(**limits))


def _calls(pipeline: TracePipeline) -> float:
    red = pipeline.engine.get("red")
    return sum(v for _, v in red.calls.snapshot())  # type: ignore[attr-defined]


def _break(span: object, how: str) -> None:
    if how == "short trace_id":
        span.trace_id = b"\x01" * 15  # type: ignore[attr-defined]
    elif how == "zero trace_id":
        span.trace_id = bytes(16)  # type: ignore[attr-defined]
    elif how == "missing span_id":
        span.span_id = b""  # type: ignore[attr-defined]
    elif how == "long span_id":
        span.span_id = b"\x01" * 9  # type: ignore[attr-defined]
    elif how == "bad parent":
        span.parent_span_id = b"\x01" * 4  # type: ignore[attr-defined]
    elif how == "end before start":
        span.end_time_unix_nano = span.start_time_unix_nano - 1  # type: ignore[attr-defined]
    elif how == "too many attributes":
        for i in range(5):
            kv = span.attributes.add()  # type: ignore[attr-defined]
            kv.key = f"k{i}"
            kv.value.int_value = i
    elif how == "long value":
        kv = span.attributes.add()  # type: ignore[attr-defined]
        kv.key = "db.statement"
        kv.value.array_value.values.add().string_value = "x" * 5000


CASES = {
    "short trace_id": "trace_id must be 16 bytes",
    "zero trace_id": "trace_id must be 16 bytes",
    "missing span_id": "span_id must be 8 bytes",
    "long span_id": "span_id must be 8 bytes",
    "bad parent": "parent_span_id must be empty or 8 bytes",
    "end before start": "end_time_unix_nano is before start_time_unix_nano",
    "too many attributes": "more attributes than the limit",
    "long value": "longer than the limit",
}


@pytest.mark.parametrize("how", sorted(CASES))
def test_each_rule_rejects_only_the_bad_span(how: str) -> None:
    """One broken span among three is removed, counted, named in the message; the others derive."""
    pipeline = _pipeline(max_attributes=4, max_attribute_value_bytes=1024)
    request = build_request("svc", [("op", SPAN_KIND_SERVER, 0)] * 3)
    _break(request.resource_spans[0].scope_spans[0].spans[1], how)
    result = pipeline.ingest(request, "grpc")
    assert (result.accepted, result.rejected, result.modified) == (2, 1, True)
    assert CASES[how] in result.error_message
    assert "first at resourceSpans[0].scopeSpans[0].spans[1]" in result.error_message
    assert count_spans(request) == 2  # what would be forwarded
    assert _calls(pipeline) == 2
    assert pipeline.receiver_spans.value(("grpc", "rejected")) == 1
    assert pipeline.receiver_spans.value(("grpc", "accepted")) == 2


def test_valid_request_is_untouched() -> None:
    """A valid request is accepted whole and reported unmodified (its bytes can be forwarded)."""
    request = build_request("svc", [("op", SPAN_KIND_SERVER, 0)] * 3, resources=2)
    before = request.SerializeToString()
    result = _pipeline().ingest(request, "http")
    assert result == (6, 0, "", False)
    assert request.SerializeToString() == before


def test_resource_over_the_attribute_cap_rejects_its_spans_only() -> None:
    """Too many resource attributes reject every span of that resource, not the others."""
    request = build_request("svc", [("op", SPAN_KIND_SERVER, 0)] * 2, resources=2)
    for i in range(10):
        kv = request.resource_spans[1].resource.attributes.add()
        kv.key, kv.value.string_value = f"r{i}", "v"
    result = _pipeline(max_attributes=4).ingest(request, "grpc")
    assert (result.accepted, result.rejected) == (2, 2)
    assert "resourceSpans[1].resource" in result.error_message
    assert count_spans(request) == 2


def test_message_sums_several_rules_and_never_quotes_values() -> None:
    """Several rules are listed with counts; the message holds no attribute value."""
    request = build_request("svc", [("op", SPAN_KIND_SERVER, 0)] * 4)
    spans = request.resource_spans[0].scope_spans[0].spans
    _break(spans[0], "short trace_id")
    _break(spans[2], "short trace_id")
    _break(spans[3], "long value")
    spans[3].attributes[0].value.array_value.values[0].string_value = "sk-canary-" + "x" * 5000
    result = _pipeline(max_attribute_value_bytes=1024).ingest(request, "grpc")
    assert result.rejected == 3
    assert result.error_message.startswith("3 spans rejected: ")
    assert "(2)" in result.error_message and "(1)" in result.error_message
    assert "canary" not in result.error_message


def test_length_rule_is_skipped_for_bodies_smaller_than_the_limit() -> None:
    """A body smaller than the value limit cannot hold a longer value: the scan is skipped."""
    request = build_request("svc", [("op", SPAN_KIND_SERVER, 0)])
    _break(request.resource_spans[0].scope_spans[0].spans[0], "long value")
    # Declared body size below the limit: the value is not scanned (it cannot be longer).
    result = _pipeline(max_attribute_value_bytes=1_000_000).ingest(request, "grpc", body_bytes=6000)
    assert result.rejected == 0


def test_hundred_thousand_attributes_are_rejected_cheaply() -> None:
    """A span with 100k attributes is rejected under the default cap of 1024."""
    request = build_request("svc", [("op", SPAN_KIND_SERVER, 0)] * 2)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for i in range(100_000):
        kv = span.attributes.add()
        kv.key = f"k{i}"
        kv.value.int_value = i
    result = _pipeline().ingest(request, "grpc")
    assert (result.accepted, result.rejected) == (1, 1)
