"""A derivation that raises never breaks span.end(); the failure is counted and exported."""

from __future__ import annotations

import logging

import pytest
from sdk_fixtures import Providers

from spansignals.processors.engine import EngineSpanProcessor, SignalEngine, SignalSpanProcessor
from spansignals.processors.producer import SignalMetricProducer, attach_producer
from spansignals.processors.red import RedSpanProcessor
from spansignals.processors.view import SpanView


class Exploding(SignalSpanProcessor):
    """A derivation with a bug."""

    processor_name = "exploding"

    def observe(self, view: SpanView) -> None:
        raise ZeroDivisionError("bug in a derivation")


def test_raising_processor_never_breaks_span_end(
    providers: Providers, caplog: pytest.LogCaptureFixture
) -> None:
    """span.end() returns normally, other derivations still run, and each failure is counted once."""
    red = RedSpanProcessor()
    engine = SignalEngine([Exploding(), red])
    producer = SignalMetricProducer()
    producer.register(*engine.metric_families())
    attach_producer(providers.reader, producer)
    providers.tracer_provider.add_span_processor(EngineSpanProcessor(engine))
    tracer = providers.tracer_provider.get_tracer("test")
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            tracer.start_span("work").end()
    assert len(providers.spans()) == 3
    assert engine.errors.count("exploding") == 3
    assert providers.red_calls(span_name="work") == 3
    points = providers.metric_points("spansignals.processor.errors")
    assert [(a, p.value) for a, p in points] == [({"processor": "exploding"}, 3)]
    assert caplog.text.count("processor exploding failed") == 1
