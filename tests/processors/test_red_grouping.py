"""RED's batch grouping in C (``_native.group_durations``) against its Python reference."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spansignals.processors import _native, red
from spansignals.processors.red import RedSpanProcessor, _group_in_python
from spansignals.processors.view import SpanView

_INTS = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2**63, 2**64 - 1]),
)
_VIEWS = st.builds(
    lambda name, kind, status, start, end, service, weight: SpanView(
        name, kind, start, end, status, {}, {}, service_name=service, weight=weight
    ),
    st.sampled_from(["GET /a", "GET /b", "", "é"]),
    st.sampled_from([0, 1, 2, 3, 99, -1]),
    st.sampled_from([0, 1, 2, 5]),
    _INTS,
    _INTS,
    st.sampled_from(["svc", "other"]),
    st.one_of(st.just(1.0), st.just(1), st.just(True), st.floats(allow_nan=True), st.just(2)),
)


def _comparable(grouped: Any) -> Any:
    groups, weighted = grouped  # durations are never NaN: plain float equality is exact here
    return groups, [id(v) for v in weighted]


@settings(max_examples=300, deadline=None)
@given(st.lists(_VIEWS, max_size=40))
def test_native_grouping_equals_the_python_reference(views: list[SpanView]) -> None:
    native = _native.group_durations(views, SpanView)
    assert native is not None
    assert _comparable(native) == _comparable(_group_in_python(views))


def test_views_it_cannot_read_go_to_the_python_loop() -> None:
    plain = SpanView("op", 2, 0, 10, 0, {}, {})
    unset = SpanView.__new__(SpanView)  # no slot set
    assert _native.group_durations([plain, object()], SpanView) is None
    assert _native.group_durations([plain, unset], SpanView) is None


def test_red_counts_the_same_with_and_without_the_native_grouping(monkeypatch: Any) -> None:
    views = [
        SpanView(f"op{i % 3}", i % 4, 1_000, 1_000 + i * 7_000_000, i % 3, {}, {}, service_name="s", weight=w)
        for i, w in enumerate([1.0, 1.0, 2.0, 1, 1.0, 4.0, 1.0] * 5)
    ]

    def collected(grouping: Any) -> list[Any]:
        monkeypatch.setattr(red, "_group_durations", grouping)
        processor = RedSpanProcessor()
        processor.observe_batch(views)
        return sorted(processor.duration.snapshot() + processor.calls.snapshot(), key=repr)

    assert collected(_native.group_durations) == collected(None)
