"""Canary: secrets in receiver configs never appear in logs, notifications, the API or config errors."""

from __future__ import annotations

import json
import logging
import urllib.request

from alerting_fakes import BudgetStateStub, Clock, FakeHttpServer
from peers import free_port

from spansignals.processors.alerts import build_alert_engine
from spansignals.processors.alerts.api import ManagementApi
from spansignals.processors.config import ConfigError, load_config
from spansignals.processors.engine import SignalEngine

CANARY = "canary-5ecret-value"


def test_canary_secret_leaks_nowhere(caplog):
    """A canary in every secret field is absent from logs, every request body, and the API's answers."""
    ok, failing = FakeHttpServer(default=(202, {}, b"{}")), FakeHttpServer(default=(500, {}, b"down"))
    try:
        config = load_config(
            {
                "alerts": {
                    "ssrf_allowlist": ["127.0.0.1"],
                    "delivery": {"max_attempts": 2, "initial_backoff": "0s"},
                    "rules": [
                        {
                            "name": "BudgetCritical",
                            "signal": "spansignals_budget_state",
                            "condition": ">= 2",
                            "severity": "critical",
                        }
                    ],
                    "receivers": [
                        {"name": "slack", "slack": {"webhook_url": f"{failing.url}/services/{CANARY}"}},
                        {"name": "pd", "pagerduty": {"routing_key": CANARY, "url": f"{ok.url}/v2/enqueue"}},
                        {
                            "name": "hook",
                            "webhook": {
                                "url": f"{failing.url}/hook",
                                "secret": CANARY,
                                "headers": {"authorization": f"Bearer {CANARY}"},
                            },
                        },
                        {
                            "name": "mail",
                            "email": {
                                "to": ["a@example.com"],
                                "from": "b@example.com",
                                "smarthost": f"127.0.0.1:{free_port()}",
                                "username": "u",
                                "password": CANARY,
                            },
                        },
                    ],
                    "routes": [
                        {"receiver": r, "group_wait": "0s", "continue": True}
                        for r in ("slack", "pd", "hook", "mail")
                    ],
                }
            }
        )
        stub = BudgetStateStub()
        clock = Clock()
        engine = build_alert_engine(config, SignalEngine([stub]), clock=clock, wait=lambda s: False)
        stub.state.set(("llm", "month"), 2)
        api = ManagementApi(engine, f"127.0.0.1:{free_port()}", token="t")
        api.start()
        with caplog.at_level(logging.DEBUG):
            for note in engine.tick():
                for worker in engine.receivers[note.receiver].workers:
                    while worker.pending():
                        worker.deliver(worker._queue.get_nowait())
            req = urllib.request.Request(api.url + "/api/v1/alerts", headers={"Authorization": "Bearer t"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                answer = resp.read().decode()
        api.stop()
        assert engine.notifications.value(("pd", "sent")) == 1
        assert engine.notifications.value(("slack", "failed")) == 1
        bodies = [b.decode() for b in ok.bodies() + failing.bodies()]
        pd_body = json.loads(ok.bodies()[0])
        assert pd_body["routing_key"] == CANARY  # the one place the key must go: PagerDuty itself
        elsewhere = [b for b in bodies if '"routing_key"' not in b]
        assert elsewhere and all(CANARY not in b for b in elsewhere)
        assert CANARY not in caplog.text and CANARY not in answer
        assert CANARY not in repr(config)
    finally:
        ok.close()
        failing.close()


def test_config_errors_do_not_echo_secrets():
    """A refused secret URL is named by its field, never printed."""
    try:
        load_config(
            {"alerts": {"receivers": [{"name": "s", "slack": {"webhook_url": f"http://10.1.1.1/{CANARY}"}}]}}
        )
    except ConfigError as exc:
        assert "receivers[0].slack.webhook_url" in str(exc) and CANARY not in str(exc)
    else:
        raise AssertionError("expected a ConfigError")
