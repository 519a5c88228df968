"""SLA compliance reports (``spansignals report``): SLOs, error budgets and spend for a period.

Two sources:

- ``--prometheus URL`` (the global, durable view): for the period ending now, per SLO the events,
  bad and maintenance-excluded events (``increase()`` of the SLO counters summed over every
  collector), compliance ``1 - bad / events`` against the objective, the error budget left
  ``1 - (bad / events) / (1 - objective)``, and the three worst 1-hour windows by burn rate; then
  per budget the limit, spend, projection and utilization, and the cost per provider over the
  period. Objectives come from ``--config`` or, failing that, from the collectors'
  ``spansignals_slo_objective_ratio``.
- ``--collector URL`` (one process, since it started): the counters of its ``/metrics`` and its
  in-process gauges (budget left over its rolling period, burn rate per window).

When data is missing the report says why (unreachable source, no series for an SLO, no events in
the period, history shorter than the period, targets down) instead of printing zeros. Output as
text, Markdown or JSON (:mod:`._report_format`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from ._slo_windows import window_label

__all__ = [
    "BudgetSpend",
    "BurnWindow",
    "ComplianceReport",
    "ReportSourceError",
    "SloCompliance",
    "report_from_collector",
    "report_from_prometheus",
    "run_report",
]

_logger = logging.getLogger(__name__)

_WORST_WINDOWS = 3
_WORST_WINDOW_S = 3600.0


class ReportSourceError(RuntimeError):
    """The source could not be read at all (the message says why)."""


@dataclass
class BurnWindow:
    """A window of the period and its burn rate (``start``/``end`` epoch seconds; ``label`` for
    in-process windows such as ``1h`` that have no fixed start)."""

    burn_rate: float
    start: float | None = None
    end: float | None = None
    label: str | None = None


@dataclass
class SloCompliance:
    """One SLO over the report period (``None`` where the data does not say)."""

    name: str
    sli: str | None = None
    objective: float | None = None
    events: float | None = None
    bad_events: float | None = None
    excluded_events: float | None = None
    compliance: float | None = None
    met: bool | None = None
    error_budget_remaining: float | None = None
    worst_windows: list[BurnWindow] = field(default_factory=list)
    data_since: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class BudgetSpend:
    """A spending budget now (its own calendar period)."""

    name: str
    limit_usd: float | None = None
    spent_usd: float | None = None
    projected_usd: float | None = None
    utilization: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ComplianceReport:
    """The whole report; :meth:`to_dict` is the JSON form."""

    source: str
    period: str
    generated_at: float
    slos: list[SloCompliance] = field(default_factory=list)
    budgets: list[BudgetSpend] = field(default_factory=list)
    cost_by_provider_usd: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finish(slo: SloCompliance) -> None:
    """Derive compliance, verdict and budget from events, bad events and objective."""
    if slo.events is None:
        return
    if slo.events <= 0:
        slo.notes.append("no events in the period: nothing to measure (no traffic matched the SLO)")
        return
    ratio = (slo.bad_events or 0.0) / slo.events
    slo.compliance = 1.0 - ratio
    if slo.objective is not None:
        slo.met = slo.compliance >= slo.objective
        slo.error_budget_remaining = 1.0 - ratio / (1.0 - slo.objective)


# --- Prometheus ---------------------------------------------------------------------------------


class _PrometheusApi:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str]) -> Any:
        full = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(full, timeout=self.timeout) as resp:
                payload = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read())
            except ValueError:
                raise ReportSourceError(f"Prometheus at {self.url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ReportSourceError(f"cannot reach Prometheus at {self.url}: {reason}") from None
        except ValueError:
            raise ReportSourceError(f"{self.url} did not answer like a Prometheus HTTP API") from None
        if payload.get("status") != "success":
            raise ReportSourceError(f"Prometheus query failed: {payload.get('error', payload)}")
        return payload["data"]

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/query", {"query": promql, "time": f"{at:.3f}"})["result"])

    def by(self, promql: str, label: str, at: float) -> dict[str, float]:
        out = {}
        for item in self.query(promql, at):
            value = float(item["value"][1])
            if not math.isnan(value):
                out[item["metric"].get(label, "")] = value
        return out

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return list(self._get("/api/v1/query_range", params)["result"])


def report_from_prometheus(
    url: str, config: Any | None, period_s: float, *, now: float | None = None, timeout: float = 30.0
) -> ComplianceReport:
    """The report for the period ending ``now`` (default: the current time) from Prometheus at ``url``."""
    api = _PrometheusApi(url, timeout)
    at = time.time() if now is None else now
    p = window_label(period_s)
    report = ComplianceReport(source=f"prometheus {api.url}", period=p, generated_at=at)
    events = api.by(f"sum by (slo) (increase(spansignals_slo_events_total[{p}]))", "slo", at)
    bad = api.by(f"sum by (slo) (increase(spansignals_slo_bad_events_total[{p}]))", "slo", at)
    excluded = api.by(f"sum by (slo) (increase(spansignals_slo_excluded_events_total[{p}]))", "slo", at)
    objectives = api.by(f"max by (slo) (max_over_time(spansignals_slo_objective_ratio[{p}]))", "slo", at)
    step = max(60.0, period_s / 720)
    since = api.by(
        f"min by (slo) (min_over_time(timestamp(spansignals_slo_events_total)[{p}:{window_label(step)}]))",
        "slo",
        at,
    )
    configured = {s.name: s for s in config.slos} if config is not None else {}
    names = list(configured) + sorted(set(events) - set(configured))
    if not names:
        report.notes.append(
            f"Prometheus has no spansignals_slo_events_total series in the last {p} and no SLOs were given "
            "(--config): is it scraping a spansignals collector or app?"
        )
    for name in names:
        slo = SloCompliance(name=name)
        cfg = configured.get(name)
        if cfg is not None:
            slo.sli = cfg.sli if cfg.latency_threshold is None else f"latency <= {cfg.latency_threshold:g}s"
            slo.objective = cfg.objective
        else:
            slo.objective = objectives.get(name)
            if slo.objective is None:
                slo.notes.append("objective unknown: pass --config with this SLO")
        if name not in events:
            slo.notes.append(
                f'no spansignals_slo_events_total{{slo="{name}"}} samples in the last {p}: Prometheus does '
                "not scrape a process evaluating this SLO, or no span matched it"
            )
            report.slos.append(slo)
            continue
        slo.events, slo.bad_events, slo.excluded_events = (
            events[name],
            bad.get(name, 0.0),
            excluded.get(name, 0.0),
        )
        slo.data_since = since.get(name)
        if slo.data_since is not None and slo.data_since > at - period_s + step:
            days = (at - slo.data_since) / 86400
            slo.notes.append(f"data covers only the last {days:.1f} days of the {p} period")
        _finish(slo)
        report.slos.append(slo)
    _worst_windows(api, report, period_s, at)
    _prometheus_budgets(api, report, config, at)
    report.cost_by_provider_usd = api.by(
        f"sum by (provider) (increase(spansignals_cost_usd_total[{p}]))", "provider", at
    )
    down = [item["metric"].get("instance", "?") for item in api.query("up == 0", at)]
    if down:
        report.notes.append(f"scrape targets down now: {', '.join(sorted(down))} (their data is missing)")
    return report


def _worst_windows(api: _PrometheusApi, report: ComplianceReport, period_s: float, at: float) -> None:
    w = window_label(_WORST_WINDOW_S)
    promql = (
        f"sum by (slo) (increase(spansignals_slo_bad_events_total[{w}]))"
        f" / sum by (slo) (increase(spansignals_slo_events_total[{w}]))"
    )
    end = math.floor(at / _WORST_WINDOW_S) * _WORST_WINDOW_S
    start = max(end - period_s + _WORST_WINDOW_S, end - 10_000 * _WORST_WINDOW_S)
    series = {
        item["metric"].get("slo", ""): item["values"]
        for item in api.query_range(promql, start, end, _WORST_WINDOW_S)
    }
    for slo in report.slos:
        if slo.objective is None or slo.name not in series:
            continue
        budget = 1.0 - slo.objective
        points = [(float(v), float(t)) for t, v in series[slo.name] if not math.isnan(float(v))]
        points.sort(reverse=True)
        slo.worst_windows = [
            BurnWindow(burn_rate=ratio / budget, start=t - _WORST_WINDOW_S, end=t)
            for ratio, t in points[:_WORST_WINDOWS]
            if ratio > 0
        ]


def _prometheus_budgets(api: _PrometheusApi, report: ComplianceReport, config: Any | None, at: float) -> None:
    limits = api.by("max by (budget) (spansignals_budget_limit_usd)", "budget", at)
    spent = api.by("sum by (budget) (spansignals_budget_spent_usd)", "budget", at)
    projected = api.by("sum by (budget) (spansignals_budget_projected_usd)", "budget", at)
    configured = {b.name: float(b.limit_usd) for b in config.budgets} if config is not None else {}
    for name in list(configured) + sorted(set(limits) - set(configured)):
        budget = BudgetSpend(name=name, limit_usd=limits.get(name, configured.get(name)))
        budget.spent_usd, budget.projected_usd = spent.get(name), projected.get(name)
        if budget.spent_usd is None:
            budget.notes.append(
                f'no spansignals_budget_spent_usd{{budget="{name}"}} sample now: '
                "no process is tracking this budget"
            )
        elif budget.limit_usd:
            budget.utilization = budget.spent_usd / budget.limit_usd
        report.budgets.append(budget)


# --- a collector's /metrics ---------------------------------------------------------------------


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (s.name, dict(s.labels), float(s.value))
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]


def report_from_collector(
    url: str, config: Any | None, *, now: float | None = None, timeout: float = 10.0
) -> ComplianceReport:
    """The report from one running process's ``/metrics`` (counters since it started)."""
    metrics_url = url.rstrip("/")
    if not metrics_url.endswith("/metrics"):
        metrics_url += "/metrics"
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout) as resp:
            text = resp.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        raise ReportSourceError(f"cannot read {metrics_url}: {getattr(exc, 'reason', exc)}") from None
    try:
        samples = _samples(text)
    except Exception:
        raise ReportSourceError(f"{metrics_url} is not Prometheus exposition text") from None
    at = time.time() if now is None else now
    report = ComplianceReport(
        source=f"collector {metrics_url}", period="since process start", generated_at=at
    )
    sums: dict[tuple[str, str], float] = {}
    gauges: dict[tuple[str, str], float] = {}
    burn: dict[str, list[BurnWindow]] = {}
    for name, labels, value in samples:
        key = labels.get("slo") or labels.get("budget") or labels.get("provider") or ""
        if name in (
            "spansignals_slo_events_total",
            "spansignals_slo_bad_events_total",
            "spansignals_slo_excluded_events_total",
            "spansignals_cost_usd_total",
            "spansignals_budget_spent_usd",
            "spansignals_budget_projected_usd",
        ):
            sums[(name, key)] = sums.get((name, key), 0.0) + value
        elif name == "spansignals_slo_burn_rate":
            burn.setdefault(key, []).append(BurnWindow(burn_rate=value, label=labels.get("window")))
        elif name.startswith(("spansignals_slo_", "spansignals_budget_")):
            gauges[(name, key)] = value
    configured = {s.name: s for s in config.slos} if config is not None else {}
    seen = {k for n, k in sums if n == "spansignals_slo_events_total"} | {k for n, k in gauges if "slo_" in n}
    for name in list(configured) + sorted(seen - set(configured)):
        slo = SloCompliance(name=name)
        cfg = configured.get(name)
        slo.objective = (
            cfg.objective if cfg is not None else gauges.get(("spansignals_slo_objective_ratio", name))
        )
        if cfg is not None:
            slo.sli = cfg.sli if cfg.latency_threshold is None else f"latency <= {cfg.latency_threshold:g}s"
        if ("spansignals_slo_events_total", name) not in sums:
            slo.notes.append(
                "no events since the process started (no span matched, or the SLO is not configured there)"
            )
        else:
            slo.events = sums[("spansignals_slo_events_total", name)]
            slo.bad_events = sums.get(("spansignals_slo_bad_events_total", name), 0.0)
            slo.excluded_events = sums.get(("spansignals_slo_excluded_events_total", name), 0.0)
            _finish(slo)
        remaining = gauges.get(("spansignals_slo_error_budget_remaining_ratio", name))
        if remaining is not None:
            slo.error_budget_remaining = remaining  # the process's own rolling period
        slo.worst_windows = sorted(burn.get(name, []), key=lambda b: b.burn_rate, reverse=True)[
            :_WORST_WINDOWS
        ]
        report.slos.append(slo)
    budgets = {k for n, k in gauges if n.startswith("spansignals_budget_")} | {
        b.name for b in (config.budgets if config is not None else [])
    }
    for name in sorted(budgets):
        budget = BudgetSpend(
            name=name,
            limit_usd=gauges.get(("spansignals_budget_limit_usd", name)),
            spent_usd=sums.get(("spansignals_budget_spent_usd", name)),
            projected_usd=sums.get(("spansignals_budget_projected_usd", name)),
        )
        if budget.spent_usd is None:
            budget.notes.append("this process does not track the budget")
        elif budget.limit_usd:
            budget.utilization = budget.spent_usd / budget.limit_usd
        report.budgets.append(budget)
    report.cost_by_provider_usd = {k: v for (n, k), v in sums.items() if n == "spansignals_cost_usd_total"}
    report.notes.append(
        "counters cover the time since the process started; budget left and burn rates are the process's "
        "in-process rolling windows (use --prometheus for a fixed period across restarts and instances)"
    )
    return report


# --- CLI ----------------------------------------------------------------------------------------


def run_report(args: Any) -> int:
    """``spansignals report``: print the report; 1 when the source cannot be read, 2 on bad input."""
    from ._report_format import render
    from .config import ConfigError, load_config
    from .config._types import parse_duration

    config = None
    if args.config:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    try:
        period_s = parse_duration(args.period)
    except ValueError as exc:
        print(f"spansignals report: --period: {exc}", file=sys.stderr)
        return 2
    if period_s < 3600:
        print("spansignals report: --period must be at least 1h", file=sys.stderr)
        return 2
    try:
        if args.prometheus:
            report = report_from_prometheus(args.prometheus, config, period_s)
        else:
            report = report_from_collector(args.collector, config)
    except ReportSourceError as exc:
        print(f"spansignals report: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(report, args.format))
    return 0
