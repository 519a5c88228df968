"""Notifier contract and the shared HTTP poster.

A notifier turns a :class:`~..notification.Notification` into one delivery attempt: it returns
on success and raises :class:`DeliveryError` otherwise, saying whether a retry may help and how
long the server asked to wait (``Retry-After``). The retrying, queueing and counting live in
:mod:`..delivery`; notifiers stay simple and synchronous.

:class:`HttpPoster` maps HTTP outcomes the way the destinations document them: 2xx is delivered;
429 and 5xx are retried (``Retry-After`` honoured, seconds or HTTP-date); other 4xx are never
retried; 3xx is an error because redirects are not followed (an SSRF guard); timeouts and
connection errors are retried. Error messages never include URLs (they may hold secrets);
response bodies are read up to a cap.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..notification import Notification
from .ssrf import SsrfError, SsrfPolicy

__all__ = ["DeliveryError", "HttpAnswer", "HttpPoster", "Notifier", "parse_retry_after"]

USER_AGENT = "spansignals-alerts"


@dataclass(frozen=True)
class HttpAnswer:
    """Status, lower-cased headers and (capped) body of a response."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class DeliveryError(Exception):
    """A failed attempt; ``retryable`` and the server's ``retry_after`` (seconds) if any."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Notifier(Protocol):
    """Delivers notifications to one destination."""

    kind: str

    def send(self, notification: Notification) -> None: ...

    def close(self) -> None: ...


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpPoster:
    """POSTs bodies with a timeout, no redirects, and an optional SSRF check before each send.

    Built on :mod:`http.client` rather than httpx on purpose: httpx logs every request URL at
    INFO, and Slack webhook URLs are secrets.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        ssrf: SsrfPolicy | None = None,
        tls_context: ssl.SSLContext | None = None,
        max_response_bytes: int = 65536,
    ) -> None:
        self._timeout = timeout
        self._ssrf = ssrf
        self._tls = tls_context
        self._max_response = max_response_bytes

    def post(self, url: str, body: bytes, headers: Mapping[str, str], *, what: str) -> HttpAnswer:
        """POST ``body``; raise :class:`DeliveryError` unless the answer is 2xx."""
        if self._ssrf is not None:
            try:
                self._ssrf.check_at_send(url)
            except SsrfError as exc:
                raise DeliveryError(f"{what}: refused by SSRF policy: {exc}", retryable=False) from None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DeliveryError(f"{what}: not an http(s) URL", retryable=False)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            context = self._tls or ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=self._timeout, context=context
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self._timeout)
        all_headers = {"user-agent": USER_AGENT, "content-length": str(len(body)), **headers}
        try:
            conn.request("POST", path, body=body, headers=all_headers)
            response = conn.getresponse()
            answer = HttpAnswer(
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(self._max_response),
            )
        except TimeoutError:
            raise DeliveryError(f"{what}: timed out", retryable=True) from None
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryError(f"{what}: {type(exc).__name__}", retryable=True) from None
        finally:
            conn.close()
        status = answer.status
        if 200 <= status < 300:
            return answer
        retry_after = parse_retry_after(answer.headers.get("retry-after"))
        detail = answer.body[:200].decode("utf-8", "replace").replace("\n", " ")
        if status == 429 or status >= 500:
            raise DeliveryError(f"{what}: HTTP {status} {detail}", retryable=True, retry_after=retry_after)
        if 300 <= status < 400:
            raise DeliveryError(f"{what}: HTTP {status} redirect (not followed)", retryable=False)
        raise DeliveryError(f"{what}: HTTP {status} {detail}", retryable=False)

    def post_json(
        self, url: str, payload: Any, headers: Mapping[str, str] | None = None, *, what: str
    ) -> HttpAnswer:
        """POST ``payload`` as JSON (see :meth:`post`)."""
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        return self.post(url, body, {"content-type": "application/json", **(headers or {})}, what=what)

    def close(self) -> None:
        """Nothing to release (one connection per request)."""
