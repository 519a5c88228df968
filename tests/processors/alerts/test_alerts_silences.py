"""Silences (one-off and recurring) and maintenance windows (timezone) mute notifications."""

from __future__ import annotations

import datetime as dt

from alerting_fakes import Clock, attach_recorders, budget_gauge

from spansignals.processors.alerts.engine import AlertEngine
from spansignals.processors.alerts.routing import Route
from spansignals.processors.alerts.rules import AlertRule, Condition
from spansignals.processors.alerts.silences import Silence
from spansignals.processors.schedule import MaintenanceWindow


def _ts(*args, tz="UTC") -> float:
    from zoneinfo import ZoneInfo

    return dt.datetime(*args, tzinfo=ZoneInfo(tz)).timestamp()


def _engine(clock):
    gauge = budget_gauge()
    rule = AlertRule(
        "BudgetCritical", "spansignals_budget_state", Condition.parse(">= 2"), severity="critical"
    )
    engine = AlertEngine(
        [rule],
        routes=[Route("oncall", group_wait=0, group_interval=60)],
        families=lambda: [gauge],
        evaluation_interval=10,
        clock=clock,
    )
    return gauge, engine, attach_recorders(engine, "oncall")["oncall"]


def test_matching_silence_keeps_alert_quiet_and_others_not():
    """A silence on budget=llm mutes that alert's notifications but not another budget's."""
    clock = Clock()
    gauge, engine, rec = _engine(clock)
    engine.add_silence(Silence({"budget": "llm"}, clock(), clock() + 3600, author="ana", comment="known"))
    gauge.set(("llm", "month"), 2)
    gauge.set(("ads", "month"), 2)
    engine.tick()
    sent = [a.labels["budget"] for n in rec.sent for a in n.alerts]
    assert sent == ["ads"]
    listed = {a["labels"]["budget"]: a for a in engine.list_alerts()}
    assert listed["llm"]["state"] == "firing" and listed["llm"]["muted_by"].startswith("silence:")


def test_silence_expiry_lets_the_alert_through():
    """When the silence ends, the still-firing alert is notified at the next group check."""
    clock = Clock()
    gauge, engine, rec = _engine(clock)
    silence = engine.add_silence(Silence({"budget": "llm"}, clock(), clock() + 120))
    gauge.set(("llm", "month"), 2)
    engine.tick()
    for _ in range(3):
        clock.advance(60)
        engine.tick()
    assert len(rec.sent) == 1 and rec.sent[0].status == "firing"
    assert silence.id not in [s["id"] for s in engine.list_silences()]  # expired and dropped


def test_deleted_silence_stops_muting():
    """Deleting a silence un-mutes at once."""
    clock = Clock()
    gauge, engine, rec = _engine(clock)
    s = engine.add_silence(Silence({"alertname": "BudgetCritical"}))
    gauge.set(("llm", "month"), 2)
    engine.tick()
    assert rec.sent == []
    assert engine.delete_silence(s.id) and not engine.delete_silence(s.id)
    clock.advance(60)
    engine.tick()
    assert len(rec.sent) == 1


def test_recurring_silence_mutes_only_inside_its_schedule():
    """A weekly silence (tue 02:00-03:00 Europe/Berlin) mutes inside its local hour only."""
    clock = Clock(_ts(2026, 3, 3, 1, 30, tz="Europe/Berlin"))  # a Tuesday, before the window
    gauge, engine, rec = _engine(clock)
    window = MaintenanceWindow("s", weekdays=["tue"], start="02:00", end="03:00", timezone="Europe/Berlin")
    engine.add_silence(Silence({"budget": "llm"}, schedule=window))
    clock.now = _ts(2026, 3, 3, 2, 10, tz="Europe/Berlin")
    gauge.set(("llm", "month"), 2)
    engine.tick()
    assert rec.sent == []
    clock.now = _ts(2026, 3, 3, 3, 0, tz="Europe/Berlin")
    engine.tick()
    assert len(rec.sent) == 1


def test_maintenance_window_with_timezone_mutes_matching_alerts():
    """A recurring maintenance window in America/New_York mutes matching alerts during local hours."""
    clock = Clock(_ts(2026, 7, 7, 23, 30, tz="America/New_York"))  # Tuesday 23:30 local
    gauge, engine, rec = _engine(clock)
    engine.add_maintenance(
        MaintenanceWindow(
            "nightly",
            weekdays=["tue"],
            start="23:00",
            end="01:00",
            timezone="America/New_York",
            match={"budget": "llm"},
        )
    )
    gauge.set(("llm", "month"), 2)
    engine.tick()
    assert rec.sent == []
    [alert] = engine.list_alerts()
    assert alert["muted_by"] == "maintenance:nightly"
    assert engine.list_maintenance()[0]["active"] is True
    clock.now = _ts(2026, 7, 8, 0, 59, tz="America/New_York")  # still inside (crosses midnight)
    engine.tick()
    assert rec.sent == []
    clock.now = _ts(2026, 7, 8, 1, 0, tz="America/New_York")
    engine.tick()
    assert len(rec.sent) == 1


def test_one_off_maintenance_window():
    """A one-off window mutes between its start and end only."""
    clock = Clock()
    gauge, engine, rec = _engine(clock)
    engine.add_maintenance(MaintenanceWindow("deploy", starts_at=clock() + 10, ends_at=clock() + 100))
    clock.advance(10)
    gauge.set(("llm", "month"), 2)
    engine.tick()
    assert rec.sent == []
    clock.advance(90)
    engine.tick()
    assert len(rec.sent) == 1
