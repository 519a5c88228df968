"""Config block ``slos`` (issue #5)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ._types import Duration, StrictModel, StrList

__all__ = ["BurnAlert", "SloConfig", "SloMatch"]

ACTIVE = False


class SloMatch(StrictModel):
    """Which spans are SLO events; every given field must match."""

    service: StrList | None = None
    span_name: StrList | None = None
    route: StrList | None = None
    span_kind: StrList | None = None
    provider: StrList | None = None
    attributes: dict[str, str] = Field(default_factory=dict)


class BurnAlert(StrictModel):
    """One multi-window burn-rate condition (Google SRE workbook)."""

    severity: Literal["page", "ticket"]
    factor: float = Field(gt=0)
    long_window: Duration
    short_window: Duration


DEFAULT_BURN_ALERTS = (
    BurnAlert(severity="page", factor=14.4, long_window=3600, short_window=300),
    BurnAlert(severity="page", factor=6, long_window=21600, short_window=1800),
    BurnAlert(severity="ticket", factor=3, long_window=86400, short_window=7200),
    BurnAlert(severity="ticket", factor=1, long_window=259200, short_window=21600),
)


class SloConfig(StrictModel):
    """An ``slos`` entry. With ``latency_threshold`` the SLI is latency (bad = slower than the
    threshold), else availability (bad = error status, or the listed HTTP status codes)."""

    name: str = Field(min_length=1)
    match: SloMatch = Field(default_factory=SloMatch)
    objective: float = Field(gt=0, lt=1)
    period: Duration = 30 * 86400.0
    latency_threshold: Duration | None = None
    bad_status_codes: list[int] | None = None
    exclude_maintenance: bool = False
    burn_alerts: list[BurnAlert] = Field(default_factory=lambda: list(DEFAULT_BURN_ALERTS))
    alerts: bool = True

    @model_validator(mode="after")
    def _check(self) -> SloConfig:
        longest = max((a.long_window for a in self.burn_alerts), default=0.0)
        if self.period <= longest:
            raise ValueError(f"period must be longer than the longest alert window ({longest:g}s)")
        return self

    @property
    def sli(self) -> str:
        """``latency`` or ``availability``."""
        return "latency" if self.latency_threshold is not None else "availability"
