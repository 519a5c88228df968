"""What notifiers receive: a :class:`Notification` about a group of alert snapshots.

Snapshots are immutable copies taken on the alerting worker, so notifier threads never share
mutable state with the evaluator. ``reason`` says why it was sent: ``group`` (routing),
``escalation`` (an unacknowledged alert reached the next level), ``acknowledge`` (someone
acknowledged; notifiers with an acknowledge action, such as PagerDuty, use it) or ``digest``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .lifecycle import RESOLVED, Alert

__all__ = ["AlertSnapshot", "Notification", "common_items"]


@dataclass(frozen=True)
class AlertSnapshot:
    """An alert as notified: ``status`` is ``firing`` or ``resolved``; times in epoch seconds."""

    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    status: str
    starts_at: float
    ends_at: float | None
    value: float | str | None = None
    acknowledged_by: str | None = None

    @classmethod
    def of(cls, alert: Alert) -> AlertSnapshot:
        """Copy an :class:`~.lifecycle.Alert` (pending counts as firing; callers filter)."""
        return cls(
            alert.fingerprint,
            dict(alert.labels),
            dict(alert.annotations),
            "resolved" if alert.state == RESOLVED else "firing",
            alert.starts_at,
            alert.resolved_at if alert.state == RESOLVED else None,
            alert.value,
            alert.acknowledged_by,
        )

    @property
    def summary(self) -> str:
        """The ``summary`` annotation, else the alert name and its labels."""
        if self.annotations.get("summary"):
            return self.annotations["summary"]
        rest = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if k != "alertname")
        return f"{self.labels.get('alertname', 'alert')} ({rest})"


def common_items(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """Key/value pairs shared by every mapping."""
    if not maps:
        return {}
    common = dict(maps[0])
    for m in maps[1:]:
        common = {k: v for k, v in common.items() if m.get(k) == v}
    return common


@dataclass(frozen=True)
class Notification:
    """One message for one receiver."""

    receiver: str
    group_key: str
    alerts: tuple[AlertSnapshot, ...]
    group_labels: Mapping[str, str] = field(default_factory=dict)
    reason: str = "group"
    at: float = 0.0

    @property
    def status(self) -> str:
        """``firing`` when any alert fires, else ``resolved``."""
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    @property
    def firing(self) -> list[AlertSnapshot]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[AlertSnapshot]:
        return [a for a in self.alerts if a.status == "resolved"]

    @property
    def common_labels(self) -> dict[str, str]:
        return common_items([a.labels for a in self.alerts])

    @property
    def common_annotations(self) -> dict[str, str]:
        return common_items([a.annotations for a in self.alerts])

    @property
    def title(self) -> str:
        """A one-line headline: ``[FIRING:2] LLMBudgetCritical (service_name=checkout)``."""
        status = self.status.upper()
        if self.reason == "escalation" and self.status == "firing":
            status = "ESCALATED"
        elif self.reason == "acknowledge":
            status = "ACKNOWLEDGED"
        count = len(self.firing) if self.status == "firing" else len(self.resolved)
        labels = self.group_labels or {"alertname": self.common_labels.get("alertname", "alerts")}
        shown = " ".join(f"{k}={v}" for k, v in labels.items())
        return f"[{status}:{count}] {shown}"
