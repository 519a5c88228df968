"""Shared field types for the configuration models: durations, money, secrets, label matchers."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

__all__ = [
    "Duration",
    "Money",
    "StrList",
    "StrictModel",
    "TimeZoneName",
    "parse_duration",
]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors; Python-keyword fields use aliases."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def parse_duration(value: Any) -> float:
    """``"90s"``, ``"1h30m"``, ``"100ms"``, ``"30d"``, ``"2w"`` or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 1h, 30d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos, seconds = 0, 0.0
        for match in _DURATION.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_S[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"expected a duration like 30s, 5m, 1h, 30d, got {value!r}")
    else:
        raise ValueError(f"expected a duration like 30s, 5m, 1h, 30d, got {value!r}")
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"duration must be >= 0, got {value!r}")
    return seconds


def _format_duration(seconds: float) -> str:
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_S[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds * 1000:g}ms"


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(_format_duration)]
"""Seconds as a float; written in YAML as ``30s``, ``5m``, ``1h``, ``30d`` or a number of seconds."""


def _parse_money(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("expected an amount in USD")
    try:
        # str() first: a YAML float like 0.0079 must become Decimal("0.0079"), not its binary value
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"expected an amount in USD, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"amount must be a finite number >= 0, got {value!r}")
    return amount


Money = Annotated[Decimal, BeforeValidator(_parse_money), PlainSerializer(str)]
"""An exact USD amount (``Decimal``), never a binary float."""


def _str_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    return value


StrList = Annotated[list[str], BeforeValidator(_str_list)]
"""One string or a list of strings (``provider: openai`` or ``provider: [openai, anthropic]``)."""


def _check_tz(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an IANA time zone name like UTC or Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (expected an IANA name like UTC or Europe/Berlin)"
        ) from None
    return value


TimeZoneName = Annotated[str, BeforeValidator(_check_tz)]
"""An IANA time zone name, checked against the system's tz database."""
