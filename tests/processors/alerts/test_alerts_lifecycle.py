"""Alert lifecycle: pending → firing → resolved with for/keep_firing_for, identity, manual resolve."""

from __future__ import annotations

from alerting_fakes import T0, Clock, budget_gauge
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from spansignals.processors.alerts.engine import AlertEngine
from spansignals.processors.alerts.lifecycle import AlertStore, fingerprint
from spansignals.processors.alerts.rules import AlertRule, Condition
from spansignals.processors.events import EventBus, SignalEvent
from spansignals.processors.producer import SignalMetricProducer, attach_producer


def _rule(**kw) -> AlertRule:
    kw.setdefault("severity", "critical")
    return AlertRule("BudgetCritical", "spansignals_budget_state", Condition.parse(">= 2"), **kw)


def _states(engine: AlertEngine) -> list[str]:
    return [a["state"] for a in engine.list_alerts()]


def test_pending_then_firing_after_for_then_resolved():
    """An instance is pending until active for `for`, then firing; when the condition clears, resolved."""
    clock, gauge = Clock(), budget_gauge()
    engine = AlertEngine([_rule(for_s=60)], families=lambda: [gauge], evaluation_interval=15, clock=clock)
    gauge.set(("llm", "month"), 2)
    engine.tick()
    assert _states(engine) == ["pending"]
    clock.advance(45)
    engine.tick()
    assert _states(engine) == ["pending"]
    clock.advance(15)
    engine.tick()
    [alert] = engine.list_alerts()
    assert alert["state"] == "firing" and alert["fired_at"] == T0 + 60 and alert["active_at"] == T0
    gauge.set(("llm", "month"), 1)
    clock.advance(15)
    engine.tick()
    [alert] = engine.list_alerts()
    assert alert["state"] == "resolved" and alert["resolved_at"] == T0 + 75


def test_pending_that_clears_is_dropped_without_trace():
    """A pending instance whose condition clears is forgotten (never firing, never resolved)."""
    clock, gauge = Clock(), budget_gauge()
    engine = AlertEngine([_rule(for_s=60)], families=lambda: [gauge], evaluation_interval=15, clock=clock)
    gauge.set(("llm", "month"), 2)
    engine.tick()
    gauge.set(("llm", "month"), 0)
    clock.advance(15)
    engine.tick()
    assert engine.list_alerts() == []


def test_keep_firing_for_holds_a_flapping_alert():
    """keep_firing_for keeps an alert firing through a short clear, then resolves it."""
    clock, gauge = Clock(), budget_gauge()
    engine = AlertEngine(
        [_rule(keep_firing_for_s=60)], families=lambda: [gauge], evaluation_interval=15, clock=clock
    )
    gauge.set(("llm", "month"), 2)
    engine.tick()
    gauge.set(("llm", "month"), 0)
    for _ in range(3):
        clock.advance(15)
        engine.tick()
        assert _states(engine) == ["firing"]
    clock.advance(15)
    engine.tick()
    assert _states(engine) == ["resolved"]


def test_one_alert_per_label_set_no_duplicates():
    """Repeated evaluations of the same series keep one alert with a stable fingerprint."""
    clock, gauge = Clock(), budget_gauge()
    engine = AlertEngine([_rule()], families=lambda: [gauge], evaluation_interval=15, clock=clock)
    gauge.set(("llm", "month"), 2)
    gauge.set(("ads", "month"), 3)
    for _ in range(5):
        engine.tick()
        clock.advance(15)
    alerts = engine.list_alerts()
    assert len(alerts) == 2
    assert len({a["fingerprint"] for a in alerts}) == 2
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1", "b": "2"}) != fingerprint({"a": "12", "b": ""})


def test_manual_resolve_stays_resolved_until_condition_clears():
    """Resolved by hand, an alert does not re-fire while the condition holds; it may after a clear."""
    clock, gauge = Clock(), budget_gauge()
    engine = AlertEngine([_rule()], families=lambda: [gauge], evaluation_interval=15, clock=clock)
    gauge.set(("llm", "month"), 2)
    engine.tick()
    [alert] = engine.list_alerts()
    assert engine.resolve(alert["fingerprint"])["state"] == "resolved"
    clock.advance(15)
    engine.tick()
    assert _states(engine) == ["resolved"]
    gauge.set(("llm", "month"), 0)
    clock.advance(15)
    engine.tick()
    gauge.set(("llm", "month"), 2)
    clock.advance(15)
    engine.tick()
    assert _states(engine) == ["firing"]


def test_resolved_alerts_are_forgotten_after_retention():
    """Resolved alerts are kept for the retention (to re-send the resolution), then dropped."""
    store = AlertStore(resolved_retention=900)
    rule = _rule()
    store.apply(rule, [({"alertname": "x"}, {}, 2.0)], T0)
    store.apply(rule, [], T0 + 10)
    assert [a.state for a in store.alerts()] == ["resolved"]
    store.apply(rule, [], T0 + 10 + 901)
    assert store.alerts() == []


def test_events_trigger_immediate_evaluation_and_gauge_counts_states():
    """An event wakes evaluation before the interval; spansignals_alerts_active counts by state."""
    clock, bus = Clock(), EventBus()
    rule = AlertRule("SloPage", "event:slo", Condition.parse("== page"), severity="critical")
    engine = AlertEngine([rule], events=bus, evaluation_interval=600, clock=clock)
    engine.tick()
    assert engine.list_alerts() == []
    bus.emit(SignalEvent("slo", "checkout", "page", clock(), 14.4))
    clock.advance(1)
    engine.tick()
    assert _states(engine) == ["firing"]
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    producer = SignalMetricProducer()
    producer.register(*engine.metric_families())
    attach_producer(reader, producer)
    data = reader.get_metrics_data()
    points = {
        (tuple(sorted(p.attributes.items())), p.value)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "spansignals.alerts.active"
        for p in m.data.data_points
    }
    assert ((("alertname", "SloPage"), ("severity", "critical"), ("state", "firing")), 1.0) in points
    provider.shutdown()
