"""Routing, grouping (group_wait / group_interval / repeat_interval), continue, inhibition."""

from __future__ import annotations

from alerting_fakes import Clock, attach_recorders

from spansignals.processors.alerts.engine import AlertEngine
from spansignals.processors.alerts.routing import InhibitRule, Route
from spansignals.processors.alerts.rules import AlertRule, Condition
from spansignals.processors.families import GaugeFamily


def _setup(
    routes, *, inhibit=(), receivers=("oncall", "team", "fallback"), default_receiver=None, rules=None
):
    clock = Clock()
    gauge = GaugeFamily("spansignals.budget.state", "d", "1", ("budget", "service.name"))
    rules = rules or [
        AlertRule("BudgetWarning", "spansignals_budget_state", Condition.parse("== 1"), severity="warning"),
        AlertRule("BudgetCritical", "spansignals_budget_state", Condition.parse(">= 2"), severity="critical"),
    ]
    engine = AlertEngine(
        rules,
        routes=routes,
        inhibit_rules=inhibit,
        default_receiver=default_receiver,
        families=lambda: [gauge],
        evaluation_interval=10,
        clock=clock,
    )
    return clock, gauge, engine, attach_recorders(engine, *receivers)


def _run(clock, engine, seconds, step=1.0):
    for _ in range(int(seconds / step)):
        clock.advance(step)
        engine.tick()


def test_group_wait_batches_alerts_of_one_group():
    """Alerts of one group arriving within group_wait go out as one notification after group_wait."""
    route = Route("oncall", group_by=("alertname",), group_wait=30, group_interval=300, repeat_interval=3600)
    clock, gauge, engine, rec = _setup([route])
    gauge.set(("a", "svc"), 2)
    engine.tick()
    _run(clock, engine, 10)
    gauge.set(("b", "svc"), 2)
    _run(clock, engine, 19)
    assert rec["oncall"].sent == []
    _run(clock, engine, 1)
    [note] = rec["oncall"].sent
    assert note.status == "firing" and len(note.alerts) == 2
    assert note.group_labels == {"alertname": "BudgetCritical"}
    assert note.common_labels["severity"] == "critical"


def test_group_interval_then_repeat_interval():
    """A new alert in a notified group waits group_interval; an unchanged one repeats at repeat_interval."""
    route = Route("oncall", group_by=("alertname",), group_wait=5, group_interval=60, repeat_interval=600)
    clock, gauge, engine, rec = _setup([route])
    gauge.set(("a", "svc"), 2)
    engine.tick()
    _run(clock, engine, 5)
    assert len(rec["oncall"].sent) == 1
    gauge.set(("b", "svc"), 2)
    _run(clock, engine, 59)
    assert len(rec["oncall"].sent) == 1
    _run(clock, engine, 1)
    assert len(rec["oncall"].sent) == 2 and len(rec["oncall"].sent[1].alerts) == 2
    _run(clock, engine, 540, step=60)  # nothing changes: group_interval checks stay quiet
    assert len(rec["oncall"].sent) == 2
    _run(clock, engine, 60, step=60)  # repeat_interval after the 2nd notification: a repeat
    assert len(rec["oncall"].sent) == 3 and rec["oncall"].sent[2].alerts == rec["oncall"].sent[1].alerts


def test_resolution_is_notified_once():
    """When a notified alert resolves, the group sends one resolved notification, then goes quiet."""
    route = Route("oncall", group_wait=1, group_interval=10, repeat_interval=600)
    clock, gauge, engine, rec = _setup([route])
    gauge.set(("a", "svc"), 2)
    engine.tick()
    _run(clock, engine, 2)
    gauge.set(("a", "svc"), 0)
    _run(clock, engine, 40)
    statuses = [n.status for n in rec["oncall"].sent]
    assert statuses == ["firing", "resolved"]
    assert rec["oncall"].sent[1].alerts[0].ends_at is not None


def test_first_matching_route_wins_unless_continue():
    """Routes are tried in order; continue lets later routes also take the alert; no match → default."""
    routes = [
        Route("oncall", {"severity": "critical"}, group_wait=0, continue_=True, index=0),
        Route("team", {"severity": "critical"}, group_wait=0, index=1),
        Route("team", {"budget": "never"}, group_wait=0, index=2),
    ]
    clock, gauge, engine, rec = _setup(routes, default_receiver="fallback")
    gauge.set(("a", "svc"), 2)
    gauge.set(("b", "svc"), 1)
    engine.tick()
    assert [n.alerts[0].labels["budget"] for n in rec["oncall"].sent] == ["a"]
    assert [n.alerts[0].labels["budget"] for n in rec["team"].sent] == ["a"]
    _run(clock, engine, 30)  # the default route waits the default group_wait
    assert [n.alerts[0].labels["budget"] for n in rec["fallback"].sent] == ["b"]


def test_group_by_splits_groups():
    """group_by on a label gives one notification per value."""
    route = Route("oncall", group_by=("budget",), group_wait=0)
    _clock, gauge, engine, rec = _setup([route])
    gauge.set(("a", "svc"), 2)
    gauge.set(("b", "svc"), 2)
    engine.tick()
    assert sorted(n.group_labels["budget"] for n in rec["oncall"].sent) == ["a", "b"]


def test_critical_inhibits_warning_for_the_same_service():
    """A firing critical mutes warnings with the same service_name, not those of other services."""
    rules = [
        AlertRule("Critical", "spansignals_budget_state", Condition.parse(">= 2"), severity="critical"),
        AlertRule("Warning", "spansignals_budget_state", Condition.parse(">= 1"), severity="warning"),
    ]
    inhibit = [InhibitRule({"severity": "critical"}, {"severity": "warning"}, ("service_name",))]
    route = Route("oncall", group_by=("alertname", "service_name"), group_wait=0)
    _clock, gauge, engine, rec = _setup([route], inhibit=inhibit, rules=rules)
    gauge.set(("a", "checkout"), 2)  # fires Critical and Warning for checkout
    gauge.set(("b", "search"), 1)  # Warning for search only
    engine.tick()
    sent = {(n.group_labels["alertname"], n.group_labels["service_name"]) for n in rec["oncall"].sent}
    assert sent == {("Critical", "checkout"), ("Warning", "search")}
    muted = {
        a["labels"]["service_name"]: a["muted_by"] for a in engine.list_alerts() if a["rule"] == "Warning"
    }
    assert muted["checkout"].startswith("inhibited:") and muted["search"] is None
