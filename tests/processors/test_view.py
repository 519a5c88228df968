"""Tests of the span view and its two adapters."""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from spansignals.processors.view import (
    OtlpAttributes,
    SpanView,
    _sampling_weight,
    view_from_otlp_span,
    view_from_readable_span,
)


def _finished_sdk_span(kind: SpanKind = SpanKind.CLIENT, error: bool = False):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc-a"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("GET", kind=kind, attributes={"a": 1, "b": "x"}) as s:
        if error:
            s.set_status(StatusCode.ERROR)
    return exporter.get_finished_spans()[0]


def test_sdk_adapter_maps_kind_and_status_to_otlp_numbering():
    """An SDK CLIENT span with ERROR status reads as SPAN_KIND_CLIENT / STATUS_CODE_ERROR."""
    view = view_from_readable_span(_finished_sdk_span(SpanKind.CLIENT, error=True))
    assert view.kind_name == "SPAN_KIND_CLIENT"
    assert view.status_name == "STATUS_CODE_ERROR"
    assert view.service_name == "svc-a"
    assert view.attributes["a"] == 1 and view.attributes.get("b") == "x"
    assert view.duration_s >= 0


def test_sdk_adapter_server_and_internal_kinds():
    """SERVER and INTERNAL keep their OTLP names."""
    assert view_from_readable_span(_finished_sdk_span(SpanKind.SERVER)).kind_name == "SPAN_KIND_SERVER"
    assert view_from_readable_span(_finished_sdk_span(SpanKind.INTERNAL)).kind_name == "SPAN_KIND_INTERNAL"


def _kv(key: str, **value) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def test_otlp_adapter_reads_attributes_lazily_and_converts_values():
    """OTLP AnyValues become Python values; arrays become tuples; absent keys give the default."""
    span = Span(
        name="chat",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_000_000_000,
        end_time_unix_nano=1_250_000_000,
        status=Status(code=Status.STATUS_CODE_ERROR),
        attributes=[
            _kv("s", string_value="v"),
            _kv("i", int_value=7),
            _kv("d", double_value=0.5),
            _kv("b", bool_value=True),
            _kv("arr", array_value=ArrayValue(values=[AnyValue(string_value="x"), AnyValue(int_value=2)])),
        ],
    )
    resource = OtlpAttributes([_kv("service.name", string_value="svc")])
    view = view_from_otlp_span(span, resource, "svc")
    assert view.kind_name == "SPAN_KIND_CLIENT" and view.status_name == "STATUS_CODE_ERROR"
    assert view.duration_s == 0.25
    assert view.attributes.get("s") == "v" and view.attributes["i"] == 7
    assert view.attributes.get("d") == 0.5 and view.attributes.get("b") is True
    assert view.attributes.get("arr") == ("x", 2)
    assert view.attributes.get("missing", "dflt") == "dflt"
    assert "s" in view.attributes and "missing" not in view.attributes
    assert sorted(view.attributes) == ["arr", "b", "d", "i", "s"]
    assert view.weight == 1.0


def test_out_of_range_enums_and_backwards_clock_are_tolerated():
    """Unknown kind/status values and end < start never raise."""
    view = SpanView("x", 42, 10, 5, 9, {}, {})
    assert view.kind_name == "SPAN_KIND_UNSPECIFIED"
    assert view.status_name == "STATUS_CODE_UNSET"
    assert view.duration_s == 0.0
    assert view.service_name == "unknown_service"


def test_sampling_threshold_gives_adjusted_count():
    """ot=th:8 keeps 1/2 of spans (weight 2); th:c keeps 1/4 (weight 4); garbage gives 1."""
    assert _sampling_weight("ot=th:8") == 2.0
    assert _sampling_weight("vendor=1,ot=rv:abc;th:c") == 4.0
    assert _sampling_weight("ot=th:0") == 1.0
    assert _sampling_weight("ot=th:zz") == 1.0
    assert _sampling_weight("other=th:8") == 1.0


def test_sdk_adapter_reads_the_attribute_dict_without_copying():
    """Pins the SDK internal the adapter uses: BoundedAttributes keeps a plain dict in _dict."""
    span = _finished_sdk_span()
    view = view_from_readable_span(span)
    assert type(view.attributes) is dict
    assert view.attributes is span._attributes._dict
    assert dict(view.attributes) == dict(span.attributes)
    assert view.resource.get("service.name") == "svc-a"


def test_otlp_attributes_might_contain_rules_keys_out_from_the_span_encoding():
    """might_contain is False only when no key holds the fragment; True when unsure (no message)."""
    span = Span(name="GET /", attributes=[_kv("http.route", string_value="/"), _kv("n", int_value=1)])
    attrs = OtlpAttributes(span.attributes, span)
    assert attrs.might_contain(b"usage.") is False
    assert attrs.might_contain(b"http.route") is True
    assert attrs.get("n") == 1  # reading still works after the encoding check
    assert OtlpAttributes(span.attributes).might_contain(b"usage.") is True
    with_usage = Span(name="chat", attributes=[_kv("gen_ai.usage.input_tokens", int_value=3)])
    assert OtlpAttributes(with_usage.attributes, with_usage).might_contain(b"usage.") is True


def test_any_value_arrays_convert_the_same_when_cached_and_kvlists_stay_fresh():
    """Arrays of scalars convert to equal tuples on every read; arrays holding kvlists give new dicts."""
    from opentelemetry.proto.common.v1.common_pb2 import KeyValueList

    from spansignals.processors.view import any_value_to_python

    headers = AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="100"), AnyValue(int_value=2)]))
    assert any_value_to_python(headers) == ("100", 2)
    assert any_value_to_python(headers) == ("100", 2)
    other = AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="99")]))
    assert any_value_to_python(other) == ("99",)
    nested = AnyValue(
        array_value=ArrayValue(values=[AnyValue(kvlist_value=KeyValueList(values=[_kv("k", int_value=1)]))])
    )
    first = any_value_to_python(nested)
    first[0]["k"] = 2
    assert any_value_to_python(nested) == ({"k": 1},)
