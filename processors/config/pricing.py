"""Config blocks ``pricing`` and ``budgets`` (issue #3)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from ._types import Money, StrictModel, StrList, TimeZoneName

__all__ = ["ApiPrice", "BudgetConfig", "BudgetMatch", "BudgetThresholds", "ModelPrice", "PricingConfig"]

ACTIVE = True


class ModelPrice(StrictModel):
    """A ``pricing.models`` entry: USD per million tokens, overriding/adding to genai-prices."""

    provider: str
    model: str
    input_per_mtok: Money
    output_per_mtok: Money = Money(0)
    cache_read_per_mtok: Money | None = None
    cache_write_per_mtok: Money | None = None
    reasoning_per_mtok: Money | None = None
    per_request: Money | None = None
    valid_from: dt.date | None = None


class ApiPrice(StrictModel):
    """A ``pricing.apis`` entry: a per-request price for provider + method + route template."""

    provider: str
    method: str = "*"
    route: str = "*"
    per_request: Money


class PricingConfig(StrictModel):
    """``pricing``: ``models`` and ``apis`` (default: none; LLM prices come from genai-prices)."""

    models: list[ModelPrice] = Field(default_factory=list)
    apis: list[ApiPrice] = Field(default_factory=list)
    usage_from_http: bool = True
    """Whether the in-app httpx hooks read LLM response bodies for token usage (default: true).
    Turn it off when a vendor-SDK instrumentation (OpenLLMetry, OpenLIT, the contrib openai
    instrumentation) already records usage on its own spans, or the same call is counted twice."""


class BudgetMatch(StrictModel):
    """Which spend counts toward a budget; every given field must match (empty: all spend)."""

    provider: StrList | None = None
    model: StrList | None = None
    service: StrList | None = None
    attributes: dict[str, str] = Field(default_factory=dict)


class BudgetThresholds(StrictModel):
    """Utilization ratios of the limit (defaults 0.75 / 0.90 / 0.95), strictly increasing."""

    warning: float = Field(0.75, gt=0)
    critical: float = Field(0.90, gt=0)
    emergency: float = Field(0.95, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> BudgetThresholds:
        if not self.warning < self.critical < self.emergency:
            raise ValueError(
                f"thresholds must increase: warning < critical < emergency, got "
                f"{self.warning} / {self.critical} / {self.emergency}"
            )
        return self


class BudgetConfig(StrictModel):
    """A ``budgets`` entry: a spending limit per calendar-aligned period in a time zone."""

    name: str = Field(min_length=1)
    match: BudgetMatch = Field(default_factory=BudgetMatch)
    period: Literal["day", "week", "month", "year"] = "month"
    timezone: TimeZoneName = "UTC"
    limit_usd: Money
    thresholds: BudgetThresholds = Field(default_factory=BudgetThresholds)
    alerts: bool = True
    """Whether the budget brings its default alert rules (thresholds, projected overspend)."""

    @model_validator(mode="after")
    def _positive(self) -> BudgetConfig:
        if self.limit_usd <= 0:
            raise ValueError("limit_usd must be > 0")
        return self
