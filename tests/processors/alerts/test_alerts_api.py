"""Management API: token auth, list/ack/resolve alerts, silences, maintenance, errors without leaks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from alerting_fakes import Clock, budget_gauge
from peers import free_port

from spansignals.processors.alerts.api import ManagementApi, serve_management_api
from spansignals.processors.alerts.engine import AlertEngine
from spansignals.processors.alerts.routing import Route
from spansignals.processors.alerts.rules import AlertRule, Condition
from spansignals.processors.config import ConfigError, load_config

TOKEN = "t0ken-for-tests"


def _request(url, method="GET", body=None, token=TOKEN, raw=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def api():
    clock, gauge = Clock(), budget_gauge()
    rule = AlertRule(
        "BudgetCritical", "spansignals_budget_state", Condition.parse(">= 2"), severity="critical"
    )
    engine = AlertEngine(
        [rule],
        routes=[Route("primary", escalation=((300.0, "secondary"),))],
        families=lambda: [gauge],
        clock=clock,
    )
    gauge.set(("llm", "month"), 2)
    engine.tick()
    server = ManagementApi(engine, f"127.0.0.1:{free_port()}", token=TOKEN)
    server.start()
    yield server.url, engine, clock
    server.stop()


def test_token_is_required_and_compared(api):
    """No token or a wrong one gets 401 with WWW-Authenticate; the right one is served."""
    url, _, _ = api
    assert _request(url + "/api/v1/alerts", token=None)[0] == 401
    assert _request(url + "/api/v1/alerts", token="t0ken-for-tesTS")[0] == 401
    status, body = _request(url + "/api/v1/alerts")
    assert status == 200 and body["alerts"][0]["labels"]["alertname"] == "BudgetCritical"


def test_list_filter_ack_and_resolve(api):
    """Alerts are listed (filtered by state), acknowledged (stopping escalation) and resolved."""
    url, engine, clock = api
    assert _request(url + "/api/v1/alerts?state=pending")[1] == {"alerts": []}
    [alert] = _request(url + "/api/v1/alerts?state=firing")[1]["alerts"]
    fp = alert["fingerprint"]
    status, body = _request(f"{url}/api/v1/alerts/{fp}/ack", "POST", {"by": "ana"})
    assert status == 200 and body["acknowledged_by"] == "ana"
    clock.advance(600)
    engine.tick()
    assert engine.list_alerts()[0]["escalated_to"] == []
    assert _request(f"{url}/api/v1/alerts/{fp}/resolve", "POST", {})[1]["state"] == "resolved"
    assert _request(f"{url}/api/v1/alerts/nope/ack", "POST", {})[0] == 404
    assert _request(url + "/api/v1/status")[1]["alerts"] == {"resolved": 1}


def test_silences_create_list_delete(api):
    """A silence with a duration is created (201), listed as active, mutes the alert, and deleted."""
    url, engine, clock = api
    status, silence = _request(
        url + "/api/v1/silences",
        "POST",
        {"matchers": {"budget": "llm"}, "duration": "2h", "comment": "known", "author": "ana"},
    )
    assert status == 201 and silence["active"] and silence["ends_at"] == clock() + 7200
    assert silence["author"] == "ana"
    engine.tick()
    assert engine.list_alerts()[0]["muted_by"] == f"silence:{silence['id']}"
    assert [s["id"] for s in _request(url + "/api/v1/silences")[1]["silences"]] == [silence["id"]]
    assert _request(f"{url}/api/v1/silences/{silence['id']}", "DELETE")[0] == 204
    assert _request(f"{url}/api/v1/silences/{silence['id']}", "DELETE")[0] == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"matchers": {}, "duration": "1h"}, "matchers"),
        ({"matchers": {"a": "b"}}, "needs ends_at"),
        ({"matchers": {"a": "b"}, "duration": "soon"}, "duration"),
        ({"matchers": {"a": "b"}, "duration": "1h", "colour": "red"}, "colour: unknown key"),
        ({"matchers": {"a": "b"}, "schedule": {"start": "25:00", "end": "03:00"}}, "schedule.start"),
    ],
)
def test_bad_silences_get_400_naming_the_field(api, body, needle):
    """Invalid silences are refused with a 400 whose message names the problem."""
    url, _, _ = api
    status, answer = _request(url + "/api/v1/silences", "POST", body)
    assert status == 400 and needle in answer["error"]


def test_malformed_and_oversized_bodies(api):
    """Non-JSON bodies get 400, bodies over 64 KiB 413; no traceback is returned."""
    url, _, _ = api
    status, answer = _request(url + "/api/v1/silences", "POST", raw=b"{nope")
    assert status == 400 and "Traceback" not in json.dumps(answer)
    assert _request(url + "/api/v1/silences", "POST", raw=b'"' + b"x" * 70000 + b'"')[0] == 413


def test_maintenance_windows(api):
    """One-off and weekly maintenance windows are created and listed with whether they are active."""
    url, _engine, _ = api
    status, _ = _request(
        url + "/api/v1/maintenance",
        "POST",
        {
            "name": "deploy",
            "schedule": {"weekdays": ["tue"], "start": "02:00", "end": "03:00", "timezone": "Europe/Berlin"},
            "match": {"budget": "llm"},
        },
    )
    assert status == 201
    assert (
        _request(
            url + "/api/v1/maintenance",
            "POST",
            {"name": "now", "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"},
        )[0]
        == 201
    )
    listed = {m["name"]: m for m in _request(url + "/api/v1/maintenance")[1]["maintenance"]}
    assert listed["deploy"]["recurring"] and not listed["now"]["recurring"] and listed["now"]["active"]
    assert _request(url + "/api/v1/maintenance", "POST", {"name": "bad"})[0] == 400


def test_api_config_requires_token_beyond_loopback():
    """alerts.api enabled on a non-loopback address without a token is a config error; loopback is fine."""
    with pytest.raises(ConfigError, match="token is required"):
        load_config({"alerts": {"api": {"enabled": True, "endpoint": "0.0.0.0:9466"}}})
    config = load_config({"alerts": {"api": {"enabled": True, "endpoint": f"127.0.0.1:{free_port()}"}}})
    server = serve_management_api(AlertEngine([]), config)
    try:
        assert _request(server.url + "/api/v1/status", token=None)[0] == 200
    finally:
        server.stop()
    assert serve_management_api(AlertEngine([]), load_config({})) is None


def test_api_default_applies_only_when_the_config_is_silent():
    """default_enabled starts the API unless the config says enabled: false."""
    port = free_port()
    config = load_config({"alerts": {"api": {"endpoint": f"127.0.0.1:{port}"}}})
    server = serve_management_api(AlertEngine([]), config, default_enabled=True)
    try:
        assert server is not None and _request(server.url + "/api/v1/status", token=None)[0] == 200
    finally:
        server.stop()
    off = load_config({"alerts": {"api": {"enabled": False}}})
    assert serve_management_api(AlertEngine([]), off, default_enabled=True) is None
