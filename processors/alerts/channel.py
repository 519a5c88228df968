"""A receiver as the engine sees it: rate limit and digest in front of its delivery workers.

``rate_limit_per_hour`` is a token bucket (capacity = the hourly limit, refilled continuously):
a notification without a token is not sent and is counted ``outcome="rate_limited"``
(resolutions are exempt: a receiver must learn that a problem it heard of is over).
``digest`` collects notifications whose alerts are all of a digest severity (default warning and
info) and sends one summary per interval; critical notifications pass straight through.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from .delivery import DeliveryWorker
from .notification import AlertSnapshot, Notification

__all__ = ["ReceiverChannel"]


class ReceiverChannel:
    """Routes notifications for one receiver to its workers (one per destination URL)."""

    def __init__(
        self,
        name: str,
        workers: Sequence[DeliveryWorker],
        *,
        kind: str = "",
        digest_interval: float | None = None,
        digest_severities: Collection[str] = ("warning", "info"),
        rate_limit_per_hour: int | None = None,
        on_outcome: Callable[[str, str], None] = lambda receiver, outcome: None,
        now: float = 0.0,
    ) -> None:
        self.name = name
        self.kind = kind
        self.workers = tuple(workers)
        self.digest_interval = digest_interval
        self.digest_severities = frozenset(digest_severities)
        self._digest: dict[str, AlertSnapshot] = {}
        self._digest_due = now + (digest_interval or 0.0)
        self._limit = rate_limit_per_hour
        self._tokens = float(rate_limit_per_hour or 0)
        self._refilled_at = now
        self._on_outcome = on_outcome

    def _take_token(self, now: float) -> bool:
        if self._limit is None:
            return True
        self._tokens = min(
            float(self._limit), self._tokens + (now - self._refilled_at) * self._limit / 3600.0
        )
        self._refilled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def offer(self, notification: Notification, now: float) -> None:
        """Send now, hold for the digest, or refuse over the rate limit."""
        if self.digest_interval and all(
            a.labels.get("severity") in self.digest_severities for a in notification.alerts
        ):
            for alert in notification.alerts:
                self._digest[alert.fingerprint] = alert
            return
        self._send(notification, now)

    def _send(self, notification: Notification, now: float) -> None:
        if notification.status == "firing" and not self._take_token(now):
            self._on_outcome(self.name, "rate_limited")
            return
        for worker in self.workers:
            worker.submit(notification)

    def tick(self, now: float) -> None:
        """Send the digest when its interval has passed and it holds anything."""
        if not self.digest_interval or now < self._digest_due:
            return
        self._digest_due = now + self.digest_interval
        if not self._digest:
            return
        alerts = tuple(sorted(self._digest.values(), key=lambda a: (a.status, a.labels.get("alertname", ""))))
        self._digest = {}
        self._send(
            Notification(self.name, f"digest:{self.name}", alerts, {"digest": self.name}, "digest", now), now
        )

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        for worker in self.workers:
            worker.stop(timeout)
