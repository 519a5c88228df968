"""Alert lifecycle: inactive → pending → firing → resolved, one alert per label fingerprint.

Prometheus semantics: an instance that becomes active is *pending*; once active for the rule's
``for`` it is *firing*; when its condition stops holding it is *resolved* (after
``keep_firing_for``, if set), or simply dropped if it was only pending. Resolved alerts are kept
for ``resolved_retention`` (default 15 minutes) so notifiers can re-send the resolution, then
forgotten. Identity is the fingerprint of the full label set, so an alert never exists twice.

Acknowledgement and manual resolution come from the management API: an acknowledged alert stops
escalating; a manually resolved alert is resolved now and does not fire again until its
condition has cleared once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .rules import AlertRule

__all__ = ["Alert", "AlertStore", "fingerprint"]

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit identity of a label set (order-independent)."""
    h = hashlib.sha256()
    for key in sorted(labels):
        h.update(key.encode())
        h.update(b"\xff")
        h.update(labels[key].encode())
        h.update(b"\xfe")
    return h.hexdigest()[:16]


@dataclass
class Alert:
    """One alert instance. Times are wall-clock seconds."""

    labels: dict[str, str]
    annotations: dict[str, str]
    rule: str
    state: str
    active_at: float
    value: float | str | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    last_active_at: float = 0.0
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    manually_resolved: bool = False
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.labels)

    @property
    def starts_at(self) -> float:
        """When the alert started firing (or became active, if still pending)."""
        return self.fired_at if self.fired_at is not None else self.active_at

    def to_dict(self) -> dict[str, object]:
        """JSON-ready view for the management API."""
        return {
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "state": self.state,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "value": self.value,
            "active_at": self.active_at,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at,
        }


class AlertStore:
    """Every alert the rules produced; updated once per evaluation (caller serializes access)."""

    def __init__(self, *, resolved_retention: float = 900.0) -> None:
        self.resolved_retention = resolved_retention
        self._alerts: dict[str, Alert] = {}
        self._by_rule: dict[str, set[str]] = {}
        self._held: set[str] = set()  # manually resolved while the condition still holds

    def apply(
        self,
        rule: AlertRule,
        active: Iterable[tuple[dict[str, str], dict[str, str], float | str]],
        now: float,
    ) -> None:
        """Fold one evaluation of ``rule`` (its active instances now) into the alerts."""
        seen: set[str] = set()
        for labels, notes, value in active:
            fp = fingerprint(labels)
            seen.add(fp)
            if fp in self._held:
                continue
            alert = self._alerts.get(fp)
            if alert is None or alert.state == RESOLVED:
                alert = Alert(labels, notes, rule.name, PENDING, now, value, fingerprint=fp)
                self._alerts[fp] = alert
            alert.annotations = notes
            alert.value = value
            alert.last_active_at = now
            if alert.state == PENDING and now - alert.active_at >= rule.for_s:
                alert.state = FIRING
                alert.fired_at = now
        self._held &= seen  # a held alert whose condition cleared may fire again later
        previous = self._by_rule.get(rule.name, set())
        for fp in previous - seen:
            alert = self._alerts.get(fp)
            if alert is None:
                continue
            if alert.state == PENDING:
                del self._alerts[fp]
            elif alert.state == FIRING and now - alert.last_active_at >= rule.keep_firing_for_s:
                alert.state = RESOLVED
                alert.resolved_at = now
            elif alert.state == FIRING:
                seen.add(fp)  # kept firing
        self._by_rule[rule.name] = {fp for fp in seen | previous if fp in self._alerts}
        self._expire(now)

    def forget_rules(self, keep: Iterable[str]) -> None:
        """Drop alerts of rules no longer configured."""
        names = set(keep)
        for name in [n for n in self._by_rule if n not in names]:
            for fp in self._by_rule.pop(name):
                self._alerts.pop(fp, None)

    def _expire(self, now: float) -> None:
        for fp in [
            fp
            for fp, a in self._alerts.items()
            if a.state == RESOLVED
            and a.resolved_at is not None
            and now - a.resolved_at > self.resolved_retention
        ]:
            del self._alerts[fp]

    def acknowledge(self, fp: str, by: str, now: float) -> Alert | None:
        """Mark an alert acknowledged (stops escalation); ``None`` if unknown."""
        alert = self._alerts.get(fp)
        if alert is None:
            return None
        alert.acknowledged_by = by or "unknown"
        alert.acknowledged_at = now
        return alert

    def resolve(self, fp: str, now: float) -> Alert | None:
        """Resolve an alert by hand; it stays quiet until its condition clears once."""
        alert = self._alerts.get(fp)
        if alert is None:
            return None
        if alert.state != RESOLVED:
            if alert.state == PENDING:
                del self._alerts[fp]
            alert.state = RESOLVED
            alert.resolved_at = now
            alert.manually_resolved = True
            self._held.add(fp)
        return alert

    def get(self, fp: str) -> Alert | None:
        """One alert by fingerprint."""
        return self._alerts.get(fp)

    def alerts(self) -> list[Alert]:
        """Every alert held (pending, firing, recently resolved)."""
        return list(self._alerts.values())

    def counts(self) -> Mapping[tuple[str, str, str], int]:
        """``(alertname, severity, state)`` → number of alerts, for the active-alerts gauge."""
        out: dict[tuple[str, str, str], int] = {}
        for a in self._alerts.values():
            if a.state == RESOLVED:
                continue
            key = (a.labels.get("alertname", a.rule), a.labels.get("severity", ""), a.state)
            out[key] = out.get(key, 0) + 1
        return out
