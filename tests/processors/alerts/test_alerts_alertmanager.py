"""Our alerts through a real Alertmanager (Debian) to a webhook receiver: fire, resolve, silence."""

from __future__ import annotations

import json

import pytest
from alerting_fakes import BudgetStateStub, FakeHttpServer
from alertmanager_peer import AlertmanagerPeer
from peers import poll_until

from spansignals.processors.alerts import build_alert_engine
from spansignals.processors.alerts.lifecycle import Alert
from spansignals.processors.alerts.notification import AlertSnapshot, Notification
from spansignals.processors.alerts.notifiers.alertmanager import AlertmanagerFeed, AlertmanagerNotifier
from spansignals.processors.alerts.silences import Silence
from spansignals.processors.config import load_config
from spansignals.processors.engine import SignalEngine


def test_payload_is_postable_alerts_with_future_ends_at_for_firing():
    """POST /api/v2/alerts body: labels, annotations, RFC 3339 startsAt, endsAt ahead while firing."""
    n = AlertmanagerNotifier("http://am:9093/", resend_interval=60)
    assert n.url == "http://am:9093/api/v2/alerts"
    firing = AlertSnapshot("f", {"alertname": "A"}, {"summary": "s"}, "firing", 1_790_000_000.0, None)
    resolved = AlertSnapshot("g", {"alertname": "B"}, {}, "resolved", 1_790_000_000.0, 1_790_000_100.5)
    body = n.payload(Notification("am", "k", (firing, resolved), at=1_790_000_010.0))
    assert body[0] == {
        "labels": {"alertname": "A"},
        "annotations": {"summary": "s"},
        "startsAt": "2026-09-21T14:13:20.000Z",
        "endsAt": "2026-09-21T14:17:30.000Z",
        "generatorURL": "",
    }
    assert body[1]["endsAt"] == "2026-09-21T14:15:00.500Z"


def test_feed_resends_firing_periodically_and_resolved_for_a_while():
    """The feed sends on change, re-sends firing every resend_interval, and resolved ones for a while."""
    feed = AlertmanagerFeed("am", resend_interval=60, resolved_resend_for=120)
    a = Alert({"alertname": "A"}, {}, "A", "firing", 0.0, fired_at=0.0)
    assert feed.tick([a], 0) is not None
    assert feed.tick([a], 30) is None
    assert feed.tick([a], 60) is not None
    a.state, a.resolved_at = "resolved", 70.0
    assert [x.status for x in feed.tick([a], 70).alerts] == ["resolved"]
    assert feed.tick([a], 100) is None
    assert feed.tick([a], 130) is not None  # re-sent within resolved_resend_for
    assert feed.tick([a], 200) is None  # past it: no longer sent


def _webhook_alerts(hook: FakeHttpServer) -> list[tuple[str, dict]]:
    out = []
    for body in hook.bodies():
        payload = json.loads(body)
        for alert in payload["alerts"]:
            out.append((alert["status"], alert["labels"]))
    return out


@pytest.mark.integration
def test_budget_critical_reaches_real_alertmanager_resolves_and_silence_keeps_quiet(tmp_path):
    """A critical budget reaches Alertmanager and its webhook; the resolution follows; silenced stays out."""
    hook = FakeHttpServer()
    am = AlertmanagerPeer(tmp_path / "am", hook.url + "/hook")
    stub = BudgetStateStub()
    signals = SignalEngine([stub])
    config = load_config(
        {
            "service": {"name": "checkout-api"},
            "alerts": {
                "evaluation_interval": "100ms",
                "rules": [
                    {
                        "name": "LLMBudgetCritical",
                        "signal": "spansignals_budget_state",
                        "condition": ">= 2",
                        "severity": "critical",
                        "annotations": {"summary": "budget {{ labels.budget }} at {{ value }}"},
                    },
                ],
                "receivers": [
                    {"name": "oncall", "alertmanager": {"urls": [am.url], "resend_interval": "1s"}}
                ],
                "routes": [{"match": {"severity": "critical"}, "receiver": "oncall"}],
            },
        }
    )
    engine = build_alert_engine(config, signals)
    engine.tick_interval = 0.1
    engine.add_silence(Silence({"budget": "ads"}, author="test", comment="known overspend"))
    engine.start()
    try:
        stub.state.set(("llm-monthly", "month"), 2)
        stub.state.set(("ads", "month"), 3)
        firing = poll_until(
            lambda: [labels for status, labels in _webhook_alerts(hook) if status == "firing"],
            timeout=20,
            what="the firing alert at the webhook",
        )
        assert firing[0]["alertname"] == "LLMBudgetCritical" and firing[0]["budget"] == "llm-monthly"
        assert firing[0]["service_name"] == "checkout-api" and firing[0]["priority"] == "P1"
        payload = json.loads(hook.bodies()[0])
        assert payload["version"] == "4" and payload["receiver"] == "hook"
        assert payload["commonAnnotations"]["summary"] == "budget llm-monthly at 2"

        stub.state.set(("llm-monthly", "month"), 0)
        poll_until(
            lambda: [labels for status, labels in _webhook_alerts(hook) if status == "resolved"],
            timeout=20,
            what="the resolution at the webhook",
        )
        assert all(labels["budget"] != "ads" for _, labels in _webhook_alerts(hook))
        assert all(a["labels"].get("budget") != "ads" for a in am.alerts())
        [ads] = [a for a in engine.list_alerts() if a["labels"]["budget"] == "ads"]
        assert ads["state"] == "firing" and ads["muted_by"].startswith("silence:")
        sent = engine.notifications.value(("oncall", "sent"))
        assert sent >= 2
    finally:
        engine.stop()
        am.stop()
        hook.close()


@pytest.mark.integration
def test_two_alertmanagers_one_down_the_live_one_still_gets_alerts(tmp_path):
    """Every instance gets its own worker: a dead Alertmanager never delays the live one."""
    from peers import free_port

    hook = FakeHttpServer()
    am = AlertmanagerPeer(tmp_path / "am", hook.url + "/hook")
    stub = BudgetStateStub()
    dead = f"http://127.0.0.1:{free_port()}"
    config = load_config(
        {
            "alerts": {
                "evaluation_interval": "100ms",
                "default_rules": False,
                "rules": [
                    {
                        "name": "BudgetCritical",
                        "signal": "spansignals_budget_state",
                        "condition": ">= 2",
                        "severity": "critical",
                    }
                ],
                "receivers": [{"name": "oncall", "alertmanager": {"urls": [dead, am.url]}}],
                "default_receiver": "oncall",
            }
        }
    )
    engine = build_alert_engine(config, SignalEngine([stub]))
    engine.tick_interval = 0.1
    engine.start()
    try:
        stub.state.set(("llm", "month"), 2)
        poll_until(
            lambda: [a for a in am.alerts() if a["labels"]["alertname"] == "BudgetCritical"],
            timeout=20,
            what="the alert at the live Alertmanager",
        )
        poll_until(lambda: _webhook_alerts(hook), timeout=20, what="the webhook delivery")
        poll_until(
            lambda: engine.notifications.value(("oncall", "retried")) >= 1,
            timeout=10,
            what="a retry counted for the dead instance",
        )
        assert engine.notifications.value(("oncall", "sent")) >= 1
    finally:
        engine.stop(timeout=1)
        am.stop()
        hook.close()


@pytest.mark.integration
def test_real_budget_critical_reaches_alertmanager_and_resolves_at_period_end(tmp_path):
    """Real cost and budget processors: critical → real Alertmanager → webhook; next day it resolves."""
    import time

    from spansignals.processors.budgets import BudgetTracker
    from spansignals.processors.cost import CostSpanProcessor
    from spansignals.processors.pricing import PriceCatalog
    from spansignals.processors.providers import ProviderTable
    from spansignals.processors.view import KIND_CLIENT, SpanView

    hook = FakeHttpServer()
    am = AlertmanagerPeer(tmp_path / "am", hook.url + "/hook")
    config = load_config(
        {
            "service": {"name": "checkout-api"},
            "budgets": [
                {
                    "name": "llm-daily",
                    "match": {"provider": "openai"},
                    "period": "day",
                    "timezone": "UTC",
                    "limit_usd": 0.0075,
                }
            ],
            "alerts": {
                "evaluation_interval": "100ms",
                "default_rules": False,
                "rules": [
                    {
                        "name": "LLMBudgetCritical",
                        "signal": "spansignals_budget_state",
                        "match": {"budget": "llm-daily"},
                        "condition": ">= 2",
                        "severity": "critical",
                        "annotations": {"summary": "budget {{ labels.budget }} is at state {{ value }}"},
                    }
                ],
                "receivers": [{"name": "oncall", "alertmanager": {"urls": [am.url]}}],
                "routes": [{"match": {"severity": "critical"}, "receiver": "oncall"}],
            },
        }
    )
    offset = [0.0]  # the budget's clock can jump to the next day; everything else runs on real time

    def budget_clock() -> float:
        return time.time() + offset[0]

    cost = CostSpanProcessor(
        PriceCatalog(config.pricing.models, config.pricing.apis),
        budgets=BudgetTracker(config.budgets, clock=budget_clock),
        table=ProviderTable.from_config(config.providers),
    )
    signals = SignalEngine([cost])
    engine = build_alert_engine(config, signals)
    engine.tick_interval = 0.1
    engine.start()
    try:
        for _ in range(2):  # 1000 input + 100 output tokens of gpt-4o: $0.0035 each, 93% of the limit
            end = time.time_ns()
            attrs = {
                "spansignals.provider": "openai",
                "gen_ai.provider.name": "openai",
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 100,
            }
            signals.process(
                SpanView(
                    "chat gpt-4o", KIND_CLIENT, end - 10**8, end, 0, attrs, {"service.name": "checkout-api"}
                )
            )
        firing = poll_until(
            lambda: [labels for status, labels in _webhook_alerts(hook) if status == "firing"],
            timeout=20,
            what="the budget alert at the webhook via Alertmanager",
        )
        assert firing[0]["alertname"] == "LLMBudgetCritical" and firing[0]["budget"] == "llm-daily"
        assert (
            json.loads(hook.bodies()[0])["commonAnnotations"]["summary"] == "budget llm-daily is at state 2"
        )
        offset[0] = 86400.0  # a new budget period starts: state back to ok
        resolved = poll_until(
            lambda: [labels for status, labels in _webhook_alerts(hook) if status == "resolved"],
            timeout=20,
            what="the resolution at the webhook",
        )
        assert resolved[0]["alertname"] == "LLMBudgetCritical"
    finally:
        engine.stop()
        am.stop()
        hook.close()
