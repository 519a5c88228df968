"""Generated Prometheus rules: valid for promtool, and each alert fires at its threshold, quiet below."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from peers import missing_peer

from spansignals.processors.config import load_config
from spansignals.processors.rules import render_rules, rule_groups

SLO_CONFIG_SAMPLES = {
    "defaults": {},
    "example-like": {
        "service": {"name": "checkout-api"},
        "budgets": [{"name": "llm-monthly", "match": {"provider": ["openai"]}, "limit_usd": 1000}],
        "slos": [
            {
                "name": "checkout-availability",
                "match": {"service": "checkout-api", "span_kind": "server"},
                "objective": 0.999,
                "period": "30d",
            },
            {
                "name": "openai-latency",
                "match": {"provider": "openai"},
                "objective": 0.99,
                "latency_threshold": "2s",
                "period": "28d",
            },
        ],
        "alerts": {
            "rules": [
                {
                    "name": "LLMBudgetCritical",
                    "signal": "spansignals_budget_state",
                    "match": {"budget": "llm-monthly"},
                    "condition": ">= 2",
                    "for": "5m",
                    "severity": "critical",
                    "annotations": {"summary": "budget {{ labels.budget }} is at state {{ value }}"},
                },
                {"name": "SloEvent", "signal": "event:slo", "condition": ">= 1"},
            ]
        },
    },
    "custom-windows-no-default-alerts": {
        "slos": [
            {
                "name": "odd windows",
                "objective": 0.95,
                "period": "7d",
                "bad_status_codes": [429, 503],
                "burn_alerts": [
                    {"severity": "page", "factor": 10, "long_window": "90m", "short_window": "90s"},
                    {"severity": "ticket", "factor": 2, "long_window": "2d", "short_window": "4h"},
                ],
            },
        ],
        "alerts": {"default_rules": False},
        "ratelimits": {"enabled": False},
    },
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing_peer("promtool is not installed (apt-get install prometheus, see PEERS.md)")
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("name", sorted(SLO_CONFIG_SAMPLES))
def test_generated_rules_pass_promtool_check_rules(name: str, tmp_path: Path):
    """Rules generated for each sample config load in Prometheus 2.42's rule checker."""
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(load_config(SLO_CONFIG_SAMPLES[name])))
    result = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_slo_rules_are_sloth_compatible_and_honour_switches():
    """Every Sloth series name is recorded per SLO with sloth_* labels; default_rules=false drops alerts."""
    groups = rule_groups(load_config(SLO_CONFIG_SAMPLES["example-like"]))
    records = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d", "28d"):
        assert f"slo:sli_error:ratio_rate{window}" in records
    for name in (
        "slo:objective:ratio",
        "slo:error_budget:ratio",
        "slo:time_period:days",
        "slo:current_burn_rate:ratio",
        "slo:period_burn_rate:ratio",
        "slo:period_error_budget_remaining:ratio",
        "sloth_slo_info",
    ):
        assert name in records
    (budget,) = [
        r
        for g in groups
        for r in g["rules"]
        if r.get("record") == "slo:error_budget:ratio" and r["labels"]["slo"] == "checkout-availability"
    ]
    assert budget["expr"] == "vector(0.001)"
    assert budget["labels"]["sloth_service"] == "checkout-api"
    user = [r for g in groups if g["name"] == "spansignals-user-rules" for r in g["rules"]]
    assert user == [
        {
            "alert": "LLMBudgetCritical",
            "expr": 'spansignals_budget_state{budget="llm-monthly"} >= 2',
            "labels": {"severity": "critical"},
            "for": "5m",
            "annotations": {"summary": "budget {{ $labels.budget }} is at state {{ $value }}"},
        }
    ]
    quiet = rule_groups(load_config(SLO_CONFIG_SAMPLES["custom-windows-no-default-alerts"]))
    assert not [r for g in quiet for r in g["rules"] if "alert" in r]
    windows = {
        r["labels"]["sloth_window"]
        for g in quiet
        for r in g["rules"]
        if "sloth_window" in r.get("labels", {})
    }
    assert windows == {"90s", "5m", "30m", "1h", "90m", "2h", "4h", "6h", "1d", "2d", "3d", "7d"}


# --- promtool test rules ----------------------------------------------------------------------

STEP_MIN = 5  # sample every 5 minutes and evaluate hourly: 3 days of windows stay cheap for promtool
STEPS = (3 * 1440 + 60) // STEP_MIN  # a little over 3 days: the 3d windows are full

# SLO name -> bad events per 10,000 (objective 0.999, so 10 per 10,000 burns at exactly 1x).
STEADY = {
    "b144": 144,
    "b143": 143,
    "b100": 100,
    "b60": 60,
    "b59": 59,
    "b30": 30,
    "b20": 20,
    "b10": 10,
    "b9": 9,
}

CONDITIONS = {  # (alert, threshold label, long, short)
    "14.4": ("SpansignalsSloBurnRatePage", "1h", "5m"),
    "6": ("SpansignalsSloBurnRatePage", "6h", "30m"),
    "3": ("SpansignalsSloBurnRateTicket", "1d", "2h"),
    "1": ("SpansignalsSloBurnRateTicket", "3d", "6h"),
}


def _firing(bad_per_10k: int) -> set[str]:
    return {f for f in CONDITIONS if bad_per_10k * 1000 >= float(f) * 10_000}


def _strip_annotations(rules_text: str) -> str:
    """promtool compares annotations too; their templates are checked by `check rules` instead."""
    data = yaml.safe_load(rules_text)
    for group in data["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return json.dumps(data)


def _slo_series(slo: str, bad_per_10k: int, recover_last: int = 0) -> list[dict[str, str]]:
    """Two collectors each seeing half the traffic: 5,000 events a step, half the bad ones."""
    series = []
    for instance in ("collector-1:9464", "collector-2:9464"):
        labels = (
            f'slo="{slo}", service_name="checkout-api", instance="{instance}", otel_scope_name="spansignals"'
        )
        series.append({"series": f"spansignals_slo_events_total{{{labels}}}", "values": f"0+5000x{STEPS}"})
        bad = bad_per_10k // 2 if instance.startswith("collector-1") else bad_per_10k - bad_per_10k // 2
        if recover_last:
            steady = STEPS - recover_last
            values = f"0+{bad}x{steady} {bad * steady}+0x{recover_last}"
        else:
            values = f"0+{bad}x{STEPS}"
        series.append({"series": f"spansignals_slo_bad_events_total{{{labels}}}", "values": values})
    return series


def _expected(slo: str, threshold: str) -> dict[str, Any]:
    alert, long_w, short_w = CONDITIONS[threshold]
    return {
        "exp_labels": {
            "severity": "critical" if alert.endswith("Page") else "warning",
            "slo_severity": "page" if alert.endswith("Page") else "ticket",
            "slo": slo,
            "sli": "availability",
            "burn_rate_threshold": threshold,
            "long_window": long_w,
            "short_window": short_w,
            "sloth_id": slo,
            "sloth_slo": slo,
            "sloth_service": "spansignals",
        }
    }


def test_burn_rate_alerts_fire_at_their_thresholds_and_stay_quiet_below(tmp_path: Path):
    """promtool: each MWMBR condition fires at exactly its factor, not a hair below; 10x pages only via 6x;
    2x tickets only via 1x; a short window that recovered silences the fast page."""
    slos = [{"name": name, "objective": 0.999} for name in [*STEADY, "recovered"]]
    config = load_config({"slos": slos, "ratelimits": {"enabled": False}})
    (tmp_path / "rules.yml").write_text(_strip_annotations(render_rules(config)))
    series = [s for name, bad in STEADY.items() for s in _slo_series(name, bad)]
    series += _slo_series("recovered", 500, recover_last=2)  # 50x for 3 days, clean for the last 10 min
    expectations: dict[str, list[dict[str, Any]]] = {
        "SpansignalsSloBurnRatePage": [],
        "SpansignalsSloBurnRateTicket": [],
    }
    for name, bad in STEADY.items():
        for threshold in sorted(_firing(bad), key=float, reverse=True):
            expectations[CONDITIONS[threshold][0]].append(_expected(name, threshold))
    # recovered: 5m is clean, so 14.4x (1h/5m) is quiet; 30m still holds 20 min of 50x = 33x >= 6x.
    expectations["SpansignalsSloBurnRatePage"].append(_expected("recovered", "6"))
    expectations["SpansignalsSloBurnRateTicket"] += [_expected("recovered", "3"), _expected("recovered", "1")]
    assert [
        e["exp_labels"]["burn_rate_threshold"]
        for e in expectations["SpansignalsSloBurnRatePage"]
        if e["exp_labels"]["slo"] == "b100"
    ] == ["6"]
    assert [
        e["exp_labels"]["burn_rate_threshold"]
        for e in expectations["SpansignalsSloBurnRateTicket"]
        if e["exp_labels"]["slo"] == "b20"
    ] == ["1"]
    eval_time = f"{STEPS * STEP_MIN}m"
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1h",
        "tests": [
            {
                "interval": f"{STEP_MIN}m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": eval_time, "alertname": alert, "exp_alerts": exp}
                    for alert, exp in expectations.items()
                ],
                "promql_expr_test": [
                    {
                        "expr": 'slo:period_error_budget_remaining:ratio{slo="b20"}',
                        "eval_time": eval_time,
                        # 3 days at 2x of a 30-day budget: the period ratio is 2x -> remaining 1 - 2 = -1.
                        "exp_samples": [
                            {
                                "labels": 'slo:period_error_budget_remaining:ratio{slo="b20", '
                                'sloth_id="b20", '
                                'sloth_service="spansignals", sloth_slo="b20", sloth_window="30d"}',
                                "value": -1,
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(json.dumps(test))
    result = run_promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_budget_ratelimit_breaker_and_forecast_alerts(tmp_path: Path):
    """promtool: budget levels, projected overspend, rate limit below 10%, quota forecast, breaker open."""
    config = load_config(
        {
            "budgets": [
                {"name": "warn", "limit_usd": 100},
                {"name": "emerg", "limit_usd": 100},
                {"name": "fine", "limit_usd": 100},
            ],
        }
    )
    (tmp_path / "rules.yml").write_text(_strip_annotations(render_rules(config)))

    def gauge(name: str, labels: str, values: str) -> dict[str, str]:
        return {"series": f"{name}{{{labels}}}", "values": values}

    series = [
        # warn: 40 + 46 = 86% across two collectors (each alone is below 75%).
        gauge("spansignals_budget_spent_usd", 'budget="warn", instance="a"', "40x60"),
        gauge("spansignals_budget_spent_usd", 'budget="warn", instance="b"', "46x60"),
        gauge("spansignals_budget_limit_usd", 'budget="warn", instance="a"', "100x60"),
        gauge("spansignals_budget_limit_usd", 'budget="warn", instance="b"', "100x60"),
        gauge("spansignals_budget_projected_usd", 'budget="warn", instance="a"', "60x60"),
        gauge("spansignals_budget_projected_usd", 'budget="warn", instance="b"', "50x60"),
        gauge("spansignals_budget_spent_usd", 'budget="emerg", instance="a"', "95x60"),
        gauge("spansignals_budget_limit_usd", 'budget="emerg", instance="a"', "100x60"),
        gauge("spansignals_budget_projected_usd", 'budget="emerg", instance="a"', "100x60"),
        gauge("spansignals_budget_spent_usd", 'budget="fine", instance="a"', "74.9x60"),
        gauge("spansignals_budget_limit_usd", 'budget="fine", instance="a"', "100x60"),
        # rate limits: openai requests at 9% (fires), tokens at exactly 10% (quiet).
        gauge(
            "spansignals_ratelimit_remaining",
            'service_name="svc", provider="openai", resource="requests"',
            "9x60",
        ),
        gauge(
            "spansignals_ratelimit_limit",
            'service_name="svc", provider="openai", resource="requests"',
            "100x60",
        ),
        gauge(
            "spansignals_ratelimit_remaining",
            'service_name="svc", provider="openai", resource="tokens"',
            "1000x60",
        ),
        gauge(
            "spansignals_ratelimit_limit",
            'service_name="svc", provider="openai", resource="tokens"',
            "10000x60",
        ),
        # daily quota draining 150/min from 10,000: runs out in ~67 min, reset in 2h -> forecast fires.
        gauge(
            "spansignals_ratelimit_remaining",
            'service_name="svc", provider="github", resource="core"',
            "10000-150x60",
        ),
        gauge(
            "spansignals_ratelimit_limit",
            'service_name="svc", provider="github", resource="core"',
            "10000x60",
        ),
        gauge(
            "spansignals_ratelimit_reset_seconds",
            'service_name="svc", provider="github", resource="core"',
            "7200-60x60",
        ),
        # same drain, but the quota resets in 10 minutes -> quiet.
        gauge(
            "spansignals_ratelimit_remaining",
            'service_name="svc", provider="gitlab", resource="api"',
            "10000-150x60",
        ),
        gauge(
            "spansignals_ratelimit_limit", 'service_name="svc", provider="gitlab", resource="api"', "10000x60"
        ),
        gauge(
            "spansignals_ratelimit_reset_seconds",
            'service_name="svc", provider="gitlab", resource="api"',
            "600x60",
        ),
        gauge("spansignals_breaker_state", 'service_name="svc", provider="anthropic", instance="a"', "2x60"),
        gauge("spansignals_breaker_state", 'service_name="svc", provider="anthropic", instance="b"', "0x60"),
        gauge("spansignals_breaker_state", 'service_name="svc", provider="openai", instance="a"', "1x60"),
    ]
    at = "40m"
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": "SpansignalsBudgetWarning",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "warning", "budget": "warn", "level": "warning"}}
                        ],
                    },
                    {"eval_time": at, "alertname": "SpansignalsBudgetCritical", "exp_alerts": []},
                    {
                        "eval_time": at,
                        "alertname": "SpansignalsBudgetEmergency",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "critical", "budget": "emerg", "level": "emergency"}}
                        ],
                    },
                    # 110 > 100 for 15m: pending at 10m, firing at 40m; "emerg" projects its limit (quiet).
                    {
                        "eval_time": "10m",
                        "alertname": "SpansignalsBudgetProjectedOverspend",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": at,
                        "alertname": "SpansignalsBudgetProjectedOverspend",
                        "exp_alerts": [{"exp_labels": {"severity": "warning", "budget": "warn"}}],
                    },
                    {
                        "eval_time": at,
                        "alertname": "SpansignalsRateLimitLow",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "service_name": "svc",
                                    "provider": "openai",
                                    "resource": "requests",
                                }
                            }
                        ],
                    },
                    {
                        "eval_time": at,
                        "alertname": "SpansignalsRateLimitExhaustionForecast",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "service_name": "svc",
                                    "provider": "github",
                                    "resource": "core",
                                }
                            }
                        ],
                    },
                    {
                        "eval_time": at,
                        "alertname": "SpansignalsBreakerOpen",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "service_name": "svc",
                                    "provider": "anthropic",
                                }
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(json.dumps(test))
    result = run_promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
