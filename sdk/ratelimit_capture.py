"""Rate-limit header capture: the httpx enricher that records provider quota headers on the span.

For every response from a known provider (see :mod:`spansignals.processors.providers`), the
response headers any rate-limit dialect reads (``CAPTURED_HEADERS`` in
:mod:`spansignals.processors.ratelimit_headers`: ``x-ratelimit-*``, ``anthropic-ratelimit-*``,
``ratelimit``, ``ratelimit-policy``, ``retry-after`` …) are set as
``http.response.header.<lowercase-name>`` attributes holding a list of strings, the
semantic-convention form, before the span ends. The rate-limit derivation then reads them the
same way in the app and in the collector.

Built by :func:`build_ratelimit_enricher` for each ``configure()`` when ``ratelimits.enabled``
and ``ratelimits.capture_headers`` are true (the default). Hosts no provider entry knows are
left alone. Only quota headers are captured, never credentials.
"""

from __future__ import annotations

from typing import Any

from spansignals.processors.providers import ProviderInfo
from spansignals.processors.ratelimit_headers import ATTR_HEADER_PREFIX, CAPTURED_HEADERS

__all__ = ["RateLimitHeaderEnricher", "build_ratelimit_enricher"]

_ATTR_OF = {name: ATTR_HEADER_PREFIX + name for name in CAPTURED_HEADERS}
_ATTR_OF_RAW = {name.encode("ascii"): attr for name, attr in _ATTR_OF.items()}


def _captured(headers: Any) -> dict[str, list[str]]:
    """``{attribute: [values]}`` for the captured headers among httpx ``Headers``, a mapping or a
    raw list of byte pairs. httpx headers are scanned undecoded; only matches are decoded."""
    found: dict[str, list[str]] = {}
    raw = getattr(headers, "raw", None)
    if raw is None and isinstance(headers, dict):
        for key, value in headers.items():
            attr = _ATTR_OF.get(str(key).lower())
            if attr is not None and isinstance(value, str):
                found.setdefault(attr, []).append(value)
        return found
    attr_of = _ATTR_OF_RAW
    for key, value in headers if raw is None else raw:
        if isinstance(key, str):
            key = key.encode("latin-1")
        attr = attr_of.get(key if key.islower() else key.lower())
        if attr is not None:
            found.setdefault(attr, []).append(
                value.decode("latin-1") if isinstance(value, bytes) else str(value)
            )
    return found


class RateLimitHeaderEnricher:
    """Captures the known rate-limit response headers of provider responses as span attributes."""

    name = "ratelimit_headers"

    def on_request(self, span: Any, request: Any, provider: ProviderInfo | None) -> Any:
        """Nothing to do before the response."""
        return None

    def on_response(
        self, span: Any, request: Any, response: Any, provider: ProviderInfo | None, state: Any
    ) -> None:
        """Set ``http.response.header.<name>`` (a list of strings) for each captured header present."""
        if provider is None:
            return
        headers = getattr(response, "headers", None)
        if not headers:
            return
        found = _captured(headers)
        if found:
            span.set_attributes(found)


def build_ratelimit_enricher(config: Any, engine: Any) -> RateLimitHeaderEnricher | None:
    """Enricher factory for ``configure()``: ``None`` when capture is turned off."""
    ratelimits = getattr(config, "ratelimits", None)
    if ratelimits is not None and not (ratelimits.enabled and ratelimits.capture_headers):
        return None
    return RateLimitHeaderEnricher()
