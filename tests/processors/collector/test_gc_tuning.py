"""The collector process freezes its startup objects and collects the young generation less often."""

from __future__ import annotations

import gc

import pytest

from spansignals.processors.collector.gc_tuning import GEN0_THRESHOLD, tune_gc


@pytest.fixture
def restore_gc():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_gc_freezes_startup_and_raises_the_young_threshold(restore_gc, monkeypatch):
    monkeypatch.delenv("SPANSIGNALS_GC", raising=False)
    _, gen1, gen2 = gc.get_threshold()
    assert tune_gc() is True
    assert gc.get_threshold() == (GEN0_THRESHOLD, gen1, gen2)
    assert gc.get_freeze_count() > 1000  # this test process's modules, at least


def test_cyclic_garbage_is_still_collected(restore_gc, monkeypatch):
    """A raised threshold delays collections; it does not stop them."""
    monkeypatch.delenv("SPANSIGNALS_GC", raising=False)
    tune_gc()
    before = gc.get_stats()[0]["collections"]
    for _ in range(GEN0_THRESHOLD * 2):
        cycle: list[object] = []
        cycle.append(cycle)
    assert gc.get_stats()[0]["collections"] > before


def test_default_keeps_the_interpreter_settings(restore_gc, monkeypatch):
    monkeypatch.setenv("SPANSIGNALS_GC", "default")
    thresholds = gc.get_threshold()
    assert tune_gc() is False
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
