"""Escalation with acknowledgement, digest mode and the per-receiver rate limit."""

from __future__ import annotations

from alerting_fakes import Clock, attach_recorders, budget_gauge

from spansignals.processors.alerts.channel import ReceiverChannel
from spansignals.processors.alerts.engine import AlertEngine
from spansignals.processors.alerts.notification import AlertSnapshot, Notification
from spansignals.processors.alerts.routing import Route
from spansignals.processors.alerts.rules import AlertRule, Condition


def _engine(clock, escalation=((300.0, "secondary"), (900.0, "manager"))):
    gauge = budget_gauge()
    rule = AlertRule(
        "BudgetCritical", "spansignals_budget_state", Condition.parse(">= 2"), severity="critical"
    )
    route = Route("primary", {"priority": "P1"}, group_wait=0, escalation=tuple(escalation))
    engine = AlertEngine(
        [rule], routes=[route], families=lambda: [gauge], evaluation_interval=10, clock=clock
    )
    rec = attach_recorders(engine, "primary", "secondary", "manager")
    gauge.set(("llm", "month"), 2)
    return gauge, engine, rec


def _run(clock, engine, seconds, step=10.0):
    for _ in range(int(seconds / step)):
        clock.advance(step)
        engine.tick()


def test_unacknowledged_p1_escalates_on_time():
    """A P1 nobody acknowledges reaches the second level at 5 min and the third at 15 min, once each."""
    clock = Clock()
    _gauge, engine, rec = _engine(clock)
    engine.tick()
    assert len(rec["primary"].sent) == 1
    _run(clock, engine, 290)
    assert rec["secondary"].sent == []
    _run(clock, engine, 10)
    [esc] = rec["secondary"].sent
    assert esc.reason == "escalation" and esc.at == clock() and esc.alerts[0].labels["priority"] == "P1"
    assert esc.title.startswith("[ESCALATED:1]")
    _run(clock, engine, 600)
    assert len(rec["manager"].sent) == 1 and len(rec["secondary"].sent) == 1
    [alert] = engine.list_alerts()
    assert alert["escalated_to"] == ["manager", "secondary"]


def test_acknowledged_alert_does_not_escalate():
    """An alert acknowledged before the first level never reaches the next receiver."""
    clock = Clock()
    _gauge, engine, rec = _engine(clock)
    engine.tick()
    [alert] = engine.list_alerts()
    _run(clock, engine, 120)
    acked = engine.acknowledge(alert["fingerprint"], "ana")
    assert acked["acknowledged_by"] == "ana"
    _run(clock, engine, 1800)
    assert rec["secondary"].sent == [] and rec["manager"].sent == []
    assert engine.acknowledge("nope", "ana") is None


def test_escalated_receivers_get_the_resolution():
    """Receivers an alert was escalated to are told when it resolves."""
    clock = Clock()
    gauge, engine, rec = _engine(clock, escalation=((60.0, "secondary"),))
    engine.tick()
    _run(clock, engine, 60)
    gauge.set(("llm", "month"), 0)
    _run(clock, engine, 20)
    assert [n.status for n in rec["secondary"].sent] == ["firing", "resolved"]
    assert rec["secondary"].sent[1].title.startswith("[RESOLVED:1]")


def _note(severity: str, fp: str, status: str = "firing") -> Notification:
    alert = AlertSnapshot(fp, {"alertname": "A", "severity": severity}, {}, status, 0.0, None)
    return Notification("r", fp, (alert,))


def test_digest_sends_one_summary_per_interval_for_low_severities():
    """Warnings are collected into one digest per interval; critical notifications pass at once."""
    from alerting_fakes import Recorder

    rec = Recorder()
    channel = ReceiverChannel("r", [rec], digest_interval=3600, now=0.0)
    channel.offer(_note("warning", "a"), 10)
    channel.offer(_note("info", "b"), 20)
    channel.offer(_note("warning", "a"), 30)
    channel.offer(_note("critical", "c"), 40)
    assert [n.alerts[0].fingerprint for n in rec.sent] == ["c"]
    channel.tick(3599)
    assert len(rec.sent) == 1
    channel.tick(3600)
    digest = rec.sent[1]
    assert digest.reason == "digest" and sorted(a.fingerprint for a in digest.alerts) == ["a", "b"]
    channel.tick(7200)
    assert len(rec.sent) == 2  # nothing new: no empty digest


def test_rate_limit_per_receiver_counts_what_it_refuses():
    """Past rate_limit_per_hour firing notifications are refused and counted; resolutions pass."""
    from alerting_fakes import Recorder

    outcomes: list[str] = []
    rec = Recorder()
    channel = ReceiverChannel("r", [rec], rate_limit_per_hour=2, on_outcome=lambda r, o: outcomes.append(o))
    for i in range(4):
        channel.offer(_note("critical", f"f{i}"), 0.0)
    channel.offer(_note("critical", "f0", status="resolved"), 0.0)
    assert [n.alerts[0].fingerprint for n in rec.sent] == ["f0", "f1", "f0"]
    assert outcomes == ["rate_limited", "rate_limited"]
    channel.offer(_note("critical", "g"), 1800.0)  # half an hour refills one token
    assert rec.sent[-1].alerts[0].fingerprint == "g"
