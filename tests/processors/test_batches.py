"""Batch derivation (``observe_batch`` / ``SignalEngine.process_batch``) gives exactly what span
by span derivation gives, and a failure on one span loses only that span."""

from __future__ import annotations

import math
import random

from spansignals.processors import RedSpanProcessor, SignalEngine, SignalSpanProcessor, SpanView
from spansignals.processors.families import HistogramFamily
from spansignals.processors.red import Dimension
from spansignals.processors.view import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, STATUS_UNSET


def _views(n: int, seed: int = 7) -> list[SpanView]:
    rng = random.Random(seed)
    views = []
    for i in range(n):
        start = 1_700_000_000_000_000_000 + i * 1000
        duration = rng.choice([0, -5, 1_000, 2_000_000, 3_000_000_000, 40_000_000_000])
        views.append(
            SpanView(
                rng.choice(["GET /a", "GET /b", "x" * 300]),
                rng.choice([KIND_SERVER, KIND_CLIENT, 9]),
                start,
                start + duration,
                rng.choice([STATUS_UNSET, STATUS_ERROR, 7]),
                {"route": rng.choice(["r1", "r2"])},
                {"service.name": rng.choice(["s1", "s2"])},
                weight=rng.choice([1.0, 1.0, 1.0, 4.0, 2.5]),
            )
        )
    return views


def _state(red: RedSpanProcessor) -> tuple[object, object]:
    return sorted(red.duration.snapshot(), key=repr), sorted(red.calls.snapshot(), key=repr)


def _derive(views: list[SpanView], max_series: int) -> tuple[RedSpanProcessor, RedSpanProcessor]:
    one = RedSpanProcessor(max_series=max_series)
    for view in views:
        one.observe(view)
    batched = RedSpanProcessor(max_series=max_series)
    for start in range(0, len(views), 128):
        batched.observe_batch(views[start : start + 128])
    return one, batched


def test_red_batch_equals_span_by_span_including_weights_and_cut_labels():
    one, batched = _derive(_views(600), 2000)
    a, b = _state(one), _state(batched)
    assert a[1] == b[1]  # calls (weighted counts) exactly equal
    for (la, (ca, na, sa, mina, maxa)), (lb, (cb, nb, sb, minb, maxb)) in zip(a[0], b[0], strict=True):
        assert (la, ca, na, mina, maxa) == (lb, cb, nb, minb, maxb)
        assert math.isclose(sa, sb, rel_tol=1e-12)


def test_red_batch_at_the_cap_conserves_totals():
    """Which label sets get the capped slots depends on arrival order within a batch (grouped
    spans first); the totals and the number of series do not."""
    one, batched = _derive(_views(600), 5)
    for family in ("calls", "duration"):
        a, b = getattr(one, family).snapshot(), getattr(batched, family).snapshot()
        assert len(a) == len(b) == 6  # 5 + overflow
    assert sum(v for _, v in one.calls.snapshot()) == sum(v for _, v in batched.calls.snapshot())
    count = lambda red: sum(s[1] for _, s in red.duration.snapshot())  # noqa: E731
    assert count(one) == count(batched)


def test_red_batch_with_dimensions_equals_span_by_span():
    views = _views(200)
    one = RedSpanProcessor(dimensions=[Dimension("route")])
    for view in views:
        one.observe(view)
    batched = RedSpanProcessor(dimensions=[Dimension("route")])
    batched.observe_batch(views)
    assert _state(one) == _state(batched)


def test_histogram_record_many_equals_repeated_record_and_ignores_nan():
    bounds = (0.01, 0.1, 1.0)
    one = HistogramFamily("h", "", "s", ("k",), bounds)
    many = HistogramFamily("h", "", "s", ("k",), bounds)
    values = [0.0, 0.01, 0.0100001, 0.5, 1.0, 7.0, float("nan")]
    for v in values:
        one.record(("a",), v)
    many.record_many(("a",), values)
    many.record_many(("a",), [float("nan")])  # only NaN: nothing recorded, no empty series
    many.record_many(("b",), [])
    assert one.snapshot() == many.snapshot()
    assert one.weighted_counts() == many.weighted_counts() == [(("a",), 6)]


class FailsOnMarkedSpans(SignalSpanProcessor):
    processor_name = "picky"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def observe(self, view: SpanView) -> None:
        if view.name.startswith("bad"):
            raise ValueError("cannot derive this one")
        self.seen.append(view.name)


class BrokenBatch(SignalSpanProcessor):
    processor_name = "broken_batch"

    def observe_batch(self, views: object) -> None:
        raise RuntimeError("an override that breaks the promise")


def _named(*names: str) -> list[SpanView]:
    return [SpanView(n, KIND_SERVER, 1, 2, STATUS_UNSET, {}, {}) for n in names]


def test_a_failing_span_is_counted_and_the_rest_of_the_batch_is_still_derived():
    picky, red = FailsOnMarkedSpans(), RedSpanProcessor()
    engine = SignalEngine([picky, BrokenBatch(), red])
    engine.process_batch(_named("a", "bad1", "b", "bad2", "c"))
    assert picky.seen == ["a", "b", "c"]
    assert engine.errors.count("picky") == 2
    assert engine.errors.count("broken_batch") == 1
    # a derivation after the broken one still ran
    assert sum(v for _, v in red.calls.snapshot()) == 5


def test_process_batch_can_run_a_subset_of_derivations():
    picky, other = FailsOnMarkedSpans(), FailsOnMarkedSpans()
    engine = SignalEngine([picky, other])
    engine.process_batch(_named("a", "b"), [other])
    assert picky.seen == [] and other.seen == ["a", "b"]


def test_deferred_queue_keeps_span_order_across_runs_of_views_and_spans():
    """With a sync derivation the queue holds views (already seen by it) and plain spans; the
    other derivations get them in batches that keep the order spans ended in."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind

    from spansignals.processors import EngineSpanProcessor

    sync, later = FailsOnMarkedSpans(), FailsOnMarkedSpans()
    sync.require_sync({KIND_CLIENT})
    engine = SignalEngine([sync, later])
    front = EngineSpanProcessor(engine, deferred=True, interval=3600)
    provider = TracerProvider()
    provider.add_span_processor(front)
    tracer = provider.get_tracer("t")
    client, server = SpanKind.CLIENT, SpanKind.SERVER
    order = [("c1", client), ("s1", server), ("s2", server), ("c2", client)]
    order += [("bad", server), ("c3", client), ("s3", server)]
    for name, kind in order:
        tracer.start_span(name, kind=kind).end()
    assert sync.seen == ["c1", "c2", "c3"]  # on the span path
    engine.flush()
    expected = [name for name, _ in order if name != "bad"]
    assert later.seen == expected
    assert sync.seen == ["c1", "c2", "c3", "s1", "s2", "s3"]
    assert engine.errors.count("picky") == 2  # "bad" failed once in each derivation
    provider.shutdown()


def test_observed_kinds_leave_other_spans_out_of_a_batch():
    class ClientsOnly(FailsOnMarkedSpans):
        observed_kinds = frozenset({KIND_CLIENT})

    clients = ClientsOnly()
    views = [*_named("s1", "s2"), SpanView("c1", KIND_CLIENT, 1, 2, STATUS_UNSET, {}, {})]
    clients.observe_batch(views)
    assert clients.seen == ["c1"]
