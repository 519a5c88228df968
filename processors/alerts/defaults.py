"""Default alert rules brought by budgets, SLOs and circuit breakers.

- Budgets (``budgets[i].alerts``, default on): ``SpansignalsBudgetWarning`` (state 1, warning),
  ``SpansignalsBudgetCritical`` (state 2, critical), ``SpansignalsBudgetEmergency`` (state 3,
  critical), all on ``spansignals_budget_state``; ``SpansignalsBudgetProjectedOverspend``
  (warning, for 15m) when ``spansignals_budget_projected_usd`` exceeds
  ``spansignals_budget_limit_usd`` for the same budget.
- SLOs (``slos[i].alerts``): ``SpansignalsSloBurnRatePage`` (critical) and
  ``SpansignalsSloBurnRateTicket`` (warning) while the SLO processor's latest event
  (``source="slo"``) for that SLO is in state ``page`` / ``ticket`` (its multi-window,
  multi-burn-rate decision).
- Breakers (``ratelimits.breaker.alerts``): ``SpansignalsBreakerOpen`` (warning) while
  ``spansignals_breaker_state`` is 2 (open).

``alerts.default_rules: false`` turns all of them off; a user rule with the same name replaces one.
"""

from __future__ import annotations

from typing import Any

from .rules import AlertRule, Condition

__all__ = ["default_rules"]


def _names(items: Any) -> frozenset[str]:
    return frozenset(i.name for i in items if getattr(i, "alerts", True))


def default_rules(config: Any) -> list[AlertRule]:
    """The default rules a whole ``SpansignalsConfig`` implies."""
    if not config.alerts.default_rules:
        return []
    rules: list[AlertRule] = []
    budgets = _names(config.budgets)
    if budgets:
        match = {"budget": budgets}
        for name, cond, severity, priority, word in (
            ("SpansignalsBudgetWarning", "== 1", "warning", None, "warning"),
            ("SpansignalsBudgetCritical", "== 2", "critical", None, "critical"),
            ("SpansignalsBudgetEmergency", ">= 3", "critical", "P1", "emergency"),
        ):
            rules.append(
                AlertRule(
                    name,
                    "spansignals_budget_state",
                    Condition.parse(cond),
                    match,
                    severity=severity,
                    priority=priority,
                    origin="default",
                    annotations={
                        "summary": f"budget {{{{ labels.budget }}}} passed its {word} threshold",
                        "description": "spend this period crossed the configured share of the limit",
                    },
                )
            )
        rules.append(
            AlertRule(
                "SpansignalsBudgetProjectedOverspend",
                "spansignals_budget_projected_usd",
                Condition.parse("> 0"),
                match,
                for_s=900.0,
                severity="warning",
                compare_to="spansignals_budget_limit_usd",
                origin="default",
                annotations={
                    "summary": "budget {{ labels.budget }} is projected to overspend",
                    "description": "projected spend by period end is {{ value }} USD, above the limit",
                },
            )
        )
    slos = _names(config.slos)
    if slos:
        for name, state, severity in (
            ("SpansignalsSloBurnRatePage", "page", "critical"),
            ("SpansignalsSloBurnRateTicket", "ticket", "warning"),
        ):
            rules.append(
                AlertRule(
                    name,
                    "event:slo",
                    Condition.parse(f"== {state}"),
                    {"slo": slos},
                    severity=severity,
                    origin="default",
                    annotations={
                        "summary": f"SLO {{{{ labels.slo }}}} is burning its error budget ({state})",
                        "description": "multi-window burn rate above the configured factor",
                    },
                )
            )
    breaker = getattr(config.ratelimits, "breaker", None)
    if breaker is not None and getattr(breaker, "alerts", True):
        rules.append(
            AlertRule(
                "SpansignalsBreakerOpen",
                "spansignals_breaker_state",
                Condition.parse("== 2"),
                severity="warning",
                origin="default",
                annotations={"summary": "circuit breaker for {{ labels.provider }} is open"},
            )
        )
    return rules
