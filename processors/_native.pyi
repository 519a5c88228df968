"""Types of the native module (_native.c); see collector/spanscan.py and red.py.

``scan`` raises TypeError for a ``view_type`` that is not a class written in Python over
``object`` with ``__slots__`` (and no ``__dict__``) holding every slot it sets; ``bucket_durations``
for a ``base_type`` without the seven slots it reads, or ``bounds`` that are not a sequence of
exact floats. A slot must be the class's own or a base's: one borrowed from another class is
refused (its offset is in that class's layout).
"""

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
def bucket_durations(
    views: Sequence[Any], base_type: type[Any], bounds: Sequence[float]
) -> (
    tuple[dict[tuple[str, str, int, int], tuple[dict[int, int], int, float, float, float]], list[Any]] | None
): ...
