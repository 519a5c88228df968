"""Config block ``ratelimits`` (issue #4): header capture, circuit breakers and ``guard()``.

See :mod:`spansignals.processors.ratelimit` (gauges, throttling, breakers) and
:mod:`spansignals.sdk.guard` (the pre-request check).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from ._types import Duration, StrictModel

__all__ = ["BreakerConfig", "GuardConfig", "RateLimitsConfig"]

ACTIVE = True

_STATUS_CLASS = re.compile(r"[1-5][xX][xX]")


def _check_status(code: int | str) -> int | str:
    if isinstance(code, int) and not 100 <= code <= 599:
        raise ValueError(f"status codes must be in 100..599, got {code}")
    if isinstance(code, str) and not _STATUS_CLASS.fullmatch(code):
        raise ValueError(f"expected an integer status or a class like '5xx', got {code!r}")
    return code


StatusCodeOrClass = Annotated[int | str, AfterValidator(_check_status)]
"""An HTTP status (``503``) or a status class (``"5xx"``)."""


def _default_failure_codes() -> list[StatusCodeOrClass]:
    return [429, "5xx"]


class BreakerConfig(StrictModel):
    """Circuit breaker per provider (or per ``key``).

    Opens when the failure rate over ``window`` reaches ``failure_rate`` with at least
    ``min_calls`` calls, after ``consecutive_failures`` failures in a row, or when the provider
    says the quota is exhausted; stays open ``open_for`` (or until the provider's reset).

    ``failure_status_codes`` (default: 429 and every 5xx) lists HTTP statuses that count as the
    provider's failure: integers or classes like ``"5xx"``; other statuses (e.g. 400, 401, 404)
    are the caller's fault and count as successes. ``timeouts_are_failures`` and
    ``connection_errors_are_failures`` (default: true) decide for calls that got no response.
    ``key``: one breaker per ``provider`` or per ``provider_route`` (``url.template`` /
    ``http.route`` when the span has one, else the URL path with ids folded to ``{id}``).
    """

    enabled: bool = True
    failure_rate: float = Field(0.5, gt=0, le=1)
    min_calls: int = Field(20, ge=1)
    window: Duration = 60.0
    consecutive_failures: int = Field(5, ge=1)
    open_for: Duration = 30.0
    half_open_probes: int = Field(1, ge=1)
    key: Literal["provider", "provider_route"] = "provider"
    failure_status_codes: list[StatusCodeOrClass] = Field(default_factory=_default_failure_codes)
    timeouts_are_failures: bool = True
    connection_errors_are_failures: bool = True
    alerts: bool = True


class GuardConfig(StrictModel):
    """``guard()``: ``reject`` raises RequestBlocked; ``wait`` waits up to ``max_wait`` for the reset."""

    mode: Literal["reject", "wait"] = "reject"
    max_wait: Duration = 10.0


class RateLimitsConfig(StrictModel):
    """``ratelimits``: ``breaker``, ``guard`` and the header capture switch.

    ``capture_headers`` (default: true): the httpx hooks record the known rate-limit headers
    (and ``Retry-After``) of provider responses as ``http.response.header.<name>`` attributes.
    ``max_series`` caps every rate-limit metric (default 2000).
    """

    enabled: bool = True
    capture_headers: bool = True
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    max_series: int = Field(2000, ge=1)
