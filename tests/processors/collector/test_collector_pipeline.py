"""The collector's span path: request -> views -> engine, and the receiver span counter."""

from __future__ import annotations

from otlp_builders import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_CODE_ERROR, build_request

from spansignals.processors.collector.pipeline import TracePipeline, count_spans
from spansignals.processors.engine import SignalEngine, SignalSpanProcessor
from spansignals.processors.red import RedSpanProcessor
from spansignals.processors.view import SpanView


class _Recorder(SignalSpanProcessor):
    processor_name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.views: list[SpanView] = []

    def observe(self, view: SpanView) -> None:
        self.views.append(view)


class _Exploding(SignalSpanProcessor):
    processor_name = "exploding"

    def observe(self, view: SpanView) -> None:
        raise RuntimeError("boom")


def test_every_span_reaches_the_engine_with_its_resource() -> None:
    """Each span of each resource becomes one view carrying the resource's service name."""
    recorder = _Recorder()
    pipeline = TracePipeline(SignalEngine([recorder]))
    request = build_request("svc-a", [("a", SPAN_KIND_SERVER, 0), ("b", SPAN_KIND_CLIENT, 2)], resources=3)
    assert pipeline.consume(request, "grpc") == 6 == count_spans(request)
    assert [v.name for v in recorder.views] == ["a", "b"] * 3
    assert {v.service_name for v in recorder.views} == {"svc-a"}
    assert recorder.views[1].kind_name == "SPAN_KIND_CLIENT"
    assert recorder.views[1].status_name == "STATUS_CODE_ERROR"
    assert recorder.views[0].duration_s == 0.03


def test_missing_service_name_is_unknown_service() -> None:
    """A resource without service.name is reported as unknown_service (spanmetrics' rule)."""
    recorder = _Recorder()
    TracePipeline(SignalEngine([recorder])).consume(build_request(None), "http")
    assert recorder.views[0].service_name == "unknown_service"


def test_accepted_spans_are_counted_per_transport() -> None:
    """spansignals.receiver.spans counts accepted spans by transport; refusals separately."""
    pipeline = TracePipeline(SignalEngine([]))
    pipeline.consume(build_request(spans=[("x", SPAN_KIND_SERVER, 0)] * 4), "grpc")
    pipeline.consume(build_request(spans=[("x", SPAN_KIND_SERVER, 0)] * 2), "http")
    pipeline.refuse("http", 7)
    family = pipeline.receiver_spans
    assert family.name == "spansignals.receiver.spans" and family.unit == "{span}"
    assert family.value(("grpc", "accepted")) == 4
    assert family.value(("http", "accepted")) == 2
    assert family.value(("http", "refused")) == 7


def test_a_failing_derivation_does_not_stop_the_others() -> None:
    """A derivation that raises is counted; RED still sees every span and consume() returns."""
    red = RedSpanProcessor()
    engine = SignalEngine([_Exploding(), red])
    pipeline = TracePipeline(engine)
    assert (
        pipeline.consume(build_request("s", [("op", SPAN_KIND_SERVER, STATUS_CODE_ERROR)] * 3), "grpc") == 3
    )
    assert red.calls.value(("s", "op", "SPAN_KIND_SERVER", "STATUS_CODE_ERROR")) == 3
    assert engine.errors.count("exploding") == 3
