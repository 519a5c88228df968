"""Tests of deferred derivation: the span path only enqueues, reads see every span."""

from __future__ import annotations

import threading

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from spansignals.processors import (
    EngineSpanProcessor,
    RedSpanProcessor,
    SignalEngine,
    SignalMetricProducer,
    SignalSpanProcessor,
    SpanView,
)
from spansignals.processors.deferred import DeferredSpans
from spansignals.processors.producer import attach_to_meter_provider
from spansignals.processors.view import KIND_CLIENT


class Recorder(SignalSpanProcessor):
    """Remembers the thread and kind of every span it sees."""

    processor_name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def observe(self, view: SpanView) -> None:
        self.seen.append((view.kind_name, threading.current_thread().name))


def _tracer(processor: EngineSpanProcessor):
    tp = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    tp.add_span_processor(processor)
    return tp, tp.get_tracer("t")


def test_span_path_only_enqueues_and_collection_sees_every_span():
    """Deferred: nothing is derived at span end, yet a collection reports every ended span."""
    red = RedSpanProcessor()
    engine = SignalEngine([red])
    processor = EngineSpanProcessor(engine, deferred=True, interval=3600, wake_at=10_000, max_pending=20_000)
    reader = InMemoryMetricReader()
    producer = SignalMetricProducer()
    producer.register(*engine.metric_families())
    producer.add_before_produce(engine.flush)
    attach_to_meter_provider(MeterProvider(metric_readers=[reader]), producer)
    _, tracer = _tracer(processor)
    for _ in range(100):
        tracer.start_span("op").end()
    assert processor.deferred is not None and processor.deferred.pending == 100
    assert red.calls.snapshot() == []
    data = reader.get_metrics_data()
    calls = [
        p.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "traces.span.metrics.calls"
        for p in m.data.data_points
    ]
    assert calls == [100] and processor.deferred.pending == 0


def test_sync_kinds_run_on_the_span_path_and_others_later():
    """A derivation with sync_kinds sees client spans inside span.end(); others see them later, once."""
    fresh, later = Recorder(), Recorder()
    fresh.require_sync({KIND_CLIENT})
    engine = SignalEngine([fresh, later])
    processor = EngineSpanProcessor(engine, deferred=True, interval=3600)
    _, tracer = _tracer(processor)
    tracer.start_span("c", kind=SpanKind.CLIENT).end()
    tracer.start_span("s", kind=SpanKind.SERVER).end()
    me = threading.current_thread().name
    assert fresh.seen == [("SPAN_KIND_CLIENT", me)] and later.seen == []
    engine.flush()
    assert sorted(fresh.seen) == [("SPAN_KIND_CLIENT", me), ("SPAN_KIND_SERVER", me)]
    assert sorted(later.seen) == [("SPAN_KIND_CLIENT", me), ("SPAN_KIND_SERVER", me)]


def test_worker_derives_in_the_background():
    """The worker thread drains the queue without any reader asking."""
    rec = Recorder()
    processor = EngineSpanProcessor(SignalEngine([rec]), deferred=True, interval=0.01, wake_at=1)
    _, tracer = _tracer(processor)
    tracer.start_span("op").end()
    done = threading.Event()
    for _ in range(500):
        if rec.seen:
            done.set()
            break
        done.wait(0.01)
    assert rec.seen and rec.seen[0][1] == "spansignals-derive"
    processor.shutdown()


def test_full_queue_derives_on_the_span_path_instead_of_dropping():
    """With the worker starved, reaching max_pending derives synchronously: nothing is lost."""
    red = RedSpanProcessor()
    processor = EngineSpanProcessor(
        SignalEngine([red]), deferred=True, interval=3600, wake_at=5, max_pending=5
    )
    _, tracer = _tracer(processor)
    for _ in range(12):
        tracer.start_span("op").end()
    assert processor.deferred is not None and processor.deferred.sync_fallbacks >= 2
    processor.force_flush()
    assert sum(v for _, v in red.calls.snapshot()) == 12


def test_exact_totals_with_many_threads_and_concurrent_flushes():
    """Spans ended on 8 threads while another thread flushes are all counted exactly once."""
    red = RedSpanProcessor()
    engine = SignalEngine([red])
    processor = EngineSpanProcessor(engine, deferred=True, interval=0.005, wake_at=64)
    _, tracer = _tracer(processor)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            engine.flush()

    def work() -> None:
        for _ in range(2000):
            tracer.start_span("op").end()

    f = threading.Thread(target=flusher)
    f.start()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    f.join()
    processor.shutdown()
    assert sum(v for _, v in red.calls.snapshot()) == 16000


def test_consume_errors_are_counted_not_raised():
    """A derivation raising in the worker is counted like on the span path."""

    class Boom(SignalSpanProcessor):
        processor_name = "boom"

        def observe(self, view: SpanView) -> None:
            raise ValueError("x")

    engine = SignalEngine([Boom()])
    processor = EngineSpanProcessor(engine, deferred=True, interval=3600)
    _, tracer = _tracer(processor)
    tracer.start_span("op").end()
    engine.flush()
    assert engine.errors.count("boom") == 1


def test_deferred_queue_rejects_inconsistent_bounds():
    """wake_at must not exceed max_pending."""
    try:
        DeferredSpans(lambda batch: None, wake_at=10, max_pending=5)
    except ValueError:
        pass
    else:
        raise AssertionError("expected ValueError")


def test_require_sync_switches_a_running_front_door_in_order():
    """Before require_sync client spans wait in the queue; the switch derives them first, then inline."""
    rec = Recorder()
    engine = SignalEngine([rec])
    processor = EngineSpanProcessor(engine, deferred=True, interval=3600)
    _, tracer = _tracer(processor)
    tracer.start_span("early", kind=SpanKind.CLIENT).end()
    assert rec.seen == []
    rec.require_sync({KIND_CLIENT})
    assert len(rec.seen) == 1  # the queued span, derived at the switch
    tracer.start_span("late", kind=SpanKind.CLIENT).end()
    assert len(rec.seen) == 2  # inline now
    engine.flush()
    assert len(rec.seen) == 2  # and not a second time


def test_guard_makes_the_rate_limit_derivation_inline():
    """guard() asks the rate-limit derivation for client spans on the span path; before, none."""
    import httpx

    from spansignals.processors.ratelimit import RateLimitSpanProcessor
    from spansignals.sdk import guard

    proc = RateLimitSpanProcessor()
    assert proc.sync_kinds == frozenset()
    guard(httpx.Client(), processor=proc).close()
    assert proc.sync_kinds == frozenset({KIND_CLIENT})
