"""The Prometheus text exposition (format 0.0.4) of a producer's families, written directly.

The collector's ``/metrics`` used to go through the OTel Prometheus exporter: each collection
turned every series into an OTel data point, the exporter turned those into ``prometheus_client``
samples (a dict of labels per sample, sorted and escaped again on every scrape), and
``generate_latest`` formatted them. At the default cap (2000 RED series, 17 buckets each) that
was ~1 s of the collector's core per scrape. ``prometheus_client`` custom collectors would avoid
the OTel step but still build a ``Sample`` with a label dict per line and escape every label on
every scrape (``benchmarks/metrics_scrape.py`` measures all three). So this module writes the
text by hand: the label text of each series (``{name="value",...``) is rendered once and kept,
and a scrape only formats numbers.

The series are the ones the OTel exporter produces, by construction:

- metric names come from the exporter's own name and unit mapping (``traces.span.metrics.calls``
  -> ``traces_span_metrics_calls_total``; unit ``s`` -> ``_seconds``; ``1`` and ``{...}``
  nothing); label names are sanitized the same way (``service.name`` -> ``service_name``). The
  functions are imported from the exporter's ``_mapping`` module rather than copied, so the two
  paths cannot drift apart; it is private, and ``tests/processors/test_exposition.py`` renders the
  same families both ways and compares every parsed sample, so a change there fails a test;
- every series carries ``otel_scope_name`` and ``otel_scope_version`` (the producer's scope);
- label values are the exporter's: strings as they are, anything else JSON (the overflow
  series is ``otel_metric_overflow="true"``); ``None`` labels are left out;
- ``target_info`` carries the resource attributes.

Two differences, neither of which changes a series as Prometheus stores it (a label whose
value is empty *is* an absent label there): the exporter wrote empty labels
(``otel_scope_schema_url=""``, and ``""`` for a label another series of the family has), this
writer leaves them out, which also keeps a series' label text independent of its neighbours; and
the exporter cached ``target_info`` from its first scrape, so a first scrape before any span left
it without labels for the process' life, while here it always has the resource's.

Locks: each family's ``snapshot()`` copies its series under the family's lock; formatting
happens after, on the copy. Renders are serialized, so concurrent scrapes do not multiply the
work (and the label caches need no lock of their own).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from itertools import accumulate
from typing import Any

from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_attribute, sanitize_full_name

from .families import CounterFamily, HistogramFamily, MetricFamily

__all__ = ["PrometheusTextWriter", "escape_label_value", "prometheus_name"]

_logger = logging.getLogger(__name__)

_SLACK = 64
"""A family's label cache may hold this many (plus twice its live series) before it is pruned:
series a gauge stopped exporting, or a family reset, must not keep their text forever."""


def prometheus_name(family: MetricFamily) -> str:
    """The metric name the OTel Prometheus exporter gives ``family`` (``_total`` for counters).

    As the exporter does: sanitize the OTel name, map the UCUM unit and append it unless the
    name already ends with it; a counter's ``_total`` goes last.
    """
    name = sanitize_full_name(family.name)
    unit = map_unit(family.unit or "")
    counter = isinstance(family, CounterFamily)
    if counter and name.endswith("_total"):
        name = name[:-6]
    if unit and not name.endswith("_" + unit):
        name += "_" + unit
    return name + "_total" if counter else name


def escape_label_value(value: str) -> str:
    """A label value escaped for the text format: backslash, double quote and line feed."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if '"' in value:
        value = value.replace('"', '\\"')
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_value(value: Any) -> str:
    """The exporter's rendering of an attribute value: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def label_text(labels: Iterable[tuple[str, Any]]) -> str:
    """``name="value",...`` sorted by name, empty and ``None`` values left out (no braces)."""
    pairs = sorted(
        (sanitize_attribute(key), _label_value(value)) for key, value in labels if value is not None
    )
    return ",".join(f'{key}="{escape_label_value(value)}"' for key, value in pairs if value != "")


def _number(value: Any) -> str:
    """A sample value: integers exactly, floats by ``repr`` (Go's ParseFloat reads it back
    exactly), infinities and NaN spelled as the format wants."""
    if type(value) is int:
        return str(value)
    value = float(value)
    if math.isfinite(value):
        return repr(value)
    if value != value:
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def _bound(value: float) -> str:
    """An ``le`` value, spelled as the exporter spelled it (``0.005``, ``1.0``, ``+Inf``)."""
    return _number(float(value))


class _FamilyText:
    """One family's fixed text (HELP/TYPE header, sample names) and its per-series label cache."""

    __slots__ = ("bucket_ends", "family", "header", "labels", "name", "scope")

    def __init__(self, family: MetricFamily, scope: tuple[tuple[str, str], ...]) -> None:
        self.family = family
        self.scope = scope
        self.name = prometheus_name(family)
        kind = "histogram" if isinstance(family, HistogramFamily) else family.kind
        if kind not in ("counter", "gauge", "histogram"):
            raise TypeError(f"unknown metric family type {type(family).__name__}")
        self.header = (
            f"# HELP {self.name} {_escape_help(family.description or '')}\n# TYPE {self.name} {kind}\n"
        )
        self.labels: dict[tuple[Any, ...], str] = {}
        self.bucket_ends: tuple[str, ...] = ()
        if isinstance(family, HistogramFamily):
            self.bucket_ends = tuple(f'le="{_bound(b)}"}} ' for b in (*family.bounds, math.inf))

    def _label_text(self, labels: tuple[Any, ...]) -> str:
        text = self.labels.get(labels)
        if text is None:
            attributes: Mapping[str, Any] = self.family.attributes(labels)
            text = self.labels[labels] = label_text((*self.scope, *attributes.items()))
        return text

    def _prune(self, live: list[tuple[tuple[Any, ...], Any]]) -> None:
        """Keep only the live series' text once the cache outgrows them (gauge series removed,
        a family reset): bounded by twice the family's series plus :data:`_SLACK`."""
        labels = self.labels
        if len(labels) > 2 * len(live) + _SLACK:
            self.labels = {key: labels[key] for key, _ in live if key in labels}

    def render(self, out: list[str]) -> None:
        """Append this family's text to ``out`` (nothing when it has no series, as before)."""
        family = self.family
        if isinstance(family, HistogramFamily):
            self._render_histogram(family, out)
            return
        items = family.snapshot()  # type: ignore[attr-defined]
        self._prune(items)
        if not items:
            return
        out.append(self.header)
        name = self.name
        label = self._label_text
        for labels, value in items:
            out.append(f"{name}{{{label(labels)}}} {_number(value)}\n")

    def _render_histogram(self, family: HistogramFamily, out: list[str]) -> None:
        items = family.snapshot()
        self._prune(items)
        if not items:
            return
        out.append(self.header)
        name = self.name
        bucket, count_name, sum_name = f"{name}_bucket{{", f"{name}_count{{", f"{name}_sum{{"
        ends = self.bucket_ends
        label = self._label_text
        append = out.append
        for labels, (counts, _count, total, _lo, _hi) in items:
            text = label(labels)
            head = f"{bucket}{text},"
            cumulative = 0
            for end, cumulative in zip(ends, accumulate(counts), strict=True):
                append(f"{head}{end}{cumulative}\n")
            append(f"{count_name}{text}}} {cumulative}\n{sum_name}{text}}} {_number(total)}\n")


class PrometheusTextWriter:
    """Renders ``families()`` (called on every render, so families registered later appear) as
    Prometheus text, with ``target_info`` from ``resource_attributes`` first.

    ``scope`` is the ``(name, version)`` of the instrumentation scope the series are labelled
    with; ``before`` runs first on every render (``SignalMetricProducer.prepare``: the engine's
    flush, so that queued spans are derived before their metrics are read). It must not raise:
    ``prepare`` already logs a failing hook and goes on, so the writer does not guard it again.
    """

    def __init__(
        self,
        families: Callable[[], Iterable[MetricFamily]],
        *,
        scope: tuple[str, str],
        resource_attributes: Mapping[str, Any],
        before: Callable[[], object] | None = None,
    ) -> None:
        self._families = families
        self._before = before
        self._scope = (("otel_scope_name", scope[0]), ("otel_scope_version", scope[1]))
        info = label_text(resource_attributes.items())
        self._target_info = "# HELP target_info Target metadata\n# TYPE target_info gauge\n" + (
            f"target_info{{{info}}} 1\n" if info else "target_info 1\n"
        )
        self._texts: dict[MetricFamily, _FamilyText] = {}
        self._lock = threading.Lock()

    def render_text(self) -> str:
        """The exposition as a string; a family that fails to render is logged and left out."""
        if self._before is not None:
            self._before()
        with self._lock:
            out = [self._target_info]
            texts: dict[MetricFamily, _FamilyText] = {}
            for family in self._families():
                try:
                    text = self._texts.get(family) or _FamilyText(family, self._scope)
                    texts[family] = text
                    mark = len(out)
                    try:
                        text.render(out)
                    except Exception:
                        del out[mark:]  # no half-written family
                        raise
                except Exception:  # one broken callback must not hide every other metric
                    _logger.exception("spansignals: rendering metric %s failed", family.name)
            self._texts = texts  # families no longer registered drop their caches
            return "".join(out)

    def cached_label_sets(self) -> int:
        """How many series' label text is held (for tests and benchmarks)."""
        return sum(len(text.labels) for text in self._texts.values())

    def render(self) -> bytes:
        """The exposition as UTF-8 (a lone surrogate from a JSON span name becomes ``?``)."""
        return self.render_text().encode("utf-8", "replace")
