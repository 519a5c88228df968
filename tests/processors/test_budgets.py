"""Budgets: calendar periods in a time zone, thresholds, projection, state events, restart state."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from spansignals.processors.budgets import BudgetTracker, period_bounds
from spansignals.processors.config.pricing import BudgetConfig
from spansignals.processors.events import EventBus, SignalEvent


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, at: dt.datetime) -> None:
        self.now = at.timestamp()


def _budget(**kw: Any) -> BudgetConfig:
    base: dict[str, Any] = {"name": "llm", "limit_usd": 100, "period": "month", "timezone": "UTC"}
    base.update(kw)
    return BudgetConfig.model_validate(base)


def _tracker(configs: list[BudgetConfig], clock: Clock, **kw: Any) -> tuple[BudgetTracker, list[SignalEvent]]:
    bus = EventBus()
    seen: list[SignalEvent] = []
    bus.subscribe(seen.append)
    return BudgetTracker(configs, events=bus, clock=clock, save_interval=0, **kw), seen


def _spend(
    t: BudgetTracker,
    amount: str,
    provider: str = "openai",
    model: str = "gpt-4o",
    service: str = "svc",
    attributes: dict[str, Any] | None = None,
) -> None:
    t.record(
        Decimal(amount),
        provider=provider,
        models=(model, ""),
        service=service,
        attributes=attributes or {},
        resource={},
    )


def _gauges(t: BudgetTracker) -> dict[str, dict[tuple[Any, ...], float]]:
    return {f.name: dict(f.snapshot()) for f in t.families}


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("period", "local", "start", "end"),
    [
        (
            "day",
            dt.datetime(2026, 3, 29, 12),
            dt.datetime(2026, 3, 29),
            dt.datetime(2026, 3, 30),
        ),  # 23 h (DST)
        ("week", dt.datetime(2026, 11, 22, 23, 59), dt.datetime(2026, 11, 16), dt.datetime(2026, 11, 23)),
        ("month", dt.datetime(2026, 12, 31, 23, 0), dt.datetime(2026, 12, 1), dt.datetime(2027, 1, 1)),
        ("year", dt.datetime(2026, 1, 1, 0, 0), dt.datetime(2026, 1, 1), dt.datetime(2027, 1, 1)),
    ],
)
def test_period_bounds_are_calendar_aligned_in_the_zone(
    period: str, local: dt.datetime, start: dt.datetime, end: dt.datetime
) -> None:
    """Periods start at local midnight (Monday, the 1st, 1 January) of the budget's time zone."""
    s, e = period_bounds(period, BERLIN, local.replace(tzinfo=BERLIN).timestamp())
    assert s == start.replace(tzinfo=BERLIN).timestamp()
    assert e == end.replace(tzinfo=BERLIN).timestamp()
    if period == "day":
        assert e - s == 23 * 3600


def test_thresholds_states_and_events() -> None:
    """Crossing 75 / 90 / 95 % moves the state 1 / 2 / 3 and emits one event per change."""
    clock = Clock(dt.datetime(2026, 11, 10, tzinfo=dt.timezone.utc))
    t, seen = _tracker([_budget()], clock)
    _spend(t, "74.99")
    assert seen == [] and _gauges(t)["spansignals.budget.state"][("llm",)] == 0
    _spend(t, "0.01")
    _spend(t, "1")
    assert [e.state for e in seen] == ["warning"]
    _spend(t, "14")
    _spend(t, "5")
    assert [e.state for e in seen] == ["warning", "critical", "emergency"]
    event = seen[-1]
    assert (
        event.source == "budget"
        and event.name == "llm"
        and event.labels == {"budget": "llm", "period": "month"}
    )
    assert event.value == pytest.approx(0.95)
    assert event.details["spent_usd"] == "95.00" and event.details["previous_state"] == "critical"
    g = _gauges(t)
    assert g["spansignals.budget.limit.usd"][("llm", "month")] == 100
    assert g["spansignals.budget.spent.usd"][("llm", "month")] == 95
    assert g["spansignals.budget.utilization.ratio"][("llm",)] == pytest.approx(0.95)


def test_period_boundary_in_time_zone_resets_and_emits_ok() -> None:
    """At local midnight (Berlin) a day budget starts over: spend 0, state ok, one ok event."""
    clock = Clock(dt.datetime(2026, 11, 22, 23, 30, tzinfo=BERLIN))
    t, seen = _tracker([_budget(period="day", timezone="Europe/Berlin", limit_usd=10)], clock)
    _spend(t, "9.6")
    assert [e.state for e in seen] == ["emergency"]
    clock.set(dt.datetime(2026, 11, 22, 23, 59, 59, tzinfo=BERLIN))
    assert _gauges(t)["spansignals.budget.spent.usd"][("llm", "day")] == pytest.approx(9.6)
    clock.set(dt.datetime(2026, 11, 23, 0, 0, 0, tzinfo=BERLIN))  # 23:00 UTC: midnight in Berlin
    g = _gauges(t)
    assert g["spansignals.budget.spent.usd"][("llm", "day")] == 0
    assert g["spansignals.budget.state"][("llm",)] == 0
    assert [e.state for e in seen] == ["emergency", "ok"]
    _spend(t, "1")
    assert _gauges(t)["spansignals.budget.spent.usd"][("llm", "day")] == 1


def test_projection_and_time_to_limit_at_current_burn() -> None:
    """$10 in the last hour: projected = spent + rate * time left; limit ETA = (limit - spent) / rate."""
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    clock = Clock(start + dt.timedelta(days=10))
    t, _ = _tracker([_budget(limit_usd=1000)], clock)
    for minute in range(60):
        clock.set(start + dt.timedelta(days=10, minutes=minute))
        _spend(t, "0.5" if minute < 20 else "0")  # $10 over the first 20 minutes of the hour
    clock.set(start + dt.timedelta(days=10, hours=1))
    rate = 10 / 3600
    left = (
        dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc) - (start + dt.timedelta(days=10, hours=1))
    ).total_seconds()
    g = _gauges(t)
    assert g["spansignals.budget.projected.usd"][("llm", "month")] == pytest.approx(10 + rate * left)
    assert g["spansignals.budget.time_to_limit"][("llm",)] == pytest.approx(990 / rate)
    clock.set(start + dt.timedelta(days=10, hours=3))  # nothing spent in the last hour: not burning
    g = _gauges(t)
    assert g["spansignals.budget.projected.usd"][("llm", "month")] == pytest.approx(10)
    assert ("llm",) not in g["spansignals.budget.time_to_limit"]


def test_projection_early_in_period_uses_elapsed_time() -> None:
    """Ten minutes into a day, the rate is spend / 10 minutes, not / 1 hour."""
    clock = Clock(dt.datetime(2026, 11, 22, 0, 10, tzinfo=dt.timezone.utc))
    t, _ = _tracker([_budget(period="day", limit_usd=1000)], clock)
    _spend(t, "1")
    projected = _gauges(t)["spansignals.budget.projected.usd"][("llm", "day")]
    assert projected == pytest.approx(1 + (1 / 600) * (24 * 3600 - 600))


def test_matching_by_provider_model_service_and_attribute() -> None:
    """Only spend matching every given field counts; attributes are read from span then resource."""
    clock = Clock(dt.datetime(2026, 11, 10, tzinfo=dt.timezone.utc))
    t, _ = _tracker(
        [
            _budget(name="p", match={"provider": ["openai", "anthropic"]}),
            _budget(name="m", match={"model": "gpt-4o"}),
            _budget(name="s", match={"service": "checkout"}),
            _budget(name="a", match={"attributes": {"team": "search"}}),
            _budget(name="all"),
        ],
        clock,
    )
    _spend(t, "1", provider="OpenAI", model="gpt-4o-mini")
    _spend(t, "2", provider="groq", model="gpt-4o", service="checkout")
    _spend(t, "4", provider="twilio", model="", attributes={"team": "search"})
    t.record(Decimal(8), provider="x", models=("",), service="y", attributes={}, resource={"team": "search"})
    spent = {k[0]: v for k, v in _gauges(t)["spansignals.budget.spent.usd"].items()}
    assert spent == {"p": 1, "m": 2, "s": 2, "a": 12, "all": 15}


def test_state_survives_restart_within_the_period(tmp_path: Path) -> None:
    """A tracker restarted in the same period resumes its spend and state from the state file."""
    path = tmp_path / "budgets.json"
    clock = Clock(dt.datetime(2026, 11, 10, tzinfo=dt.timezone.utc))
    t, _ = _tracker([_budget()], clock, state_path=path)
    _spend(t, "91.5")
    t.shutdown()
    clock.set(dt.datetime(2026, 11, 11, tzinfo=dt.timezone.utc))
    t2, seen = _tracker([_budget()], clock, state_path=path)
    assert t2.get("llm").spent == Decimal("91.5") and t2.get("llm").state == 2
    _spend(t2, "4")
    assert [e.state for e in seen] == ["emergency"]
    assert [e.state for e in t2.current_events()] == ["emergency"]


def test_restart_in_a_new_period_or_changed_budget_starts_empty(tmp_path: Path) -> None:
    """Saved state from an earlier period, or for a budget whose definition changed, is not reused."""
    path = tmp_path / "budgets.json"
    clock = Clock(dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc))
    t, _ = _tracker([_budget()], clock, state_path=path)
    _spend(t, "50")
    assert t.save()
    changed, _ = _tracker([_budget(match={"provider": "openai"})], clock, state_path=path)
    assert changed.get("llm").spent == 0
    clock.set(dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))
    later, _ = _tracker([_budget()], clock, state_path=path)
    assert later.get("llm").spent == 0


def test_corrupt_state_file_is_ignored(tmp_path: Path) -> None:
    """An unreadable state file is logged and ignored; the tracker starts empty."""
    path = tmp_path / "budgets.json"
    path.write_text("{not json")
    t, _ = _tracker([_budget()], Clock(dt.datetime(2026, 11, 10, tzinfo=dt.timezone.utc)), state_path=path)
    assert t.get("llm").spent == 0


def test_periodic_save_skips_unchanged_state(tmp_path: Path) -> None:
    """The periodic saver writes only when spend changed since the last write."""
    clock = Clock(dt.datetime(2026, 11, 10, tzinfo=dt.timezone.utc))
    t, _ = _tracker([_budget()], clock, state_path=tmp_path / "b.json")
    assert t.save(only_if_changed=True)
    assert not t.save(only_if_changed=True)
    _spend(t, "1")
    assert t.save(only_if_changed=True)
    assert not t.save(only_if_changed=True)
    assert t.save()  # shutdown always writes
