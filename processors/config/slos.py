"""Config block ``slos`` (issue #5): service level objectives evaluated from spans.

Each entry (:class:`SloConfig`) selects spans (``match``), classifies each one good or bad, and
sets an ``objective`` over a rolling ``period``:

- ``name`` (required): the ``slo`` label of every SLO series.
- ``match`` (default: every span): ``service``, ``span_name``, ``route`` (``http.route``),
  ``span_kind`` (``server``/``SPAN_KIND_SERVER``), ``provider``, ``attributes``; every given
  field must match, a list means any of its values.
- ``latency_threshold`` (default: none): with it the SLI is *latency* (bad = duration strictly
  above the threshold); without it *availability*.
- ``bad_status_codes`` (default: none): availability only; spans whose
  ``http.response.status_code`` is listed are bad too (error status always is).
- ``objective`` (required): the good ratio, strictly between 0 and 1 (``0.999``).
- ``period`` (default: ``30d``): the rolling compliance period.
- ``exclude_maintenance`` (default: false): leave events inside the ``alerts.maintenance``
  windows out of the SLO math. ``maintenance`` (default: none) lists windows for this SLO alone;
  those always apply. See :mod:`spansignals.processors.slo` for the exact semantics.
- ``burn_alerts`` (default: the SRE-workbook set: page 14.4x 1h/5m and 6x 6h/30m, ticket 3x
  1d/2h and 1x 3d/6h): multi-window burn-rate conditions; ``alerts`` (default: true) turns the
  generated Prometheus alerts for this SLO on or off.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ._types import Duration, StrictModel, StrList, _format_duration
from .alerts import MaintenanceConfig

__all__ = ["DEFAULT_BURN_ALERTS", "BurnAlert", "SloConfig", "SloMatch"]

ACTIVE = True

_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")


class SloMatch(StrictModel):
    """Which spans are SLO events; every given field must match (a list: any of its values)."""

    service: StrList | None = None
    span_name: StrList | None = None
    route: StrList | None = None
    span_kind: StrList | None = None
    provider: StrList | None = None
    attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("span_kind")
    @classmethod
    def _kinds(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        out = []
        for kind in v:
            short = kind.lower().removeprefix("span_kind_")
            if short not in _KINDS:
                raise ValueError(f"unknown span kind {kind!r} (expected one of {', '.join(_KINDS)})")
            out.append(short)
        return out


class BurnAlert(StrictModel):
    """One multi-window burn-rate condition (Google SRE workbook, chapter 5): it holds when the
    error budget burns at ``factor`` times the sustainable rate over both windows."""

    severity: Literal["page", "ticket"]
    factor: float = Field(gt=0)
    long_window: Duration
    short_window: Duration

    @model_validator(mode="after")
    def _windows(self) -> BurnAlert:
        if self.short_window <= 0:
            raise ValueError("short_window must be > 0")
        if self.short_window >= self.long_window:
            raise ValueError(
                f"short_window ({_format_duration(self.short_window)}) must be shorter than "
                f"long_window ({_format_duration(self.long_window)})"
            )
        return self


DEFAULT_BURN_ALERTS = (
    BurnAlert(severity="page", factor=14.4, long_window=3600, short_window=300),
    BurnAlert(severity="page", factor=6, long_window=21600, short_window=1800),
    BurnAlert(severity="ticket", factor=3, long_window=86400, short_window=7200),
    BurnAlert(severity="ticket", factor=1, long_window=259200, short_window=21600),
)


class SloConfig(StrictModel):
    """An ``slos`` entry. With ``latency_threshold`` the SLI is latency (bad = slower than the
    threshold), else availability (bad = error status, or the listed HTTP status codes)."""

    name: str = Field(min_length=1, max_length=120)
    match: SloMatch = Field(default_factory=SloMatch)
    objective: float = Field(gt=0, lt=1)
    # burn_alerts and latency_threshold come before the fields checked against them, so those
    # checks are field validators and their errors name the field (slos[0].period); the default
    # period is validated too (it must outlast custom burn_alerts).
    burn_alerts: list[BurnAlert] = Field(default_factory=lambda: list(DEFAULT_BURN_ALERTS))
    period: Duration = Field(30 * 86400.0, validate_default=True)
    latency_threshold: Duration | None = None
    bad_status_codes: list[int] | None = None
    exclude_maintenance: bool = False
    maintenance: list[MaintenanceConfig] = Field(default_factory=list)
    alerts: bool = True

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        if any(not c.isprintable() for c in v) or '"' in v or "\\" in v:
            raise ValueError(
                "must be printable text without quotes or backslashes (it becomes a label value)"
            )
        return v

    @field_validator("bad_status_codes")
    @classmethod
    def _codes(cls, v: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if v is not None:
            wrong = [c for c in v if not 100 <= c <= 599]
            if wrong:
                raise ValueError(f"HTTP status codes are 100..599, got {wrong}")
            if info.data.get("latency_threshold") is not None:
                raise ValueError("applies to availability SLOs only; drop it or latency_threshold")
        return v

    @field_validator("period")
    @classmethod
    def _period(cls, v: float, info: ValidationInfo) -> float:
        if v < 3600:
            raise ValueError(f"period must be at least 1h, got {_format_duration(v)}")
        longest = max((a.long_window for a in info.data.get("burn_alerts") or ()), default=0.0)
        if v <= longest:
            raise ValueError(
                f"period ({_format_duration(v)}) must be longer than the longest burn_alerts "
                f"long_window ({_format_duration(longest)})"
            )
        return v

    @field_validator("latency_threshold")
    @classmethod
    def _threshold(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("latency_threshold must be > 0")
        return v

    @property
    def sli(self) -> str:
        """``latency`` or ``availability``."""
        return "latency" if self.latency_threshold is not None else "availability"
