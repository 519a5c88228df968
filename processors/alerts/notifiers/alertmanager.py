"""Alertmanager API v2 notifier: ``POST /api/v2/alerts`` with the alerts as Alertmanager models.

One notifier per Alertmanager instance (the client contract: send to every instance); the
:class:`AlertmanagerFeed` decides what to send: the alerts routed to the receiver, sent when the
set changes and re-sent every ``resend_interval`` while firing, and resolved alerts re-sent for
``resolved_resend_for`` (Alertmanager ignores duplicates). A firing alert's ``endsAt`` lies
``4 * resend_interval`` ahead so Alertmanager resolves it by itself if we stop sending.
Grouping, silencing and delivery are then Alertmanager's job.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..lifecycle import FIRING, RESOLVED, Alert
from ..notification import AlertSnapshot, Notification
from ._format import rfc3339
from .base import HttpPoster

__all__ = ["AlertmanagerFeed", "AlertmanagerNotifier", "alerts_url"]


def alerts_url(base: str) -> str:
    """``http://am:9093`` → ``http://am:9093/api/v2/alerts``."""
    base = base.rstrip("/")
    return base if base.endswith("/api/v2/alerts") else base + "/api/v2/alerts"


class AlertmanagerNotifier:
    """Posts alerts to one Alertmanager instance."""

    kind = "alertmanager"

    def __init__(self, url: str, *, resend_interval: float = 60.0, poster: HttpPoster | None = None) -> None:
        self.url = alerts_url(url)
        self.resend_interval = resend_interval
        self._poster = poster or HttpPoster()

    def payload(self, notification: Notification) -> list[dict[str, Any]]:
        """The ``postableAlerts`` body."""
        out = []
        for a in notification.alerts:
            ends = a.ends_at if a.status == "resolved" else notification.at + 4 * self.resend_interval
            out.append(
                {
                    "labels": dict(a.labels),
                    "annotations": dict(a.annotations),
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": rfc3339(ends),
                    "generatorURL": "",
                }
            )
        return out

    def send(self, notification: Notification) -> None:
        self._poster.post_json(self.url, self.payload(notification), what="alertmanager")

    def close(self) -> None:
        self._poster.close()


class AlertmanagerFeed:
    """Decides when a receiver's alerts are (re-)sent to its Alertmanager instances."""

    def __init__(
        self, receiver: str, *, resend_interval: float = 60.0, resolved_resend_for: float = 900.0
    ) -> None:
        self.receiver = receiver
        self.resend_interval = resend_interval
        self.resolved_resend_for = resolved_resend_for
        self._last_sent_at: float | None = None
        self._last_firing: set[str] = set()
        self._last_resolved: set[str] = set()

    def tick(self, alerts: Iterable[Alert], now: float) -> Notification | None:
        """A notification with every alert to send now, or ``None``."""
        firing = [a for a in alerts if a.state == FIRING]
        resolved = [
            a
            for a in alerts
            if a.state == RESOLVED
            and a.resolved_at is not None
            and now - a.resolved_at <= self.resolved_resend_for
            and (a.fingerprint in self._last_firing or a.fingerprint in self._last_resolved)
        ]
        fset = {a.fingerprint for a in firing}
        rset = {a.fingerprint for a in resolved}
        changed = fset != self._last_firing or not rset <= self._last_resolved
        due = self._last_sent_at is None or now - self._last_sent_at >= self.resend_interval
        if not (firing or resolved) or not (changed or due):
            self._last_firing, self._last_resolved = fset, rset
            return None
        self._last_firing, self._last_resolved = fset, rset
        self._last_sent_at = now
        snaps = tuple(AlertSnapshot.of(a) for a in [*firing, *resolved])
        return Notification(self.receiver, f"alertmanager:{self.receiver}", snaps, {}, "group", now)
