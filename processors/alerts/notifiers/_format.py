"""Shared renderings of notifications: timestamps and the Alertmanager-style alert objects."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..notification import AlertSnapshot, Notification

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(at: float | None) -> str:
    """Epoch seconds → RFC 3339 UTC with milliseconds (Alertmanager's zero time for ``None``)."""
    if at is None:
        return ZERO_TIME
    return (
        dt.datetime.fromtimestamp(at, dt.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def alert_object(alert: AlertSnapshot) -> dict[str, Any]:
    """An alert as in Alertmanager's webhook payload (version 4)."""
    return {
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(alert.ends_at),
        "fingerprint": alert.fingerprint,
        "generatorURL": "",
    }


def group_payload(notification: Notification) -> dict[str, Any]:
    """An Alertmanager-webhook-shaped body (what many receivers already parse)."""
    return {
        "version": "4",
        "receiver": notification.receiver,
        "status": notification.status,
        "reason": notification.reason,
        "alerts": [alert_object(a) for a in notification.alerts],
        "groupLabels": dict(notification.group_labels),
        "commonLabels": notification.common_labels,
        "commonAnnotations": notification.common_annotations,
        "groupKey": notification.group_key,
        "truncatedAlerts": 0,
    }


def text_lines(notification: Notification) -> list[str]:
    """One human line per alert."""
    lines = []
    for a in notification.alerts:
        mark = "RESOLVED" if a.status == "resolved" else a.labels.get("severity", "firing").upper()
        line = f"[{mark}] {a.summary}"
        if a.annotations.get("description"):
            line += f" — {a.annotations['description']}"
        lines.append(line)
    return lines
