"""The per-SLO part of :mod:`spansignals.processors.slo`: selector, classifier, maintenance,
burn conditions and windows, precomputed once from an ``slos:`` entry.

Kept apart from the processor so the span path reads as a few lookups on these objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from ._slo_windows import SloWindows, window_label
from .config.alerts import MaintenanceConfig
from .config.slos import SloConfig
from .schedule import ActiveCache, MaintenanceWindow
from .view import KIND_NAMES, STATUS_ERROR, SpanView

__all__ = ["RATIO_SLACK", "STANDARD_WINDOWS_S", "BurnCondition", "SloDefinition", "error_ratio_threshold"]

STANDARD_WINDOWS_S: tuple[float, ...] = (300.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0, 259200.0)
"""The windows every SLO reports a burn rate for: 5m, 30m, 1h, 2h, 6h, 1d, 3d (plus its period)."""

RATIO_SLACK = 1e-12
"""Burn conditions compare ``ratio >= threshold - RATIO_SLACK``: float sums of adjusted counts (and
Prometheus' ``rate()``) are a few ulps off, which must not keep a condition quiet at its threshold."""

_MAINTENANCE_MATCH_KEYS = frozenset({"slo", "service", "service_name"})
_STATUS_ATTRS = ("http.response.status_code", "http.status_code")


def error_ratio_threshold(factor: float, objective: float) -> float:
    """``factor * (1 - objective)`` computed in decimal (``14.4, 0.999`` → exactly ``0.0144``)."""
    return float(Decimal(repr(factor)) * (Decimal(1) - Decimal(repr(objective))))


class BurnCondition:
    """One burn condition of one SLO; ``threshold`` is the error ratio (less the slack) both windows
    must reach."""

    __slots__ = ("factor", "label", "long_s", "severity", "short_s", "threshold")

    def __init__(self, severity: str, factor: float, long_s: float, short_s: float, objective: float) -> None:
        self.severity = severity
        self.factor = factor
        self.long_s = long_s
        self.short_s = short_s
        self.threshold = error_ratio_threshold(factor, objective) - RATIO_SLACK
        self.label = f"{factor:g}x {window_label(long_s)}/{window_label(short_s)}"


class SloDefinition:
    """Per-SLO precomputed matcher, classifier, maintenance and windows; ``state`` is the last
    evaluated condition state (``ok``/``ticket``/``page``)."""

    def __init__(self, config: SloConfig, maintenance: Sequence[MaintenanceConfig]) -> None:
        self.config = config
        self.name = config.name
        m = config.match
        self.services = frozenset(m.service) if m.service else None
        self.span_names = frozenset(m.span_name) if m.span_name else None
        self.kinds = (
            frozenset(KIND_NAMES.index(f"SPAN_KIND_{k.upper()}") for k in m.span_kind)
            if m.span_kind
            else None
        )
        self.routes = frozenset(m.route) if m.route else None
        self.providers = frozenset(m.provider) if m.provider else None
        self.attributes = tuple(m.attributes.items())
        self.dynamic = bool(self.routes or self.providers or self.attributes)
        # Only a provider selector beyond the static ones: the span path tests it inline.
        self.providers_only = self.providers is not None and self.routes is None and not self.attributes
        self.latency = config.latency_threshold
        self.bad_codes = frozenset(config.bad_status_codes) if config.bad_status_codes else None
        self.objective = config.objective
        self.budget = float(Decimal(1) - Decimal(repr(config.objective)))
        self.conditions = tuple(
            BurnCondition(a.severity, a.factor, a.long_window, a.short_window, config.objective)
            for a in config.burn_alerts
        )
        windows = {w for w in STANDARD_WINDOWS_S if w <= config.period}
        for c in self.conditions:
            windows.update((c.long_s, c.short_s))
        self.windows = SloWindows(sorted(windows), config.period)
        self.period = config.period
        # Maintenance: windows that always apply to this SLO, and ones limited to some services.
        applicable = [*config.maintenance] + ([*maintenance] if config.exclude_maintenance else [])
        unconditional: list[MaintenanceWindow] = []
        per_service: list[tuple[frozenset[str], ActiveCache]] = []
        for entry in applicable:
            match = entry.match
            if set(match) - _MAINTENANCE_MATCH_KEYS:
                continue  # concerns alerts only
            if "slo" in match and match["slo"] != self.name:
                continue
            services = {v for k, v in match.items() if k in ("service", "service_name")}
            window = MaintenanceWindow.from_config(entry)
            if services:
                if len(services) == 1:
                    per_service.append((frozenset(services), ActiveCache([window])))
            else:
                unconditional.append(window)
        self.maintenance = ActiveCache(unconditional) if unconditional else None
        self.maintenance_by_service = tuple(per_service)
        self.has_maintenance = bool(unconditional or per_service)
        self.state = "ok"

    def static_match(self, service: str, name: str, kind: int) -> bool:
        return (
            (self.services is None or service in self.services)
            and (self.span_names is None or name in self.span_names)
            and (self.kinds is None or kind in self.kinds)
        )

    def dynamic_match(self, view: SpanView, provider: object) -> bool:
        attrs = view.attributes
        if self.routes is not None and attrs.get("http.route") not in self.routes:
            return False
        for key, expected in self.attributes:
            value = attrs.get(key)
            if value is None:
                value = view.resource.get(key)
            if value is None or str(value) != expected:
                return False
        return self.providers is None or provider in self.providers

    def is_bad(self, view: SpanView) -> bool:
        if self.latency is not None:
            return view.duration_s > self.latency
        if self.bad_codes is not None:
            attrs = view.attributes
            for key in _STATUS_ATTRS:
                code = attrs.get(key)
                if code is not None:
                    try:
                        return int(code) in self.bad_codes
                    except (TypeError, ValueError):
                        break
        return view.status_code == STATUS_ERROR

    def maintenance_at(self, t: float, service: str) -> str | None:
        if self.maintenance is not None:
            name = self.maintenance.which(t)
            if name is not None:
                return name
        for services, cache in self.maintenance_by_service:
            if service in services:
                name = cache.which(t)
                if name is not None:
                    return name
        return None
