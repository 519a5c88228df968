"""Render a :class:`~.report.ComplianceReport` as text, Markdown or JSON."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

__all__ = ["render"]


def _pct(value: float | None, digits: int = 3) -> str:
    """``0.999`` → ``99.9%`` (up to ``digits`` decimals, trailing zeros dropped)."""
    if value is None:
        return "-"
    text = f"{value * 100:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "%"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value - round(value)) < 1e-6 or abs(value) >= 1000 else f"{value:,.2f}"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _status(met: bool | None) -> str:
    return "no data" if met is None else ("MET" if met else "MISSED")


def _window(w: Any) -> str:
    where = w.label if w.label else f"{_when(w.start)} .. {_when(w.end)[11:]}"
    return f"{where}: {w.burn_rate:.2f}x"


def _slo_rows(report: Any) -> list[list[str]]:
    return [
        [
            s.name,
            s.sli or "-",
            _pct(s.objective),
            _pct(s.compliance, 4),
            _status(s.met),
            _pct(s.error_budget_remaining, 1),
            _num(s.events),
            _num(s.bad_events),
            _num(s.excluded_events),
        ]
        for s in report.slos
    ]


_SLO_HEAD = ["SLO", "SLI", "objective", "compliance", "status", "budget left", "events", "bad", "excluded"]
_BUDGET_HEAD = ["budget", "limit USD", "spent USD", "projected USD", "utilization"]


def _budget_rows(report: Any) -> list[list[str]]:
    return [
        [b.name, _usd(b.limit_usd), _usd(b.spent_usd), _usd(b.projected_usd), _pct(b.utilization, 1)]
        for b in report.budgets
    ]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return [fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def _text(report: Any) -> str:
    out = [
        f"SLA compliance report: {report.source}, period {report.period}, at {_when(report.generated_at)}",
        "",
    ]
    if report.slos:
        out += _table(_SLO_HEAD, _slo_rows(report))
        for s in report.slos:
            if s.worst_windows:
                out.append(f"  {s.name} worst burn: " + "; ".join(_window(w) for w in s.worst_windows))
            out += [f"  {s.name}: {note}" for note in s.notes]
        out.append("")
    if report.budgets:
        out += _table(_BUDGET_HEAD, _budget_rows(report))
        out += [f"  {b.name}: {note}" for b in report.budgets for note in b.notes]
        out.append("")
    if report.cost_by_provider_usd:
        costs = sorted(report.cost_by_provider_usd.items(), key=lambda kv: -kv[1])
        out.append("cost by provider (USD): " + ", ".join(f"{p} {_usd(v)}" for p, v in costs))
        out.append("")
    out += [f"note: {n}" for n in report.notes]
    return "\n".join(out).rstrip() + "\n"


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows),
    ]


def _markdown(report: Any) -> str:
    out = [
        "# SLA compliance report",
        "",
        f"Source: {report.source}; period: {report.period}; generated {_when(report.generated_at)}.",
        "",
    ]
    if report.slos:
        out += ["## SLOs", "", *_md_table(_SLO_HEAD, _slo_rows(report)), ""]
        for s in report.slos:
            if s.worst_windows:
                out.append(f"- **{s.name}** worst burn: " + "; ".join(_window(w) for w in s.worst_windows))
            out += [f"- **{s.name}**: {note}" for note in s.notes]
        out.append("")
    if report.budgets:
        out += ["## Budgets", "", *_md_table(_BUDGET_HEAD, _budget_rows(report)), ""]
        out += [f"- **{b.name}**: {note}" for b in report.budgets for note in b.notes]
        out.append("")
    if report.cost_by_provider_usd:
        rows = [[p, _usd(v)] for p, v in sorted(report.cost_by_provider_usd.items(), key=lambda kv: -kv[1])]
        out += ["## Cost by provider", "", *_md_table(["provider", "USD"], rows), ""]
    if report.notes:
        out += ["## Notes", "", *(f"- {n}" for n in report.notes), ""]
    return "\n".join(out).rstrip() + "\n"


def render(report: Any, fmt: str) -> str:
    """``fmt``: ``text``, ``markdown`` or ``json``."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n"
    if fmt == "markdown":
        return _markdown(report)
    if fmt == "text":
        return _text(report)
    raise ValueError(f"unknown report format {fmt!r} (text, markdown, json)")
