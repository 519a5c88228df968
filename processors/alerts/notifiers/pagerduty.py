"""PagerDuty Events API v2 notifier: trigger, acknowledge and resolve with a stable ``dedup_key``.

One event per alert; ``dedup_key`` is ``spansignals-<fingerprint>`` so re-sends and retries
update the same incident and a resolution closes it. Priority maps to PagerDuty severity:
P1 critical, P2 error, P3 warning, P4 info. PagerDuty answers 202; 400 is permanent; 429 and
5xx are retried. The routing key is a secret: never logged.
"""

from __future__ import annotations

from typing import Any

from ..notification import AlertSnapshot, Notification
from ._format import rfc3339
from .base import HttpPoster

__all__ = ["PagerDutyNotifier", "dedup_key"]

_SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}


def dedup_key(alert: AlertSnapshot) -> str:
    """The incident key of an alert (stable across re-sends and restarts)."""
    return f"spansignals-{alert.fingerprint}"


class PagerDutyNotifier:
    """Sends events to one PagerDuty service integration."""

    kind = "pagerduty"

    def __init__(
        self,
        routing_key: str,
        url: str = "https://events.pagerduty.com/v2/enqueue",
        *,
        poster: HttpPoster | None = None,
    ) -> None:
        self._key = routing_key
        self.url = url
        self._poster = poster or HttpPoster()

    def event(self, alert: AlertSnapshot, notification: Notification) -> dict[str, Any]:
        """One Events v2 body."""
        if alert.status == "resolved":
            action = "resolve"
        elif notification.reason == "acknowledge":
            action = "acknowledge"
        else:
            action = "trigger"
        body: dict[str, Any] = {
            "routing_key": self._key,
            "event_action": action,
            "dedup_key": dedup_key(alert),
        }
        if action == "trigger":
            labels = alert.labels
            body["payload"] = {
                "summary": alert.summary[:1024],
                "source": labels.get("service_name") or labels.get("instance") or "spansignals",
                "severity": _SEVERITY.get(labels.get("priority", ""), "warning"),
                "timestamp": rfc3339(alert.starts_at),
                "component": labels.get("provider") or labels.get("budget") or labels.get("slo") or None,
                "group": labels.get("service_name") or None,
                "class": labels.get("alertname"),
                "custom_details": {
                    "labels": dict(labels),
                    "annotations": dict(alert.annotations),
                    "value": alert.value,
                    "escalated": notification.reason == "escalation",
                },
            }
            body["payload"] = {k: v for k, v in body["payload"].items() if v is not None}
            body["client"] = "spansignals"
        return body

    def send(self, notification: Notification) -> None:
        for alert in notification.alerts:
            self._poster.post_json(self.url, self.event(alert, notification), what="pagerduty")

    def close(self) -> None:
        self._poster.close()
