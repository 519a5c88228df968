"""Config blocks ``service``, ``red`` and ``providers``."""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from pydantic import Field, field_validator

from ._types import StrictModel

__all__ = ["DIALECTS", "DimensionConfig", "ProviderConfig", "RedConfig", "ServiceConfig"]

ACTIVE = True

DIALECTS = ("openai", "anthropic", "gemini", "github", "ietf", "generic")


class ServiceConfig(StrictModel):
    """``service``: ``name`` (default: ``OTEL_SERVICE_NAME``, then the SDK default);
    ``resource_attributes`` (default: none) added to the resource."""

    name: str | None = None
    resource_attributes: dict[str, str] = Field(default_factory=dict)


class DimensionConfig(StrictModel):
    """An extra RED label from a span/resource attribute; ``default`` when absent, else omitted."""

    name: str = Field(min_length=1)
    default: str | None = None


class RedConfig(StrictModel):
    """``red``: spanmetrics-compatible RED metrics.

    ``enabled`` (default: true); ``dimensions`` (default: none); ``buckets`` in seconds (default:
    the spanmetrics connector's 2ms…15s); ``max_series`` per metric (default: 2000).
    """

    enabled: bool = True
    dimensions: list[DimensionConfig] = Field(default_factory=list)
    buckets: list[float] | None = None
    max_series: int = Field(2000, ge=1)

    @field_validator("buckets")
    @classmethod
    def _increasing(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            if not v:
                raise ValueError("must not be empty (omit it for the defaults)")
            if any(b <= a for a, b in pairwise(v)):
                raise ValueError(f"must be strictly increasing, got {v}")
        return v


class ProviderConfig(StrictModel):
    """One ``providers`` entry: requests to ``hosts`` (``*.example.com`` wildcards allowed) belong
    to provider ``name``; ``dialect`` picks the response/rate-limit header formats."""

    name: str = Field(min_length=1)
    hosts: list[str] = Field(min_length=1)
    dialect: Literal["openai", "anthropic", "gemini", "github", "ietf", "generic"] = "generic"
    genai: bool | None = None
    """Whether it is an LLM API (default: true for the openai/anthropic/gemini dialects)."""
