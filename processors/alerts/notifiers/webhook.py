"""Generic webhook notifier, signed per the Standard Webhooks specification.

Body: the Alertmanager webhook shape (version 4) plus ``reason``. Headers: ``webhook-id``
(stable for one notification across retries, so receivers can deduplicate), ``webhook-timestamp``
(seconds, per attempt) and ``webhook-signature`` = ``v1,`` + base64 HMAC-SHA256 over
``"{id}.{timestamp}.{body}"`` with the secret (a ``whsec_``-prefixed base64 secret is decoded, as
the spec's libraries do; any other string is used as UTF-8 bytes). Without a secret the
request is unsigned. Extra headers are secrets and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping

from ..notification import Notification
from ._format import group_payload
from .base import HttpPoster

__all__ = ["WebhookNotifier", "sign", "verify"]


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = 300.0,
) -> bool:
    """Check a signed request as a receiver would (used by tests and the example)."""
    msg_id, ts = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not msg_id or not ts.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(ts)) > tolerance:
        return False
    expected = sign(secret, msg_id, int(ts), body).split(",", 1)[1]
    for candidate in headers.get("webhook-signature", "").split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


class WebhookNotifier:
    """POSTs signed JSON to one URL."""

    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        headers: Mapping[str, str] | None = None,
        poster: HttpPoster | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._secret = secret
        self._headers = dict(headers or {})
        self._poster = poster or HttpPoster()
        self._clock = clock

    @staticmethod
    def message_id(notification: Notification) -> str:
        """Stable per notification: the same on every retry."""
        digest = hashlib.sha256(
            f"{notification.receiver}|{notification.group_key}|{notification.at}|{notification.reason}".encode()
        ).hexdigest()[:26]
        return f"msg_{digest}"

    def send(self, notification: Notification) -> None:
        body = json.dumps(group_payload(notification), separators=(",", ":")).encode()
        headers = {"content-type": "application/json", **self._headers}
        if self._secret:
            msg_id = self.message_id(notification)
            ts = int(self._clock())
            headers.update(
                {
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(ts),
                    "webhook-signature": sign(self._secret, msg_id, ts, body),
                }
            )
        self._poster.post(self._url, body, headers, what="webhook")

    def close(self) -> None:
        self._poster.close()
