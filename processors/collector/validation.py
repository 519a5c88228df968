"""Which spans inside a well-formed request the collector rejects, and why.

A request that parses is answered 200 / ``OK``; the spans that break a rule below are removed from
it (they are neither derived nor forwarded) and reported in the response's ``partial_success``
(``rejected_spans`` and an ``error_message`` naming each rule broken, the count, and the first
offending span's position), as the OTLP specification asks. Rules:

=====================  ==============================================================================
rule                   a span is rejected when
=====================  ==============================================================================
``trace_id``           it is not exactly 16 bytes, or all zero (the W3C invalid id)
``span_id``            it is not exactly 8 bytes, or all zero
``parent_span_id``     it is neither empty (a root span) nor exactly 8 bytes
``end_before_start``   ``end_time_unix_nano`` < ``start_time_unix_nano``
``attribute_count``    it has more than ``max_attributes`` attributes (default 1024), or its resource
                       has (then every span of that resource is rejected)
``attribute_length``   a string or bytes value (also inside arrays and key-value lists) or a key is
                       longer than ``max_attribute_value_bytes`` (default 1 MiB)
=====================  ==============================================================================

Not rejected: a zero start time, unknown kinds or status codes (derivations map them to
``UNSPECIFIED``/``UNSET``), NaN or negative numbers in attributes (derivations ignore values they
cannot use), and events and links (passed through; no derivation reads them).

Cost: the id, time and count checks run on every span and are a few field reads. The length rule
needs each value's size, so it runs only on requests whose body is larger than
``max_attribute_value_bytes`` (a smaller body cannot hold a longer value), and there only on spans
whose encoded size is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_MAX_ATTRIBUTES",
    "DEFAULT_MAX_ATTRIBUTE_VALUE_BYTES",
    "RULE_MESSAGES",
    "Rejections",
    "SpanLimits",
    "span_rule_broken",
    "values_too_long",
]

DEFAULT_MAX_ATTRIBUTES = 1024
DEFAULT_MAX_ATTRIBUTE_VALUE_BYTES = 1024 * 1024

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)

RULE_MESSAGES = {
    "trace_id": "trace_id must be 16 bytes and not all zero",
    "span_id": "span_id must be 8 bytes and not all zero",
    "parent_span_id": "parent_span_id must be empty or 8 bytes",
    "end_before_start": "end_time_unix_nano is before start_time_unix_nano",
    "attribute_count": "more attributes than the limit",
    "attribute_length": "an attribute key or value is longer than the limit",
}


@dataclass(frozen=True)
class SpanLimits:
    """Per-span caps (see the module docstring)."""

    max_attributes: int = DEFAULT_MAX_ATTRIBUTES
    max_attribute_value_bytes: int = DEFAULT_MAX_ATTRIBUTE_VALUE_BYTES


def span_rule_broken(span: Any, attribute_count: int, limits: SpanLimits) -> str | None:
    """The first rule of the table ``span`` breaks (its key in :data:`RULE_MESSAGES`), else ``None``.

    ``attribute_count`` is ``len(span.attributes)``, which the caller already has. The length rule
    is not checked here (see :func:`values_too_long`).
    """
    trace_id = span.trace_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
        return "trace_id"
    span_id = span.span_id
    if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
        return "span_id"
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        return "parent_span_id"
    if span.end_time_unix_nano < span.start_time_unix_nano:
        return "end_before_start"
    if attribute_count > limits.max_attributes:
        return "attribute_count"
    return None


def values_too_long(kvs: Any, limit: int) -> bool:
    """Whether any key, or any string or bytes value at any depth, in ``kvs`` is over ``limit``."""
    stack: list[Any] = []
    for kv in kvs:
        if len(kv.key) > limit:
            return True
        stack.append(kv.value)
    while stack:
        value = stack.pop()
        which = value.WhichOneof("value")
        if which == "string_value":
            if len(value.string_value) > limit:
                return True
        elif which == "bytes_value":
            if len(value.bytes_value) > limit:
                return True
        elif which == "array_value":
            stack.extend(value.array_value.values)
        elif which == "kvlist_value":
            for kv in value.kvlist_value.values:
                if len(kv.key) > limit:
                    return True
                stack.append(kv.value)
    return False


class Rejections:
    """Tally of rejected spans for one request, turned into the ``partial_success`` message."""

    __slots__ = ("by_rule", "first_path", "total")

    def __init__(self) -> None:
        self.by_rule: Counter[str] = Counter()
        self.first_path = ""
        self.total = 0

    def add(self, rule: str, count: int, path: str) -> None:
        """Count ``count`` spans rejected under ``rule``; ``path`` locates the first of them."""
        self.by_rule[rule] += count
        self.total += count
        if not self.first_path:
            self.first_path = path

    def message(self) -> str:
        """``"3 spans rejected: trace_id must be ... (2); ...; first at resourceSpans[0]..."``."""
        if not self.total:
            return ""
        parts = "; ".join(f"{RULE_MESSAGES[rule]} ({n})" for rule, n in sorted(self.by_rule.items()))
        noun = "span" if self.total == 1 else "spans"
        return f"{self.total} {noun} rejected: {parts}; first at {self.first_path}"
