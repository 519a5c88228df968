"""build_alert_engine: config → rules (defaults, overrides), routes, receivers, silences, maintenance."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alerting_fakes import Clock, attach_recorders

from spansignals.processors.alerts import build_alert_engine
from spansignals.processors.config import load_config
from spansignals.processors.engine import SignalEngine, SignalSpanProcessor
from spansignals.processors.events import SignalEvent
from spansignals.processors.families import GaugeFamily


class Signals(SignalSpanProcessor):
    """Budget and breaker gauges as their processors expose them."""

    processor_name = "signals-stub"

    def __init__(self) -> None:
        super().__init__()
        self.state = GaugeFamily("spansignals.budget.state", "d", "1", ("budget", "period"))
        self.projected = GaugeFamily("spansignals.budget.projected.usd", "d", "{USD}", ("budget", "period"))
        self.limit = GaugeFamily("spansignals.budget.limit.usd", "d", "{USD}", ("budget", "period"))
        self.breaker = GaugeFamily("spansignals.breaker.state", "d", "1", ("provider",))

    def metric_families(self):
        return [self.state, self.projected, self.limit, self.breaker]


BASE = {
    "service": {"name": "checkout-api"},
    "budgets": [
        {"name": "llm-monthly", "match": {"provider": ["openai"]}, "period": "month", "limit_usd": 1000},
        {"name": "quiet", "match": {"provider": ["x"]}, "period": "month", "limit_usd": 1, "alerts": False},
    ],
    "slos": [{"name": "checkout-availability", "match": {"service": "checkout-api"}, "objective": 0.999}],
}


def _build(extra_alerts=None, **top):
    config = load_config(
        {
            **BASE,
            **top,
            "alerts": {
                "receivers": [{"name": "ops", "log": True}],
                "default_receiver": "ops",
                **(extra_alerts or {}),
            },
        }
    )
    clock, stub = Clock(), Signals()
    signals = SignalEngine([stub])
    engine = build_alert_engine(config, signals, clock=clock)
    return clock, stub, signals, engine


def test_default_rules_fire_for_budgets_slos_and_breakers():
    """Budget thresholds, projected overspend (after 15m), SLO page events and breaker open all alert."""
    clock, stub, signals, engine = _build()
    stub.state.set(("llm-monthly", "month"), 2)
    stub.state.set(("quiet", "month"), 3)  # alerts: false on this budget
    stub.projected.set(("llm-monthly", "month"), 1500)
    stub.limit.set(("llm-monthly", "month"), 1000)
    stub.breaker.set(("openai",), 2)
    signals.events.emit(SignalEvent("slo", "checkout-availability", "page", clock(), 14.4))
    engine.tick()
    clock.advance(900)
    engine.tick()
    firing = {
        (a["rule"], a["labels"].get("budget") or a["labels"].get("slo") or a["labels"].get("provider"))
        for a in engine.list_alerts()
        if a["state"] == "firing"
    }
    assert firing == {
        ("SpansignalsBudgetCritical", "llm-monthly"),
        ("SpansignalsBudgetProjectedOverspend", "llm-monthly"),
        ("SpansignalsSloBurnRatePage", "checkout-availability"),
        ("SpansignalsBreakerOpen", "openai"),
    }
    assert all(a["labels"]["service_name"] == "checkout-api" for a in engine.list_alerts())


def test_default_rules_can_be_turned_off_or_overridden():
    """alerts.default_rules: false drops them; a user rule with a default's name replaces it."""
    *_, engine = _build({"default_rules": False})
    assert engine.rules == ()
    override = {
        "name": "SpansignalsBudgetCritical",
        "signal": "spansignals_budget_state",
        "condition": ">= 2",
        "severity": "warning",
    }
    *_, engine = _build({"rules": [override]})
    [rule] = [r for r in engine.rules if r.name == "SpansignalsBudgetCritical"]
    assert rule.severity == "warning" and rule.origin == "config"
    *_, engine = _build(ratelimits={"breaker": {"alerts": False}})
    assert "SpansignalsBreakerOpen" not in {r.name for r in engine.rules}


def test_config_silences_and_maintenance_mute():
    """Silences and maintenance windows from the config mute matching alerts."""
    now = dt.datetime.fromtimestamp(Clock()(), dt.timezone.utc)
    clock, stub, _, engine = _build(
        {
            "silences": [
                {
                    "matchers": {"budget": "llm-monthly"},
                    "starts_at": (now - dt.timedelta(hours=1)).isoformat(),
                    "ends_at": (now + dt.timedelta(hours=1)).isoformat(),
                    "comment": "known",
                }
            ],
            "maintenance": [
                {
                    "name": "all-day",
                    "schedule": {"start": "00:00", "end": "00:00"},
                    "match": {"provider": "openai"},
                }
            ],
        }
    )
    stub.state.set(("llm-monthly", "month"), 2)
    stub.breaker.set(("openai",), 2)
    rec = attach_recorders(engine, "ops")["ops"]
    engine.tick()
    clock.advance(60)
    engine.tick()
    assert rec.sent == []
    muted = {a["rule"]: a["muted_by"] for a in engine.list_alerts()}
    assert muted["SpansignalsBudgetCritical"].startswith("silence:")
    assert muted["SpansignalsBreakerOpen"] == "maintenance:all-day"


def test_example_config_builds(monkeypatch):
    """The DESIGN.md example config builds an engine with its receivers, route and maintenance."""
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X")
    config = load_config(Path(__file__).resolve().parents[3] / "examples" / "config" / "spansignals.yaml")
    engine = build_alert_engine(config, SignalEngine([]))
    assert set(engine.receivers) == {"oncall", "team-slack"} and "oncall" in engine.feeds
    assert "LLMBudgetCritical" in {r.name for r in engine.rules}
    assert [m["name"] for m in engine.list_maintenance()] == ["weekly-deploy"]
    engine.stop()


def test_start_alerting_registers_families_starts_and_stops_with_the_api():
    """start_alerting registers both families with the producer, serves the API, and stop() ends both."""
    import urllib.request

    from peers import free_port

    from spansignals.processors.alerts import start_alerting
    from spansignals.processors.producer import SignalMetricProducer

    port = free_port()
    config = load_config(
        {"alerts": {"api": {"enabled": True, "endpoint": f"127.0.0.1:{port}", "token": "t"}}}
    )
    producer = SignalMetricProducer()
    engine = start_alerting(config, SignalEngine([]), producer=producer)
    try:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/status", headers={"Authorization": "Bearer t"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        names = {f.name for f in engine.metric_families()}
        assert names == {"spansignals.alerts.active", "spansignals.notifications"}
    finally:
        engine.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status", timeout=2)
    with pytest.raises(ValueError):  # already registered by start_alerting
        producer.register(*engine.metric_families())
