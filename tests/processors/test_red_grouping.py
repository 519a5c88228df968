"""RED's batch update in C (``_native.bucket_durations`` + ``HistogramFamily.record_bucketed``)
against its Python reference (``red._group_in_python`` + ``HistogramFamily.record_many``)."""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spansignals.processors import _native, red
from spansignals.processors.families import HistogramFamily
from spansignals.processors.red import DEFAULT_BUCKETS_S, RedSpanProcessor, _group_in_python
from spansignals.processors.view import SpanView

_INTS = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2**63, 2**64 - 1]),
    # durations exactly on a default bound (2_000_000 ns / 1e9 == 0.002), and one ns either side
    st.sampled_from([round(b * 1e9) + d for b in DEFAULT_BUCKETS_S for d in (-1, 0, 1)]),
)
_NAMES = st.sampled_from(["GET /a", "GET /b", "", "é", "x" * 300])
_VIEWS = st.builds(
    lambda name, kind, status, start, end, service, weight: SpanView(
        name, kind, start, end, status, {}, {}, service_name=service, weight=weight
    ),
    _NAMES,
    st.sampled_from([0, 1, 2, 3, 99, -1]),
    st.sampled_from([0, 1, 2, 5]),
    _INTS,
    _INTS,
    st.sampled_from(["svc", "other"]),
    st.one_of(st.just(1.0), st.just(1), st.just(True), st.floats(allow_nan=True), st.just(2)),
)
# bucket_durations mimics bisect_left step by step, so any floats do (the family's are increasing)
_BOUNDS = st.one_of(
    st.just(DEFAULT_BUCKETS_S),
    st.just(()),
    st.lists(st.floats(allow_nan=True), max_size=20).map(tuple),
    st.lists(st.floats(min_value=0, max_value=2e10), max_size=40).map(lambda b: tuple(sorted(set(b)))),
)


def _exact(x: float) -> str:
    """A float as its bits: ``==`` would take 0.0 for -0.0 and never NaN for NaN."""
    return x.hex()


def _reference(views: list[SpanView], bounds: tuple[float, ...]) -> Any:
    """What record_many adds to each series, from the Python grouping: (counts, n, sum, min, max)."""
    groups, weighted = _group_in_python(views)
    bucketed = {}
    for key, values in groups.items():
        counts: dict[int, int] = {}
        for v in values:
            counts[bisect_left(bounds, v)] = counts.get(bisect_left(bounds, v), 0) + 1
        bucketed[key] = (counts, len(values), _exact(sum(values)), _exact(min(values)), _exact(max(values)))
    return bucketed, [id(v) for v in weighted]


def _native_result(views: list[SpanView], bounds: tuple[float, ...]) -> Any:
    result = _native.bucket_durations(views, SpanView, bounds)
    assert result is not None
    groups, weighted = result
    bucketed = {
        key: (counts, n, _exact(total), _exact(low), _exact(high))
        for key, (counts, n, total, low, high) in groups.items()
    }
    return bucketed, [id(v) for v in weighted]


@settings(max_examples=400, deadline=None)
@given(st.lists(_VIEWS, max_size=60), _BOUNDS)
def test_native_bucketing_equals_the_python_reference(
    views: list[SpanView], bounds: tuple[float, ...]
) -> None:
    """Per group: the same buckets, count, and bit-identical sum, min and max; the same weighted views."""
    native = _native_result(views, bounds)
    assert native == _reference(views, bounds)
    assert list(native[0]) == list(_reference(views, bounds)[0])  # first-seen order: series made in it


def test_sums_keep_the_order_of_the_spans() -> None:
    """Values whose float sum depends on their order: summed left to right, as sum() does."""
    elapsed = [123_456_789, 987_654_321, 1, 3_000_000_007, 7, 555_555_555] * 50
    views = [SpanView("op", 2, 0, e, 0, {}, {}, service_name="s") for e in elapsed]
    native = _native_result(views, DEFAULT_BUCKETS_S)
    assert native == _reference(views, DEFAULT_BUCKETS_S)
    for reordered in (sorted(e / 1e9 for e in elapsed), [e / 1e9 for e in reversed(elapsed)]):
        assert _exact(sum(reordered)) != native[0][("s", "op", 2, 0)][2]  # so the order is tested


def test_views_it_cannot_read_go_to_the_python_loop() -> None:
    """A view that is not a SpanView, or with an unset slot, gives None."""
    plain = SpanView("op", 2, 0, 10, 0, {}, {})
    unset = SpanView.__new__(SpanView)  # no slot set
    assert _native.bucket_durations([plain, object()], SpanView, DEFAULT_BUCKETS_S) is None
    assert _native.bucket_durations([plain, unset], SpanView, DEFAULT_BUCKETS_S) is None


def _state(family: HistogramFamily) -> list[Any]:
    """Every series in the family's order, floats as bits."""
    weighted = dict(family.weighted_counts())
    return [
        (labels, counts, count, _exact(total), _exact(low), _exact(high), _exact(weighted[labels]))
        for labels, (counts, count, total, low, high) in family.snapshot()
    ]


def _observed(monkeypatch: Any, native: bool, batches: list[list[SpanView]], **kwargs: Any) -> list[Any]:
    monkeypatch.setattr(red, "_bucket_durations", _native.bucket_durations if native else None)
    processor = RedSpanProcessor(**kwargs)
    for views in batches:
        processor.observe_batch(views)
    # errors too (a weight of inf fails record(), on either path: never a grouping error)
    return [*_state(processor.duration), ("errors", processor.errors.count("red"))]


_BATCHES = st.lists(st.lists(_VIEWS, max_size=40), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(_BATCHES, st.sampled_from([1, 2, 3, 2000]))
def test_series_state_equals_the_python_path(batches: list[list[SpanView]], max_series: int) -> None:
    """Batches after batches into one family: every series equal, down to the bits of its sum."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        native = _observed(monkeypatch, True, batches, max_series=max_series)
        python = _observed(monkeypatch, False, batches, max_series=max_series)
    assert native == python


def test_hand_made_batch_on_bounds_cap_and_overflow(monkeypatch: Any) -> None:
    """Durations on every bound and either side of it, zero, negative and huge ones, long names
    cut to 256 characters, and more series than the cap: the same state, overflow series included."""
    views = []
    for i, bound in enumerate(DEFAULT_BUCKETS_S):
        on = round(bound * 1e9)
        assert on / 1e9 == bound  # exactly on the bound: the bucket whose upper bound it is
        for d in (-1, 0, 1):
            views.append(SpanView(f"b{i % 5}", 2, 1_000, 1_000 + on + d, 0, {}, {}, service_name="s"))
    views += [
        SpanView("zero", 1, 5, 5, 0, {}, {}, service_name="s"),
        SpanView("negative", 1, 10, 5, 2, {}, {}, service_name="s"),
        SpanView("huge", 3, 0, 2**64 - 1, 1, {}, {}, service_name="s"),
        SpanView("huge", 3, -(2**70), 2**70, 1, {}, {}, service_name="s"),
        SpanView("n" * 300, 2, 0, 7, 0, {}, {}, service_name="s" * 300),
        SpanView("n" * 300 + "tail", 2, 0, 9, 0, {}, {}, service_name="s" * 300),  # cut: the same series
        SpanView("weighted", 2, 0, 9, 0, {}, {}, service_name="s", weight=3.0),
    ]
    views += [SpanView(f"many{i}", 2, 0, 1_000 * i, 0, {}, {}, service_name="s") for i in range(60)]
    batches = [views, views[::-1], views[5:40]]
    for max_series in (10, 2000):
        native = _observed(monkeypatch, True, batches, max_series=max_series)
        assert native == _observed(monkeypatch, False, batches, max_series=max_series)
    overflow = [s for s in _observed(monkeypatch, True, batches, max_series=10) if s[0] == ("\x00overflow",)]
    assert overflow and overflow[0][2] > 0  # the cap was reached and the overflow series counted
    huge = [s for s in native if s[0][1] == "huge"]
    assert huge and not math.isinf(float.fromhex(huge[0][3]))


def test_record_bucketed_ignores_empty_groups() -> None:
    """n == 0 (a group whose values were all NaN) makes no series, as record_many of only NaN."""
    family = HistogramFamily("h", "", "s", ("a",), DEFAULT_BUCKETS_S)
    family.record_bucketed(("x",), ({}, 0, 0.0, math.inf, -math.inf))
    family.record_many(("y",), [math.nan])
    assert family.series_count() == 0
