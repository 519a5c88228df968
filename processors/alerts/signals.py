"""The values alert rules evaluate: current samples of the engine's families, and latest events.

:class:`SignalSnapshot` is taken once per evaluation on the alerting worker thread (never on the
span path): every counter and gauge family of the signal engine, keyed by its Prometheus name,
with label names as Prometheus renders them. Histograms are not rule signals (their Prometheus
series are buckets); the overflow series of a capped family is left out (its labels say nothing).

:class:`EventTable` keeps the latest :class:`~spansignals.processors.events.SignalEvent` per
``(source, name)``: budgets, SLO burn conditions and breakers report state changes through it.
Rules read it with a signal named ``event:<source>`` (for example ``event:slo`` with
``condition: "== page"``); the event's labels plus ``name`` are the sample's labels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..events import SignalEvent
from ..families import MetricFamily
from ._promnames import prometheus_label, prometheus_name

__all__ = ["EventTable", "Sample", "SignalSnapshot", "read_families"]


@dataclass(frozen=True)
class Sample:
    """One series: Prometheus-style labels and a value (a number, or an event state)."""

    labels: Mapping[str, str]
    value: float | str


def read_families(families: Iterable[MetricFamily]) -> dict[str, list[Sample]]:
    """Prometheus name → samples of every counter and gauge family."""
    out: dict[str, list[Sample]] = {}
    for family in families:
        if family.kind not in ("counter", "gauge"):
            continue
        name = prometheus_name(family.name, family.unit, family.kind)
        label_names = tuple(prometheus_label(k) for k in family.label_names)
        samples = out.setdefault(name, [])
        for labels, value in family.snapshot():  # type: ignore[attr-defined]
            if labels and isinstance(labels[0], str) and labels[0].startswith("\x00"):
                continue  # the overflow series
            samples.append(
                Sample(
                    {k: str(v) for k, v in zip(label_names, labels, strict=False) if v is not None},
                    float(value),
                )
            )
    return out


class EventTable:
    """Latest event per ``(source, name)``; :meth:`record` is cheap and safe on any thread."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], SignalEvent] = {}
        self._lock = threading.Lock()

    def record(self, event: SignalEvent) -> None:
        """Remember ``event`` as the current state of its source instance."""
        with self._lock:
            self._latest[(event.source, event.name)] = event

    def samples(self) -> dict[str, list[Sample]]:
        """``event:<source>`` → one sample per instance (value = state)."""
        with self._lock:
            events = list(self._latest.values())
        out: dict[str, list[Sample]] = {}
        for ev in events:
            labels = {prometheus_label(k): str(v) for k, v in ev.labels.items()}
            labels.setdefault(ev.source, ev.name)
            labels.setdefault("name", ev.name)
            out.setdefault(f"event:{ev.source}", []).append(Sample(labels, ev.state))
        return out


class SignalSnapshot:
    """All rule inputs at one instant: metric samples and event states, by signal name."""

    def __init__(self, samples: Mapping[str, list[Sample]]) -> None:
        self._samples = samples

    @classmethod
    def take(
        cls, families: Callable[[], Iterable[MetricFamily]], events: EventTable | None = None
    ) -> SignalSnapshot:
        """Read ``families()`` and ``events`` now."""
        samples = read_families(families())
        if events is not None:
            samples.update(events.samples())
        return cls(samples)

    def get(self, signal: str) -> list[Sample]:
        """Samples of one signal (empty when absent)."""
        return self._samples.get(signal, [])
