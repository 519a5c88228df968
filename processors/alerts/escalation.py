"""Escalation: an unacknowledged firing alert is notified to the next receiver after N minutes.

A route's ``escalation`` is a list of levels ``(after, receiver)``: when an alert routed there has
been firing for ``after`` seconds and nobody acknowledged it, ``receiver`` is notified (once per
level). Muted alerts do not escalate. When an escalated alert resolves, every receiver it was
escalated to gets the resolution. Acknowledging stops further levels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .lifecycle import FIRING, RESOLVED, Alert
from .notification import AlertSnapshot, Notification
from .routing import Route

__all__ = ["EscalationTracker"]


class EscalationTracker:
    """Remembers which levels were sent for which alert on which route."""

    def __init__(self) -> None:
        self._sent: dict[str, dict[tuple[int, int], str]] = {}  # fp -> (route, level) -> receiver

    def tick(
        self,
        alerts: Iterable[Alert],
        now: float,
        routes_for: Callable[[Alert], list[Route]],
        muted: Callable[[Alert], bool],
    ) -> list[Notification]:
        """Escalations and escalated resolutions due at ``now``."""
        out: list[Notification] = []
        present: set[str] = set()
        for alert in alerts:
            present.add(alert.fingerprint)
            sent = self._sent.get(alert.fingerprint)
            if alert.state == RESOLVED:
                if sent:
                    snap = (AlertSnapshot.of(alert),)
                    for receiver in sorted(set(sent.values())):
                        out.append(
                            Notification(
                                receiver, f"escalation:{alert.fingerprint}", snap, {}, "escalation", now
                            )
                        )
                    del self._sent[alert.fingerprint]
                continue
            if alert.state != FIRING or alert.acknowledged_at is not None or alert.fired_at is None:
                continue
            if muted(alert):
                continue
            for route in routes_for(alert):
                for level, (after, receiver) in enumerate(route.escalation):
                    key = (route.index, level)
                    if now - alert.fired_at < after or (sent and key in sent):
                        continue
                    sent = self._sent.setdefault(alert.fingerprint, {})
                    sent[key] = receiver
                    out.append(
                        Notification(
                            receiver,
                            f"escalation:{alert.fingerprint}:{route.index}:{level}",
                            (AlertSnapshot.of(alert),),
                            {"alertname": alert.labels.get("alertname", "")},
                            "escalation",
                            now,
                        )
                    )
        for fp in [fp for fp in self._sent if fp not in present]:
            del self._sent[fp]
        return out

    def escalated_to(self, fingerprint: str) -> list[str]:
        """Receivers an alert has been escalated to so far."""
        return sorted(set(self._sent.get(fingerprint, {}).values()))
