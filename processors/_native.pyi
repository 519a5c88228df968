"""Types of the native module (_native.c); see collector/spanscan.py and red.py."""

from collections.abc import Callable, Sequence
from typing import Any

def scan(
    body: bytes,
    view_type: type[Any],
    max_attributes: int,
    max_value_bytes: int,
    weight_of: Callable[[str], float],
) -> list[Any] | None: ...
def span_attributes(body: bytes, start: int, end: int) -> dict[str, Any] | None: ...
def group_durations(
    views: Sequence[Any], base_type: type[Any]
) -> tuple[dict[tuple[str, str, int, int], list[float]], list[Any]] | None: ...
