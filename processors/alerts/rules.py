"""Alert rules: a condition on one signal, held for ``for``, with labels and templated annotations.

An :class:`AlertRule` evaluates one signal of a :class:`~.signals.SignalSnapshot` (a catalogue
metric by its Prometheus name, or ``event:<source>``). Every sample whose labels match the rule's
matchers and whose value satisfies the condition is one *active* instance; its alert labels are
the sample's labels, the rule's labels, ``alertname``, ``severity`` and ``priority``.

A rule may compare against another signal instead of a constant (``compare_to``): the sample of
that signal with the same labels is the threshold (how "projected spend > limit" is written).

Severity maps to a priority: critical → P1, warning → P3, info → P4 unless ``priority`` is given
(P2 is for rules that say so). Templates in labels and annotations: ``{{ labels.budget }}``
(or ``{{ $labels.budget }}``) and ``{{ value }}`` (``{{ $value }}``).
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .signals import Sample, SignalSnapshot

__all__ = [
    "PRIORITY_BY_SEVERITY",
    "AlertRule",
    "Condition",
    "Matchers",
    "check_matcher",
    "labels_match",
    "render_template",
]

PRIORITY_BY_SEVERITY = {"critical": "P1", "warning": "P3", "info": "P4"}

Matchers = Mapping[str, str | frozenset[str]]
"""Label name → required value (or set of allowed values)."""

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
_TEMPLATE = re.compile(r"\{\{\s*\$?(?:labels\.([A-Za-z_][A-Za-z0-9_]*)|(value))\s*\}\}")


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def check_matcher(value: str) -> None:
    """Raise ``ValueError`` if ``value`` is a regex matcher whose pattern does not compile."""
    if value.startswith(("=~", "!~")):
        try:
            _regex(value[2:].strip())
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value[2:].strip()!r}: {exc}") from None


def _holds(want: str, got: str) -> bool:
    if want.startswith("=~"):
        return _regex(want[2:].strip()).fullmatch(got) is not None
    if want.startswith("!~"):
        return _regex(want[2:].strip()).fullmatch(got) is None
    if want.startswith("!="):
        return got != want[2:].strip()
    return got == want


def labels_match(labels: Mapping[str, str], matchers: Matchers, *, literal: bool = False) -> bool:
    """Whether every matcher holds (a missing label is the empty string).

    A value is compared for equality, except (unless ``literal``) Alertmanager-style operators:
    ``"=~regex"`` and ``"!~regex"`` (anchored, as in Alertmanager) and ``"!=value"``.
    """
    for key, want in matchers.items():
        got = labels.get(key, "")
        if isinstance(want, frozenset):
            if got not in want:
                return False
        elif literal or want[:1] not in ("=", "!"):
            if got != want:
                return False
        elif not _holds(want, got):
            return False
    return True


def _format_value(value: float | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def render_template(text: str, labels: Mapping[str, str], value: float | str | None) -> str:
    """Expand ``{{ labels.x }}`` and ``{{ value }}`` (unknown labels render empty)."""
    if "{{" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        if m.group(2):
            return _format_value(value)
        return labels.get(m.group(1), "")

    return _TEMPLATE.sub(sub, text)


@dataclass(frozen=True)
class Condition:
    """``op threshold``: a number, or a word for event states (only ``==``/``!=``)."""

    op: str
    threshold: float | str

    @classmethod
    def parse(cls, text: str) -> Condition:
        """``">= 2"`` → Condition(">=", 2.0); ``"== page"`` → Condition("==", "page")."""
        m = _CONDITION.match(text)
        if not m:
            raise ValueError(f"expected a comparison like '>= 2' or '== page', got {text!r}")
        op, raw = m.groups()
        try:
            return cls(op, float(raw))
        except ValueError:
            if op not in ("==", "!="):
                raise ValueError(f"a word can only be compared with == or !=, got {text!r}") from None
            return cls(op, raw)

    def holds(self, value: float | str, threshold: float | str | None = None) -> bool:
        """Whether ``value`` satisfies the condition (type mismatches never hold)."""
        limit = self.threshold if threshold is None else threshold
        if isinstance(value, str) != isinstance(limit, str):
            return False
        if value != value:  # NaN
            return False
        return bool(_OPS[self.op](value, limit))

    def __str__(self) -> str:
        return f"{self.op} {_format_value(self.threshold)}"


@dataclass(frozen=True)
class AlertRule:
    """One rule (see the module docstring). ``origin`` is ``config`` or ``default``."""

    name: str
    signal: str
    condition: Condition
    matchers: Matchers = field(default_factory=dict)
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    severity: str = "warning"
    priority: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    compare_to: str | None = None
    origin: str = "config"

    @property
    def effective_priority(self) -> str:
        """The rule's priority, or the one its severity maps to."""
        return self.priority or PRIORITY_BY_SEVERITY.get(self.severity, "P3")

    def evaluate(
        self, snapshot: SignalSnapshot, extra_labels: Mapping[str, str] | None = None
    ) -> Iterator[tuple[dict[str, str], dict[str, str], float | str]]:
        """Active instances now: ``(alert labels, annotations, value)``."""
        others: dict[frozenset[tuple[str, str]], float | str] = {}
        if self.compare_to is not None:
            others = {frozenset(s.labels.items()): s.value for s in snapshot.get(self.compare_to)}
        for sample in snapshot.get(self.signal):
            if not labels_match(sample.labels, self.matchers):
                continue
            threshold = None
            if self.compare_to is not None:
                threshold = others.get(frozenset(sample.labels.items()))
                if threshold is None:
                    continue
            if not self.condition.holds(sample.value, threshold):
                continue
            yield self._instance(sample, extra_labels or {})

    def _instance(
        self, sample: Sample, extra: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, str], float | str]:
        labels = {**extra, **sample.labels}
        for key, text in self.labels.items():
            labels[key] = render_template(text, sample.labels, sample.value)
        labels["alertname"] = self.name
        labels["severity"] = self.severity
        labels["priority"] = self.effective_priority
        annotations = {k: render_template(v, labels, sample.value) for k, v in self.annotations.items()}
        return labels, annotations, sample.value
