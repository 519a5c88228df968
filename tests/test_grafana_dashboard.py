"""Structural and PromQL checks of the shipped Grafana dashboard (no Grafana binary runs here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from peers import missing_peer

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "collector-config" / "grafana" / "dashboards" / "spansignals-overview.json"
CATALOGUE = [
    "traces_span_metrics_calls_total",
    "traces_span_metrics_duration_seconds",
    "spansignals_cost_usd_total",
    "spansignals_cost_unpriced_total",
    "spansignals_tokens_total",
    "spansignals_budget_limit_usd",
    "spansignals_budget_spent_usd",
    "spansignals_budget_projected_usd",
    "spansignals_budget_utilization_ratio",
    "spansignals_budget_state",
    "spansignals_ratelimit_limit",
    "spansignals_ratelimit_remaining",
    "spansignals_ratelimit_reset_seconds",
    "spansignals_ratelimit_throttled_total",
    "spansignals_breaker_state",
    "spansignals_guard_decisions_total",
    "spansignals_slo_events_total",
    "spansignals_slo_bad_events_total",
    "spansignals_slo_objective_ratio",
    "spansignals_slo_error_budget_remaining_ratio",
    "spansignals_slo_burn_rate",
    "spansignals_alerts_active",
    "spansignals_notifications_total",
    "spansignals_receiver_spans_total",
    "spansignals_exporter_spans_total",
    "spansignals_exporter_queue_spans",
    "spansignals_processor_errors_total",
]


def _exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_only_catalogue_metrics():
    """Every metric a panel queries is in the DESIGN.md catalogue (histograms via _bucket)."""
    names = set()
    for expr in _exprs():
        names |= set(re.findall(r"\b((?:traces|spansignals)_[a-z_]+)", expr))
    unknown = {n for n in names if n not in CATALOGUE and n.removesuffix("_bucket") not in CATALOGUE}
    assert not unknown, f"panels query metrics outside the catalogue: {sorted(unknown)}"
    assert len(names) >= 20


def test_dashboard_panels_are_valid_promql(tmp_path: Path):
    """promtool accepts every panel query (Grafana variables substituted) as PromQL for 2.42."""
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_peer("promtool (Debian package prometheus) is not installed")
    rules = [
        {
            "record": f"dashboard:check{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$service", ".*"),
        }
        for i, expr in enumerate(_exprs())
    ]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(rules)} rules found" in res.stdout


def test_dashboard_has_unique_ids_and_a_service_variable():
    """Panel ids are unique and the service variable filters by service_name."""
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "service"]
