"""OTel instrument name + unit + kind → the Prometheus name the OTel Prometheus exporter renders.

Alert rules name signals the way users see them scraped (``spansignals_budget_state``), while
families carry OTel names (``spansignals.budget.state``). The rules, as pinned against the real
exporter in tests: dots (and any other invalid character) become ``_``; unit ``s`` appends
``_seconds``, ``By`` ``_bytes``, ``ms`` ``_milliseconds``; ``1`` and ``{...}`` annotations add
nothing; other units are appended as written; counters end in ``_total`` (never doubled).
"""

from __future__ import annotations

import re

__all__ = ["prometheus_label", "prometheus_name"]

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_UNIT_SUFFIX = {
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "min": "minutes",
    "h": "hours",
    "d": "days",
    "%": "percent",
}


def _unit_suffix(unit: str) -> str:
    unit = re.sub(r"\{[^}]*\}", "", unit or "").strip()
    if not unit or unit == "1":
        return ""
    if unit in _UNIT_SUFFIX:
        return _UNIT_SUFFIX[unit]
    return _INVALID.sub("_", unit).strip("_")


def prometheus_name(name: str, unit: str, kind: str) -> str:
    """The series name Prometheus sees for an OTel family (histograms: the base name)."""
    out = _INVALID.sub("_", name)
    suffix = _unit_suffix(unit)
    if suffix and not out.endswith("_" + suffix):
        out = f"{out}_{suffix}"
    if kind == "counter" and not out.endswith("_total"):
        out += "_total"
    return out


def prometheus_label(key: str) -> str:
    """An OTel attribute key as a Prometheus label name (``service.name`` → ``service_name``)."""
    out = _INVALID.sub("_", key)
    return f"key_{out}" if out[:1].isdigit() else out
