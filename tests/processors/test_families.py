"""Tests of pre-aggregated metric families: exact totals, caps and overflow."""

from __future__ import annotations

import threading

import pytest

from spansignals.processors.families import (
    OVERFLOW_ATTRIBUTES,
    CounterFamily,
    GaugeFamily,
    HistogramFamily,
)


def test_counter_overflow_conserves_totals():
    """Past max_series, new label sets fold into one overflow series and the sum is conserved."""
    c = CounterFamily("c", "", "1", ("k",), max_series=3)
    for i in range(10):
        c.add((str(i),), 1)
    snap = dict(c.snapshot())
    assert len(snap) == 4  # 3 real + overflow
    assert sum(snap.values()) == 10
    overflow = [labels for labels in snap if c.attributes(labels) == OVERFLOW_ATTRIBUTES]
    assert len(overflow) == 1 and snap[overflow[0]] == 7
    c.add(("0",), 5)  # existing series keep counting
    assert dict(c.snapshot())[("0",)] == 6


def test_counter_ignores_negative_and_nan():
    """A monotonic counter never goes down and NaN never poisons it."""
    c = CounterFamily("c", "", "1", ("k",))
    c.add(("a",), 2)
    c.add(("a",), -1)
    c.add(("a",), float("nan"))
    assert c.value(("a",)) == 2


def test_counter_exact_under_threads():
    """Concurrent adds from many threads lose nothing."""
    c = CounterFamily("c", "", "1", ("k",))

    def work():
        for _ in range(5000):
            c.add(("x",), 1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.value(("x",)) == 40000


def test_histogram_buckets_are_upper_inclusive():
    """A value equal to a bound lands in that bound's bucket (Prometheus le semantics)."""
    h = HistogramFamily("h", "", "s", ("k",), [0.1, 1.0])
    for v in (0.05, 0.1, 0.5, 1.0, 3.0):
        h.record(("a",), v)
    [(_, (counts, count, total, lo, hi))] = h.snapshot()
    assert counts == [2, 2, 1]
    assert count == 5 and total == pytest.approx(4.65) and lo == 0.05 and hi == 3.0


def test_histogram_rejects_unsorted_bounds():
    """Bounds must be strictly increasing."""
    with pytest.raises(ValueError, match="strictly increasing"):
        HistogramFamily("h", "", "s", (), [1.0, 1.0])


def test_gauge_callback_values_and_label_omission():
    """Callback gauges are evaluated at snapshot time; None label values are omitted."""
    calls = []

    def cb():
        calls.append(1)
        return [(("b", None), 3.0)]

    g = GaugeFamily("g", "", "1", ("x", "y"), callback=cb)
    g.set(("a", "z"), 1.0)
    snap = g.snapshot()
    assert snap == [(("a", "z"), 1.0), (("b", None), 3.0)] and calls == [1]
    assert g.attributes(("b", None)) == {"x": "b"}


def test_long_label_values_are_cut():
    """A huge label value (a 1 MiB span name) is stored cut to 256 characters, in one series."""
    c = CounterFamily("c", "", "1", ("k", "n"))
    huge = "x" * (1 << 20)
    c.add((huge, 1), 1)
    c.add((huge, 1), 2)
    [(labels, value)] = c.snapshot()
    assert labels == ("x" * 256, 1) and value == 3
