"""Types of the native span scanner (_spanscan.c); see spanscan.py."""

from collections.abc import Callable
from typing import Any

def scan(
    body: bytes,
    view_type: type[Any],
    max_attributes: int,
    max_value_bytes: int,
    weight_of: Callable[[str], float],
) -> list[Any] | None: ...
def span_attributes(body: bytes, start: int, end: int) -> dict[str, Any]: ...
