"""The native wire check (``processors/_wirecheck.c``) against upb, the parser it stands in for.

Its promise: ``trace_spans(body)`` is a number only when upb parses ``body`` as an
``ExportTraceServiceRequest`` without error, and it is then upb's span count. It may say None
("not sure") for bodies upb takes (it is stricter on purpose: the receivers then parse with
upb), but every valid request an OTLP exporter sends must pass, or the collector would lose its
fast path.
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spansignals.processors.collector import pipeline as pipeline_module
from spansignals.processors.collector import spanscan
from spansignals.processors.collector.decoding import RequestDecodeError
from spansignals.processors.collector.forwarding import TraceForwarding
from spansignals.processors.collector.pipeline import VERIFY_NATIVE_ENV, TracePipeline
from spansignals.processors.collector.queue import QueueFull
from spansignals.processors.engine import SignalEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from collector_throughput import build_template, stamp
from test_spanscan import _RESOURCES, MERGED_OR_ODD, _build, _request_of, _span
from wire_format import length_delimited as _len
from wire_format import tag as _tag

_wirecheck = pytest.importorskip("spansignals.processors._wirecheck")


def _passes(body: Any) -> bool:
    return _wirecheck.trace_spans(body) is not None


def _upb_accepts(body: bytes) -> bool:
    try:
        ExportTraceServiceRequest().ParseFromString(body)
    except DecodeError:
        return False
    return True


def test_the_wire_check_is_built() -> None:
    # pip install builds it; without it every request is parsed by upb first (slower, still right)
    assert spanscan.WIRECHECK


# --- the schema it accepts is the installed one -----------------------------------------------

_VARINT_TYPES = {
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_ENUM,
}
_LEFT_OUT = {  # profile dictionary references: never in traces, and the scanner does not read them
    ("opentelemetry.proto.common.v1.KeyValue", 3),
    ("opentelemetry.proto.common.v1.AnyValue", 8),
}


def _kind(field: Any) -> str:
    if field.type in _VARINT_TYPES:
        return "varint"
    if field.type in (FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_DOUBLE):
        return "fixed64"
    if field.type == FieldDescriptor.TYPE_FIXED32:
        return "fixed32"
    if field.type == FieldDescriptor.TYPE_STRING:
        return "string"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return "bytes"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return f"message:{field.message_type.full_name}"
    return f"unexpected type {field.type}"


def test_its_schema_is_the_installed_trace_schema() -> None:
    """Every field it accepts has the wire type the installed descriptors give, and every field
    of every message reachable from the request is accepted, or left out on purpose (then upb
    parses requests holding it). A proto upgrade that adds a field only narrows the fast path."""
    expected: dict[str, dict[int, str]] = {}
    pending = [ExportTraceServiceRequest.DESCRIPTOR]
    while pending:
        message = pending.pop()
        if message.full_name in expected:
            continue
        expected[message.full_name] = {
            f.number: _kind(f) for f in message.fields if (message.full_name, f.number) not in _LEFT_OUT
        }
        pending.extend(f.message_type for f in message.fields if f.message_type is not None)
    assert _wirecheck.schema() == expected


# --- valid requests pass -----------------------------------------------------------------------


def test_the_benchmark_request_passes_and_is_not_parsed_by_upb() -> None:
    template, offsets = build_template(512)
    body = stamp(template, offsets, 1)
    assert _passes(body)
    pipeline = TracePipeline(SignalEngine([]))
    received = pipeline.receive(body)
    assert received.request is None and received.span_count == 512 == _wirecheck.trace_spans(body)
    assert pipeline.ingest_received(received, "grpc").accepted == 512
    assert received.request is None  # the scanner took it: still no message built
    assert _passes(b"")  # an empty request is a valid one
    assert _passes(bytearray(body)) and _passes(memoryview(body))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_RESOURCES)
def test_every_request_protobuf_writes_passes(resources: list[Any]) -> None:
    request = _build(resources)
    body = request.SerializeToString()
    assert _passes(body)
    assert _wirecheck.trace_spans(body) == sum(
        len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans
    )


def test_every_field_of_the_schema_passes() -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
    rs.resource.dropped_attributes_count = 3
    kv = rs.resource.attributes.add()
    kv.key = "service.name"
    kv.value.string_value = "svc"
    ref = rs.resource.entity_refs.add()
    ref.schema_url, ref.type = "s", "service"
    ref.id_keys.extend(["service.name", "ñ"])
    ref.description_keys.append("d")
    ss = rs.scope_spans.add()
    ss.schema_url = "u"
    ss.scope.name, ss.scope.version, ss.scope.dropped_attributes_count = "lib", "1.0", 1
    ss.scope.attributes.add().key = "k"
    span = ss.spans.add()
    span.trace_id, span.span_id, span.parent_span_id = b"\x01" * 16, b"\x02" * 8, b"\x03" * 8
    span.trace_state, span.name, span.kind, span.flags = "ot=th:8", "op", 3, 0x301
    span.start_time_unix_nano, span.end_time_unix_nano = 10, 20
    span.dropped_attributes_count = span.dropped_events_count = span.dropped_links_count = 1
    value = span.attributes.add()
    value.key = "v"
    value.value.kvlist_value.values.add().value.array_value.values.add().bytes_value = b"\xff"
    for setter in ("bool_value", "int_value", "double_value"):
        attr = span.attributes.add()
        attr.key = setter
        setattr(attr.value, setter, 1)
    event = span.events.add()
    event.time_unix_nano, event.name, event.dropped_attributes_count = 15, "e", 1
    event.attributes.add().key = "k"
    link = span.links.add()
    link.trace_id, link.span_id, link.trace_state, link.flags = b"\x04" * 16, b"\x05" * 8, "t", 1
    link.dropped_attributes_count = 1
    link.attributes.add().key = "k"
    span.status.message, span.status.code = "boom", 2
    assert _passes(request.SerializeToString())


# --- what it leaves to upb ----------------------------------------------------------------------

NOT_SURE = {
    "an unknown field": _span(_len(99, b"abc")),
    "a known field with another wire type": _span(_tag(5, 0) + b"\x01"),
    "a string-index attribute value": _span(_len(9, _len(1, b"k") + _len(2, _tag(8, 0) + b"\x01"))),
    "an overlong varint": _span(_tag(6, 0) + b"\x82\x00"),
    "a ten-byte varint past 64 bits": _span(_tag(6, 0) + b"\xff" * 9 + b"\x7f"),
    "a group": _span(_tag(17, 3) + _tag(17, 4)),
}


@pytest.mark.parametrize("name", sorted(NOT_SURE))
def test_what_it_is_not_sure_of_goes_to_upb(name: str) -> None:
    body = _request_of(NOT_SURE[name])
    assert not _passes(body)
    if _upb_accepts(body):  # the receivers still take it, the way they did before the wire check
        result = TracePipeline(SignalEngine([])).receive(body)
        assert result.request is not None and result.span_count == 1


@pytest.mark.parametrize("name", sorted(MERGED_OR_ODD))
def test_merged_encodings_upb_takes_pass_or_go_to_upb(name: str) -> None:
    body = _request_of(MERGED_OR_ODD[name])
    assert _upb_accepts(body)
    # valid protobuf of known fields passes (a negative int32 is a canonical ten-byte varint);
    # unknown fields are left to upb
    assert _passes(body) == (name != "unknown fields everywhere")


def test_nesting_deeper_than_its_bound_goes_to_upb() -> None:
    value = _len(1, b"leaf")
    for _ in range(40):
        value = _len(5, _len(1, value))  # AnyValue.array_value.values[0]
    body = _request_of(_span(_len(9, _len(1, b"k") + _len(2, value))))
    assert _upb_accepts(body)
    assert not _passes(body)


# --- it never says yes where upb says no --------------------------------------------------------


def _with_text(raw: bytes, where: str) -> bytes:
    """A request whose text field ``where`` holds the bytes ``raw`` (which may not be UTF-8)."""
    if where == "span name":
        return _request_of(_span(name=raw))
    if where == "attribute value":
        return _request_of(_span(_len(9, _len(1, b"k") + _len(2, _len(1, raw)))))
    if where == "attribute key":
        return _request_of(_span(_len(9, _len(1, raw))))
    if where == "status message":
        return _request_of(_span(_len(15, _len(2, raw))))
    if where == "event name":
        return _request_of(_span(_len(11, _len(2, raw))))
    if where == "scope version":
        return _len(1, _len(2, _len(1, _len(2, raw)) + _len(2, _span())))
    return _len(1, _len(3, raw))  # ResourceSpans.schema_url


_WHERE = [
    "span name",
    "attribute value",
    "attribute key",
    "status message",
    "event name",
    "scope version",
    "schema url",
]
_UTF8_EDGES = [
    b"\xc0\xaf",  # overlong
    b"\xe0\x80\xaf",  # overlong
    b"\xed\xa0\x80",  # a surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\x80",
    b"abc\xe2\x82",  # cut short
    "é€𝄞".encode(),
    b"plain ascii, longer than eight bytes",
    "ascii then ünïcode after eight bytes".encode(),
]


@pytest.mark.parametrize("where", _WHERE)
@pytest.mark.parametrize("raw", _UTF8_EDGES)
def test_text_is_checked_as_upb_checks_it(where: str, raw: bytes) -> None:
    body = _with_text(raw, where)
    assert _passes(body) == _upb_accepts(body)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=24), st.sampled_from(_WHERE))
def test_arbitrary_text_bytes_are_judged_as_upb_judges_them(raw: bytes, where: str) -> None:
    body = _with_text(raw, where)
    assert _passes(body) == _upb_accepts(body)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_pass_only_when_upb_takes_them(data: bytes) -> None:
    if _passes(data):
        assert _upb_accepts(data)


def test_mutated_requests_pass_only_when_upb_takes_them() -> None:
    template, offsets = build_template(24)
    base = stamp(template, offsets, 3)
    rng = random.Random(11)
    passed = refused = 0
    for _ in range(3000):
        body = bytearray(base)
        edit = rng.randrange(4)
        if edit == 0:  # bytes replaced
            for _ in range(rng.randint(1, 3)):
                body[rng.randrange(len(body))] = rng.randrange(256)
        elif edit == 1:  # cut short
            del body[rng.randrange(len(body)) :]
        elif edit == 2:  # bytes inserted
            at = rng.randrange(len(body))
            body[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
        else:  # bytes removed
            at = rng.randrange(len(body))
            del body[at : at + rng.randint(1, 3)]
        data = bytes(body)
        if _passes(data):
            passed += 1
            parsed = ExportTraceServiceRequest()
            parsed.ParseFromString(data)  # raises if upb refuses what the check took
            spans = sum(len(ss.spans) for rs in parsed.resource_spans for ss in rs.scope_spans)
            assert _wirecheck.trace_spans(data) == spans, data.hex()
        else:
            refused += 1
    assert passed > 100 and refused > 1000  # both answers exercised


# --- the pipeline's cross-check --------------------------------------------------------------


def test_verify_mode_parses_with_upb_too_and_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VERIFY_NATIVE_ENV, "1")
    pipeline = TracePipeline(SignalEngine([]))
    template, offsets = build_template(64)
    received = pipeline.receive(stamp(template, offsets, 2))
    assert received.request is not None and received.span_count == 64
    assert pipeline.ingest_received(received, "grpc").accepted == 64
    assert pipeline.engine.errors.count("collector.wirecheck") == 0


class _FullForwarder:
    """Only what TraceForwarding asks a forwarder before queueing: whether there is room."""

    workers: tuple[Any, ...] = ()

    def has_room(self, spans: int, nbytes: int) -> bool:
        return False


def test_a_request_refused_for_queue_room_is_only_wire_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under overload a refused request costs the wire check, not the scan or upb's parse: the
    span count the queue's room is judged by comes from the check."""
    pipeline = TracePipeline(SignalEngine([]))
    forwarding = TraceForwarding(pipeline, _FullForwarder())  # type: ignore[arg-type]
    built = []
    monkeypatch.setattr(pipeline, "_scan", lambda *args: built.append("views"))
    monkeypatch.setattr(pipeline_module, "parse_protobuf_request", lambda body: built.append("message"))
    template, offsets = build_template(32)
    received = forwarding.receive(stamp(template, offsets, 5))
    with pytest.raises(QueueFull):
        forwarding.ingest_received(received, "grpc")
    assert built == []
    assert pipeline.receiver_spans.value(("grpc", "refused")) == 32


def test_a_body_upb_refuses_is_refused() -> None:
    with pytest.raises(RequestDecodeError):
        TracePipeline(SignalEngine([])).receive(b"\x0a\x05abc")


def test_the_wire_check_takes_only_bytes_like_objects() -> None:
    with pytest.raises(TypeError):
        _passes("text")
    assert _passes(struct.pack("<B", 0)) is False  # field number 0
