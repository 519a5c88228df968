"""Config block ``ratelimits`` (issue #4)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._types import Duration, StrictModel

__all__ = ["BreakerConfig", "GuardConfig", "RateLimitsConfig"]

ACTIVE = False


class BreakerConfig(StrictModel):
    """Circuit breaker per provider (or per ``key``).

    Opens when the failure rate over ``window`` reaches ``failure_rate`` with at least
    ``min_calls`` calls, after ``consecutive_failures`` failures in a row, or when the provider
    says the quota is exhausted; stays open ``open_for`` (or until the provider's reset).
    """

    enabled: bool = True
    failure_rate: float = Field(0.5, gt=0, le=1)
    min_calls: int = Field(20, ge=1)
    window: Duration = 60.0
    consecutive_failures: int = Field(5, ge=1)
    open_for: Duration = 30.0
    half_open_probes: int = Field(1, ge=1)
    key: Literal["provider", "provider_route"] = "provider"
    failure_status_codes: list[int] = Field(default_factory=lambda: [429, 500, 502, 503, 504])
    alerts: bool = True


class GuardConfig(StrictModel):
    """``guard()``: ``reject`` raises RequestBlocked; ``wait`` waits up to ``max_wait`` for the reset."""

    mode: Literal["reject", "wait"] = "reject"
    max_wait: Duration = 10.0


class RateLimitsConfig(StrictModel):
    """``ratelimits``: ``breaker``, ``guard`` and the header capture switch."""

    enabled: bool = True
    capture_headers: bool = True
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    max_series: int = Field(2000, ge=1)
