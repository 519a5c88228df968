"""Span byte ranges from a request's encoding, and the "might contain" answers built on them."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spansignals.processors.collector.pipeline import TracePipeline
from spansignals.processors.collector.span_offsets import EncodedSpans, span_ranges
from spansignals.processors.config import load_config
from spansignals.processors.factory import build_engine
from spansignals.processors.view import OtlpSpanView

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from collector_throughput import build_template

# An unknown field (number 99, LEN) that a newer OTLP version could add at any level.
_UNKNOWN = bytes([(99 << 3 | 2) & 0x7F | 0x80, 99 >> 4]) + b"\x03abc"


def _request(seed: int) -> ExportTraceServiceRequest:
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    for r in range(rng.randint(1, 4)):
        rs = request.resource_spans.add()
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", f"svc{r}"
        rs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
        for s in range(rng.randint(0, 3)):
            ss = rs.scope_spans.add()
            ss.scope.name = f"scope{s}"
            for i in range(rng.randint(0, 40)):
                span = ss.spans.add()
                span.trace_id = rng.randbytes(16)
                span.span_id = rng.randbytes(8)
                span.name = rng.choice(["GET /", "chat gpt-4o", "usage.report", "x" * 300])
                span.start_time_unix_nano = 1_700_000_000_000_000_000 + i
                span.end_time_unix_nano = span.start_time_unix_nano + rng.randint(0, 10**12)
                span.kind = rng.choice([1, 2, 3])  # type: ignore[assignment]
                for _ in range(rng.randint(0, 6)):
                    kv = span.attributes.add()
                    kv.key = rng.choice(["http.route", "gen_ai.usage.input_tokens", "usage.x", "k" * 200])
                    if rng.random() < 0.5:
                        kv.value.int_value = rng.randint(-(2**40), 2**40)
                    else:
                        kv.value.string_value = rng.choice(["usage.", "plain", "é" * 90])
                if rng.random() < 0.2:
                    event = span.events.add()
                    event.name = "usage.event"
    return request


def _spans(request: ExportTraceServiceRequest) -> list[object]:
    return [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def test_ranges_are_exactly_each_spans_encoding() -> None:
    for seed in range(30):
        request = _request(seed)
        body = request.SerializeToString()
        ranges = span_ranges(body)
        assert ranges is not None
        spans = _spans(request)
        assert len(ranges[0]) == len(spans)
        for start, end, span in zip(*ranges, spans, strict=True):
            assert body[start:end] == span.SerializeToString()  # type: ignore[attr-defined]


def test_unknown_fields_at_every_level_are_skipped() -> None:
    request = _request(3)
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.MergeFromString(_UNKNOWN)
            ss.MergeFromString(_UNKNOWN)
        rs.MergeFromString(_UNKNOWN)
    request.MergeFromString(_UNKNOWN)
    body = request.SerializeToString()
    assert body.count(b"\x03abc") > 3
    ranges = span_ranges(body)
    assert ranges is not None
    assert [body[a:b] for a, b in zip(*ranges, strict=True)] == [
        s.SerializeToString() for s in _spans(request)
    ]  # type: ignore[attr-defined]


def test_answers_match_a_search_of_each_spans_own_encoding() -> None:
    for seed in range(30):
        request = _request(seed)
        body = request.SerializeToString()
        spans = _spans(request)
        hint = EncodedSpans(body, len(spans))
        for fragment in (b"usage.", b"gen_ai.", b"http.route", b"nowhere at all", b"k" * 200):
            for i, span in enumerate(spans):
                assert hint.might_contain(i, fragment) == (fragment in span.SerializeToString())  # type: ignore[attr-defined]


def test_inconsistent_bodies_answer_maybe_for_every_span() -> None:
    request = _request(5)
    body = request.SerializeToString()
    count = len(_spans(request))
    assert count > 0
    wrong_count = EncodedSpans(body, count + 1)  # not the body the message came from
    assert all(wrong_count.might_contain(i, b"GET") for i in range(count))
    truncated = EncodedSpans(body[:-1], count)  # the last span's length runs past the end
    assert all(truncated.might_contain(i, b"GET") for i in range(count))
    assert not EncodedSpans(body, count).might_contain(0, b"not in this body")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_walked_or_refused_without_raising(data: bytes) -> None:
    ranges = span_ranges(data)
    if ranges is not None:
        assert all(0 <= a <= b <= len(data) for a, b in zip(*ranges, strict=True))


def _totals(pipeline: TracePipeline) -> dict[str, object]:
    engine = pipeline.engine
    return {
        family.name: sorted(family.snapshot(), key=repr)
        for family in engine.metric_families()
        if family.name.startswith(("spansignals.tokens", "spansignals.cost", "traces.span"))
    }


def test_pipeline_with_the_body_derives_what_it_derives_without() -> None:
    body, _ = build_template(512)  # its first span has an all-zero trace id: rejected
    # A first resource the validation rejects whole (too many attributes) must not shift the
    # numbering of the spans after it.
    rejected = ExportTraceServiceRequest()
    rs = rejected.resource_spans.add()
    for i in range(1025):  # over the default limit of 1024
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = f"k{i}", "v"
    span = rs.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x01" * 8, "rejected"
    combined = rejected.SerializeToString() + body  # concatenated encodings merge repeated fields
    with_body, without = (TracePipeline(build_engine(load_config({}))) for _ in range(2))
    a = with_body.ingest(ExportTraceServiceRequest.FromString(combined), "grpc", body=combined)
    b = without.ingest(ExportTraceServiceRequest.FromString(combined), "grpc")
    assert (a.accepted, a.rejected) == (b.accepted, b.rejected) == (511, 2)
    assert "resourceSpans[0].resource" in a.error_message
    totals = _totals(with_body)
    assert totals == _totals(without)
    assert any(v for name, v in totals.items() if name == "spansignals.tokens")


def test_views_built_by_the_pipeline_answer_from_the_hint() -> None:
    body, _ = build_template(64)
    seen: list[OtlpSpanView] = []
    pipeline = TracePipeline(build_engine(load_config({})))
    pipeline.engine.process_batch = lambda views, processors=None: seen.extend(views)  # type: ignore[method-assign,assignment,arg-type,func-returns-value]
    pipeline.ingest(ExportTraceServiceRequest.FromString(body), "grpc", body=body)
    # the template's first span has an all-zero trace id: validation rejects it
    spans = [s for s in _spans(ExportTraceServiceRequest.FromString(body)) if any(s.trace_id)]  # type: ignore[attr-defined]
    assert len(seen) == len(spans) == 63
    for view, span in zip(seen, spans, strict=True):
        assert view._hint is not None
        assert view.might_hold_key(b"usage.") == (b"usage." in span.SerializeToString())  # type: ignore[attr-defined]
    assert all(view._attributes is None for view in seen)  # answered without building a mapping


def test_server_spans_never_build_an_attribute_mapping_under_the_default_derivations() -> None:
    """RED reads no attributes, rate limits look at client spans only and cost asks the request's
    bytes: a plain server span goes through every default derivation without an OtlpAttributes."""
    from spansignals.processors.view import KIND_SERVER

    body, _ = build_template(128)
    seen: list[OtlpSpanView] = []
    pipeline = TracePipeline(build_engine(load_config({})))
    process_batch = pipeline.engine.process_batch

    def keep(views: list[OtlpSpanView], processors: object = None) -> None:
        process_batch(views, processors)  # type: ignore[arg-type]
        seen.extend(views)

    pipeline.engine.process_batch = keep  # type: ignore[method-assign,assignment]
    pipeline.ingest(ExportTraceServiceRequest.FromString(body), "grpc", body=body)
    servers = [v for v in seen if v.kind == KIND_SERVER]
    others = [v for v in seen if v.kind != KIND_SERVER]
    assert servers and others
    assert all(v._attributes is None for v in servers)
    assert all(v._attributes is not None for v in others)  # client and LLM spans were read
    assert all(not v.might_hold_key(b"usage.") for v in servers)  # still without building
    assert all(v._attributes is None for v in servers)
    assert servers[0].attributes.get("http.route", "").startswith("/api/v1/")  # built on demand
