"""Prometheus recording and alerting rules from the configuration (``spansignals rules``).

The same ``slos:``, ``budgets:`` and ``ratelimits:`` definitions that drive the in-process
processors become rules for Prometheus 2.42 (classic PromQL only), which holds the global view
when N collectors each see part of the traffic: every expression aggregates with
``sum by`` / ``min by`` / ``max by`` over the labels that matter, so per-instance series (and
their ``instance``, ``job``, ``otel_scope_name``, ``otel_scope_version`` labels) add up.

**SLOs** (one group per SLO, Sloth-compatible names and labels, so Sloth's Grafana dashboards
work): ``slo:sli_error:ratio_rate<window>`` for 5m, 30m, 1h, 2h, 6h, 1d, 3d, every alert window and
the period, computed directly as ``sum(rate(bad[w])) / sum(rate(events[w]))`` over
``spansignals_slo_bad_events_total`` / ``spansignals_slo_events_total`` (maintenance exclusions
are already left out of those counters); ``slo:objective:ratio``, ``slo:error_budget:ratio``,
``slo:time_period:days``, ``slo:current_burn_rate:ratio`` (5m), ``slo:period_burn_rate:ratio``,
``slo:period_error_budget_remaining:ratio`` and ``sloth_slo_info``. Every series carries
``sloth_id`` = ``sloth_slo`` = the SLO name, ``sloth_service`` (the SLO's single ``match.service``,
else ``service.name``, else ``spansignals``) and our own ``slo`` label; the SLI ratios also carry
``sloth_window``. Alerts: one ``SpansignalsSloBurnRatePage`` (``severity: critical``) or
``SpansignalsSloBurnRateTicket`` (``severity: warning``) rule per burn condition, labelled with
``burn_rate_threshold``, ``long_window`` and ``short_window``; a condition fires while the error
ratio over both windows is ``>= factor * (1 - objective)``. The threshold literal is computed in
decimal, as in-process, less ``1e-12``: ``rate()`` extrapolation leaves a few ulps of float noise
(144/10,000 over 1h comes out as 0.014399999999999998), which must not keep a condition quiet
exactly at its threshold.

**Other signals** (alert names shared with the in-process defaults of the alerting engine):
budgets (``spansignals:budget_utilization:ratio`` = summed spend over the limit, with
``SpansignalsBudgetWarning`` / ``Critical`` / ``Emergency`` at each budget's thresholds, and
``SpansignalsBudgetProjectedOverspend`` when the summed projection exceeds the limit for 15m);
rate limits (``spansignals:ratelimit_remaining:ratio`` and ``SpansignalsRateLimitLow`` below 10%
for 1m; ``SpansignalsRateLimitExhaustionForecast`` when ``predict_linear`` over 30m says the
quota runs out within 1h and no reset is due in that hour); ``SpansignalsBreakerOpen`` while a
breaker is open. Finally ``alerts.rules`` entries over metric signals are rendered as they are.

Alerts follow ``alerts.default_rules`` and each entry's ``alerts`` switch; recording rules are
always emitted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import yaml

from ._slo_windows import window_label
from .slo import RATIO_SLACK, STANDARD_WINDOWS_S, error_ratio_threshold

__all__ = ["render_rules", "rule_groups"]

EVENTS = "spansignals_slo_events_total"
BAD_EVENTS = "spansignals_slo_bad_events_total"
_SEVERITY = {"page": "critical", "ticket": "warning"}
_ALERT_NAME = {"page": "SpansignalsSloBurnRatePage", "ticket": "SpansignalsSloBurnRateTicket"}
_RATELIMIT_KEYS = "service_name, provider, resource"
_RATELIMIT_LOW_RATIO = 0.1
_FORECAST_RANGE = "30m"
_FORECAST_HORIZON_S = 3600


def _q(value: str) -> str:
    """A PromQL / YAML-safe double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _num(value: float | Decimal) -> str:
    """A float literal without exponent noise (0.0144, not 0.014400000000000001)."""
    text = format(Decimal(repr(float(value))).normalize(), "f")
    return text if text not in ("-0", "") else "0"


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value))


def _pct(ratio: float | Decimal) -> str:
    """``0.0144`` → ``1.44`` (exact decimal percent for annotations)."""
    return _num(Decimal(100) * (ratio if isinstance(ratio, Decimal) else _decimal(ratio)))


def _sloth_service(slo: Any, config: Any) -> str:
    services = slo.match.service or []
    if len(services) == 1:
        return str(services[0])
    return config.service.name or "spansignals"


def _slo_group_rules(slo: Any, config: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    name = slo.name
    ident = {"sloth_id": name, "sloth_service": _sloth_service(slo, config), "sloth_slo": name, "slo": name}
    sel = f"{{slo={_q(name)}}}"
    sloth_sel = f"{{sloth_id={_q(name)}, sloth_service={_q(ident['sloth_service'])}, sloth_slo={_q(name)}}}"
    windows = {w for w in STANDARD_WINDOWS_S if w <= slo.period}
    for alert in slo.burn_alerts:
        windows.update((alert.long_window, alert.short_window))
    windows.add(slo.period)
    period = window_label(slo.period)
    recordings: list[dict[str, Any]] = []
    for seconds in sorted(windows):
        w = window_label(seconds)
        recordings.append(
            {
                "record": f"slo:sli_error:ratio_rate{w}",
                "expr": (
                    f"sum by (slo) (rate({BAD_EVENTS}{sel}[{w}]))\n/\n"
                    f"sum by (slo) (rate({EVENTS}{sel}[{w}]))\n"
                ),
                "labels": {**ident, "sloth_window": w},
            }
        )
    budget = Decimal(1) - _decimal(slo.objective)
    meta = [
        {"record": "slo:objective:ratio", "expr": f"vector({_num(slo.objective)})", "labels": dict(ident)},
        {"record": "slo:error_budget:ratio", "expr": f"vector({_num(budget)})", "labels": dict(ident)},
        {
            "record": "slo:time_period:days",
            "expr": f"vector({_num(slo.period / 86400)})",
            "labels": dict(ident),
        },
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": (
                f"slo:sli_error:ratio_rate5m{sloth_sel}\n"
                f"/ on (sloth_id, sloth_slo, sloth_service) group_left\n"
                f"slo:error_budget:ratio{sloth_sel}\n"
            ),
            "labels": dict(ident),
        },
        {
            "record": "slo:period_burn_rate:ratio",
            "expr": (
                f"slo:sli_error:ratio_rate{period}{sloth_sel}\n"
                f"/ on (sloth_id, sloth_slo, sloth_service) group_left\n"
                f"slo:error_budget:ratio{sloth_sel}\n"
            ),
            "labels": dict(ident),
        },
        {
            "record": "slo:period_error_budget_remaining:ratio",
            "expr": f"1 - slo:period_burn_rate:ratio{sloth_sel}",
            "labels": dict(ident),
        },
        {
            "record": "sloth_slo_info",
            "expr": "vector(1)",
            "labels": {
                **ident,
                "sloth_mode": "spansignals",
                "sloth_spec": "spansignals/v1",
                "sloth_version": "spansignals",
                "sloth_objective": _num(Decimal(100) * _decimal(slo.objective)),
                "sli": slo.sli,
            },
        },
    ]
    alerts: list[dict[str, Any]] = []
    if slo.alerts and config.alerts.default_rules:
        for alert in slo.burn_alerts:
            threshold = error_ratio_threshold(alert.factor, slo.objective)
            long_w, short_w = window_label(alert.long_window), window_label(alert.short_window)
            factor = _num(alert.factor)
            limit = f"{_num(threshold)} - {RATIO_SLACK:g}"
            ratio = "slo:sli_error:ratio_rate"
            alerts.append(
                {
                    "alert": _ALERT_NAME[alert.severity],
                    "expr": (
                        f"max without (sloth_window) ({ratio}{long_w}{sloth_sel} >= {limit})\n"
                        f"and\n"
                        f"max without (sloth_window) ({ratio}{short_w}{sloth_sel} >= {limit})\n"
                    ),
                    "labels": {
                        "severity": _SEVERITY[alert.severity],
                        "slo_severity": alert.severity,
                        "slo": name,
                        "sli": slo.sli,
                        "burn_rate_threshold": factor,
                        "long_window": long_w,
                        "short_window": short_w,
                    },
                    "annotations": {
                        "summary": f"SLO {name} burns its error budget {factor}x too fast ({alert.severity})",
                        "description": (
                            f"The {slo.sli} error ratio of SLO {name} is "
                            f"{{{{ $value | humanizePercentage }}}} over the last {long_w} and above "
                            f"{_pct(threshold)}% over the last {short_w} too ({factor}x the {_pct(budget)}% "
                            f"error budget of a {_pct(slo.objective)}% objective over {period})."
                        ),
                    },
                }
            )
    return recordings + meta, alerts


def _budget_rules(config: Any) -> list[dict[str, Any]]:
    budgets = list(config.budgets)
    if not budgets:
        return []
    rules: list[dict[str, Any]] = [
        {
            "record": "spansignals:budget_utilization:ratio",
            "expr": (
                "sum by (budget) (spansignals_budget_spent_usd)\n/\n"
                "max by (budget) (spansignals_budget_limit_usd)\n"
            ),
        }
    ]
    if not config.alerts.default_rules:
        return rules
    for budget in budgets:
        if not budget.alerts:
            continue
        sel = f"{{budget={_q(budget.name)}}}"
        th = budget.thresholds
        levels = (
            ("SpansignalsBudgetWarning", "warning", th.warning, th.critical, "warning"),
            ("SpansignalsBudgetCritical", "critical", th.critical, th.emergency, "critical"),
            ("SpansignalsBudgetEmergency", "critical", th.emergency, None, "emergency"),
        )
        for alert, severity, low, high, word in levels:
            expr = f"spansignals:budget_utilization:ratio{sel} >= {_num(low)}"
            if high is not None:
                expr += f" < {_num(high)}"
            rules.append(
                {
                    "alert": alert,
                    "expr": expr,
                    "labels": {"severity": severity, "budget": budget.name, "level": word},
                    "annotations": {
                        "summary": f"budget {budget.name} passed its {word} threshold ({_pct(low)}%)",
                        "description": (
                            f"Spend this {budget.period} is {{{{ $value | humanizePercentage }}}} of the "
                            f"{_num(budget.limit_usd)} USD limit (summed over every collector)."
                        ),
                    },
                }
            )
        rules.append(
            {
                "alert": "SpansignalsBudgetProjectedOverspend",
                "expr": (
                    f"sum by (budget) (spansignals_budget_projected_usd{sel})\n>\n"
                    f"max by (budget) (spansignals_budget_limit_usd{sel})\n"
                ),
                "for": "15m",
                "labels": {"severity": "warning", "budget": budget.name},
                "annotations": {
                    "summary": f"budget {budget.name} is projected to overspend",
                    "description": (
                        f"Projected spend by the end of this {budget.period} is "
                        "{{ $value | humanize }} USD, "
                        f"above the {_num(budget.limit_usd)} USD limit."
                    ),
                },
            }
        )
    return rules


def _ratelimit_rules(config: Any) -> list[dict[str, Any]]:
    rl = config.ratelimits
    if not rl.enabled:
        return []
    keys = _RATELIMIT_KEYS
    rules: list[dict[str, Any]] = [
        {
            "record": "spansignals:ratelimit_remaining:ratio",
            "expr": (
                f"min by ({keys}) (spansignals_ratelimit_remaining)\n/\n"
                f"max by ({keys}) (spansignals_ratelimit_limit > 0)\n"
            ),
        }
    ]
    if not config.alerts.default_rules:
        return rules
    rules += [
        {
            "alert": "SpansignalsRateLimitLow",
            "expr": f"spansignals:ratelimit_remaining:ratio < {_num(_RATELIMIT_LOW_RATIO)}",
            "for": "1m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.provider }} {{ $labels.resource }} quota below 10%",
                "description": (
                    "{{ $labels.service_name }} has {{ $value | humanizePercentage }} of its "
                    "{{ $labels.provider }} {{ $labels.resource }} rate limit left."
                ),
            },
        },
        {
            "alert": "SpansignalsRateLimitExhaustionForecast",
            "expr": (
                f"min by ({keys}) (predict_linear(spansignals_ratelimit_remaining[{_FORECAST_RANGE}], "
                f"{_FORECAST_HORIZON_S})) < 0\n"
                f"unless on ({keys})\n"
                f"min by ({keys}) (spansignals_ratelimit_reset_seconds) < {_FORECAST_HORIZON_S}\n"
            ),
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.provider }} {{ $labels.resource }} quota will run out within 1h",
                "description": (
                    f"At the trend of the last {_FORECAST_RANGE}, {{{{ $labels.service_name }}}} exhausts "
                    "its {{ $labels.provider }} {{ $labels.resource }} quota within the hour, "
                    "before the next reset."
                ),
            },
        },
    ]
    if rl.breaker.enabled and rl.breaker.alerts:
        rules.append(
            {
                "alert": "SpansignalsBreakerOpen",
                "expr": "max by (service_name, provider) (spansignals_breaker_state) == 2",
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": "circuit breaker for {{ $labels.provider }} is open",
                    "description": (
                        "{{ $labels.service_name }} stopped calling {{ $labels.provider }} "
                        "after repeated failures."
                    ),
                },
            }
        )
    return rules


_TEMPLATE = re.compile(r"\{\{\s*(labels\.|value\b)")


def _user_rules(config: Any) -> list[dict[str, Any]]:
    rules = []
    for rule in config.alerts.rules:
        if ":" in rule.signal or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", rule.signal):
            continue  # event signals (event:slo) only exist in-process
        sel = ", ".join(f"{k}={_q(v)}" for k, v in sorted(rule.match.items()))
        entry: dict[str, Any] = {
            "alert": rule.name,
            "expr": f"{rule.signal}{{{sel}}} {rule.condition.strip()}",
            "labels": {"severity": rule.severity, **rule.labels},
        }
        if rule.for_:
            entry["for"] = window_label(rule.for_)
        if rule.annotations:
            entry["annotations"] = {
                k: _TEMPLATE.sub(lambda m: "{{ $" + m.group(1), v) for k, v in rule.annotations.items()
            }
        rules.append(entry)
    return rules


def rule_groups(config: Any) -> list[dict[str, Any]]:
    """The rule groups (as plain data) for a ``SpansignalsConfig``."""
    groups: list[dict[str, Any]] = []
    for slo in config.slos:
        # One group per SLO: rules in a group run in order, so alerts always see this evaluation's
        # ratios (separate groups run concurrently and could read the previous round's).
        recordings, alerts = _slo_group_rules(slo, config)
        groups.append({"name": f"spansignals-slo-{slo.name}", "rules": recordings + alerts})
    for name, rules in (
        ("spansignals-budgets", _budget_rules(config)),
        ("spansignals-ratelimits", _ratelimit_rules(config)),
        ("spansignals-user-rules", _user_rules(config)),
    ):
        if rules:
            groups.append({"name": name, "rules": rules})
    return groups


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (readable PromQL); no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def render_rules(config: Any, *, header: Iterable[str] = ()) -> str:
    """The rules file (YAML) for ``config``: what ``spansignals rules`` prints."""
    lines = [
        "# Prometheus rules generated by `spansignals rules` from the spansignals configuration.",
        "# Regenerate instead of editing; SLO series follow Sloth's names (slo:sli_error:ratio_rate5m, ...).",
        *(f"# {h}" for h in header),
    ]
    body = yaml.dump(
        {"groups": rule_groups(config)}, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True
    )
    return "\n".join(lines) + "\n" + body
