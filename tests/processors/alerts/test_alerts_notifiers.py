"""Notifier payloads against local fakes: signed webhooks, Slack, PagerDuty Events v2, log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging

import pytest
from alerting_fakes import Clock, FakeHttpServer, budget_gauge

from spansignals.processors.alerts.channel import ReceiverChannel
from spansignals.processors.alerts.delivery import DeliveryWorker, RetryPolicy
from spansignals.processors.alerts.engine import AlertEngine
from spansignals.processors.alerts.notification import AlertSnapshot, Notification
from spansignals.processors.alerts.notifiers.base import HttpPoster
from spansignals.processors.alerts.notifiers.log import LogNotifier
from spansignals.processors.alerts.notifiers.pagerduty import PagerDutyNotifier
from spansignals.processors.alerts.notifiers.slack import SlackNotifier
from spansignals.processors.alerts.notifiers.webhook import WebhookNotifier, verify
from spansignals.processors.alerts.routing import Route
from spansignals.processors.alerts.rules import AlertRule, Condition

SECRET = "whsec_" + base64.b64encode(b"a-32-byte-secret-for-the-tests!!").decode()


def _alert(status="firing", fp="0123456789abcdef", **labels) -> AlertSnapshot:
    base = {
        "alertname": "LLMBudgetCritical",
        "severity": "critical",
        "priority": "P1",
        "budget": "llm",
        "service_name": "checkout",
    }
    base.update(labels)
    return AlertSnapshot(
        fp,
        base,
        {"summary": "budget llm is at state 2"},
        status,
        1_790_000_000.0,
        None if status == "firing" else 1_790_000_100.0,
        2.0,
    )


def _note(*alerts, reason="group") -> Notification:
    return Notification(
        "r", "0:abc", alerts or (_alert(),), {"alertname": "LLMBudgetCritical"}, reason, 1_790_000_005.0
    )


@pytest.fixture
def server():
    srv = FakeHttpServer()
    yield srv
    srv.close()


def _worker(notifier, outcomes=None):
    return DeliveryWorker(
        "r",
        notifier,
        policy=RetryPolicy(max_attempts=3),
        wait=lambda s: False,
        on_outcome=lambda r, o: (outcomes or []).append(o),
    )


def test_webhook_is_signed_per_standard_webhooks(server):
    """webhook-id/-timestamp/-signature: v1,base64 HMAC-SHA256 over id.ts.body, whsec_ key decoded."""
    clock = Clock()
    notifier = WebhookNotifier(
        server.url + "/in", secret=SECRET, headers={"x-team": "pay"}, clock=clock, poster=HttpPoster()
    )
    notifier.send(_note())
    [(_, path, headers, body)] = server.requests
    assert path == "/in" and headers["x-team"] == "pay" and headers["content-type"] == "application/json"
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    assert msg_id.startswith("msg_") and ts == str(int(clock()))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert verify(SECRET, headers, body, now=clock())
    assert not verify(SECRET, headers, body + b" ", now=clock())
    assert not verify(SECRET, headers, body, now=clock() + 600)  # outside the replay tolerance
    payload = json.loads(body)
    assert payload["status"] == "firing" and payload["alerts"][0]["labels"]["budget"] == "llm"
    assert payload["alerts"][0]["startsAt"] == "2026-09-21T14:13:20.000Z"


def test_webhook_id_is_stable_across_retries(server):
    """A retried notification keeps its webhook-id (receivers deduplicate) with a fresh valid signature."""
    server.script = [(500, {}, b"", 0)]
    _worker(WebhookNotifier(server.url, secret=SECRET)).deliver(_note())
    ids = [r[2]["webhook-id"] for r in server.requests]
    assert len(ids) == 2 and ids[0] == ids[1]
    assert all(verify(SECRET, r[2], r[3]) for r in server.requests)


def test_slack_message_is_readable_blocks(server):
    """Slack gets a text fallback and blocks: a header with status and count, one section per alert."""
    SlackNotifier(server.url + "/services/T/B/X").send(
        _note(_alert(), _alert("resolved", fp="ffff", budget="ads"))
    )
    payload = json.loads(server.requests[0][3])
    assert payload["text"] == "[FIRING:1] alertname=LLMBudgetCritical"
    assert payload["blocks"][0]["type"] == "header"
    sections = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert sections[0].startswith(":red_circle: [CRITICAL] budget llm is at state 2")
    assert "[RESOLVED]" in sections[1]


def test_slack_429_waits_retry_after(server):
    """Slack's 429 rate limit is retried after its Retry-After."""
    server.script = [(429, {"retry-after": "30"}, b"rate_limited", 0)]
    waits: list[float] = []
    worker = DeliveryWorker("slack", SlackNotifier(server.url), wait=lambda s: waits.append(s) or False)
    assert worker.deliver(_note()) and waits == [30.0] and len(server.requests) == 2


def test_pagerduty_trigger_resolve_share_a_stable_dedup_key(server):
    """trigger and resolve events carry routing_key and the same dedup_key; payload per Events v2."""
    server.default = (202, {"content-type": "application/json"}, b'{"status":"success"}')
    pd = PagerDutyNotifier("R0UT1NGKEY", server.url + "/v2/enqueue")
    pd.send(_note())
    pd.send(_note())  # a re-send updates the same incident
    pd.send(_note(_alert("resolved")))
    events = [json.loads(r[3]) for r in server.requests]
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    assert {e["dedup_key"] for e in events} == {"spansignals-0123456789abcdef"}
    assert all(e["routing_key"] == "R0UT1NGKEY" for e in events)
    payload = events[0]["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "checkout"
    assert payload["summary"] == "budget llm is at state 2" and payload["class"] == "LLMBudgetCritical"
    assert payload["timestamp"] == "2026-09-21T14:13:20.000Z"
    assert "payload" not in events[2]


@pytest.mark.parametrize(("status", "attempts", "ok"), [(400, 1, False), (429, 2, True), (500, 2, True)])
def test_pagerduty_failure_modes(server, status, attempts, ok):
    """PagerDuty 400 is permanent; 429 and 5xx are retried."""
    server.script = [(status, {}, b'{"status":"invalid"}', 0)]
    server.default = (202, {}, b"{}")
    assert _worker(PagerDutyNotifier("k", server.url)).deliver(_note()) is ok
    assert len(server.requests) == attempts


def test_acknowledge_sends_pagerduty_acknowledge(server):
    """Acknowledging through the engine sends an acknowledge event with the alert's dedup_key."""
    server.default = (202, {}, b"{}")
    clock, gauge = Clock(), budget_gauge()
    rule = AlertRule(
        "BudgetCritical", "spansignals_budget_state", Condition.parse(">= 2"), severity="critical"
    )
    engine = AlertEngine([rule], routes=[Route("pd", group_wait=0)], families=lambda: [gauge], clock=clock)
    worker = _worker(PagerDutyNotifier("k", server.url))
    engine.receivers["pd"] = ReceiverChannel("pd", [worker], kind="pagerduty")
    gauge.set(("llm", "month"), 2)
    engine.tick()
    [alert] = engine.list_alerts()
    engine.acknowledge(alert["fingerprint"], "ana")
    while worker.pending():
        worker.deliver(worker._queue.get_nowait())  # drain on this thread: deterministic
    events = [json.loads(r[3]) for r in server.requests]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge"]
    assert events[1]["dedup_key"] == f"spansignals-{alert['fingerprint']}"


def test_log_notifier_writes_one_record(caplog):
    """The log receiver writes a warning naming the alert for firing, info for resolved."""
    with caplog.at_level(logging.INFO, logger="spansignals.alerts"):
        LogNotifier("ops").send(_note())
        LogNotifier("ops").send(_note(_alert("resolved")))
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "budget llm is at state 2" in caplog.records[0].getMessage()


def test_secrets_stay_out_of_logs(server, caplog):
    """A failing Slack or PagerDuty delivery logs neither the webhook URL path nor the routing key."""
    server.default = (404, {}, b"no_service")
    with caplog.at_level(logging.DEBUG):
        _worker(SlackNotifier(server.url + "/services/SECRETPATH")).deliver(_note())
        _worker(PagerDutyNotifier("SECRETKEY", server.url)).deliver(_note())
    text = caplog.text
    assert "slack: HTTP 404" in text and "SECRETPATH" not in text and "SECRETKEY" not in text
