"""``spansignals alerts …`` against a running management API."""

from __future__ import annotations

import json

import pytest
from peers import free_port

from spansignals.cli import main
from spansignals.processors.alerts.api import ManagementApi
from spansignals.processors.alerts.engine import AlertEngine
from spansignals.processors.alerts.rules import AlertRule, Condition
from spansignals.processors.families import GaugeFamily


@pytest.fixture
def running(monkeypatch):
    gauge = GaugeFamily("spansignals.budget.state", "d", "1", ("budget",))
    gauge.set(("llm",), 2)
    rule = AlertRule(
        "BudgetCritical", "spansignals_budget_state", Condition.parse(">= 2"), severity="critical"
    )
    engine = AlertEngine([rule], families=lambda: [gauge])
    engine.tick()
    server = ManagementApi(engine, f"127.0.0.1:{free_port()}", token="cli-token")
    server.start()
    monkeypatch.setenv("SPANSIGNALS_ALERTS_URL", server.url)
    monkeypatch.setenv("SPANSIGNALS_ALERTS_TOKEN", "cli-token")
    yield engine
    server.stop()


def test_list_ack_resolve(running, capsys):
    """list shows the alert; ack and resolve change its state through the API."""
    assert main(["alerts", "list"]) == 0
    out = capsys.readouterr().out
    assert "BudgetCritical" in out and "firing" in out and "budget=llm" in out
    fp = running.list_alerts()[0]["fingerprint"]
    assert main(["alerts", "ack", fp, "--by", "ana"]) == 0
    assert running.list_alerts()[0]["acknowledged_by"] == "ana"
    assert main(["alerts", "--json", "resolve", fp]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["state"] == "resolved"


def test_silence_and_maintenance_commands(running, capsys):
    """silence add/list/delete and maintenance add/list work end to end."""
    assert (
        main(["alerts", "silence", "add", "-m", "budget=llm", "--duration", "30m", "--comment", "known"]) == 0
    )
    sid = capsys.readouterr().out.split()[1]
    assert main(["alerts", "silence", "list"]) == 0
    assert f"{sid}  active" in capsys.readouterr().out
    assert main(["alerts", "silence", "delete", sid]) == 0
    assert running.list_silences() == []
    assert (
        main(
            [
                "alerts",
                "maintenance",
                "add",
                "deploy",
                "--weekdays",
                "tue",
                "--start",
                "02:00",
                "--end",
                "03:00",
                "--timezone",
                "Europe/Berlin",
            ]
        )
        == 0
    )
    assert main(["alerts", "maintenance", "list"]) == 0
    assert "deploy" in capsys.readouterr().out


def test_errors_exit_nonzero_with_a_message(running, capsys, monkeypatch):
    """A wrong token, an unknown alert, a bad matcher and an unreachable API give clear errors."""
    assert main(["alerts", "--token", "wrong", "list"]) == 1
    assert "HTTP 401" in capsys.readouterr().err
    assert main(["alerts", "ack", "nope"]) == 1
    assert "no such alert" in capsys.readouterr().err
    assert main(["alerts", "silence", "add", "-m", "novalue"]) == 2
    monkeypatch.setenv("SPANSIGNALS_ALERTS_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["alerts", "list"]) == 1
    assert "cannot reach the management API" in capsys.readouterr().err
