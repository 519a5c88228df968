"""SLOs evaluated at the source: good/bad events, error budgets and multi-window burn rates.

For every ``slos:`` entry (:class:`~spansignals.processors.config.slos.SloConfig`) each matching
span is one event (its sampling adjusted count when it carries a threshold), classified against
the exact definition rather than a histogram bucket:

- **availability**: bad when the span status is ERROR. With ``bad_status_codes``, a span that
  carries ``http.response.status_code`` (or the older ``http.status_code``) is bad exactly when
  its code is listed (so a 404 client span, ERROR by the HTTP conventions, can stay good), and a
  span without a code falls back to its status.
- **latency**: bad when the duration is strictly above ``latency_threshold``.

Series (labels ``slo`` and ``service_name``, the span's service):
``spansignals_slo_events_total``, ``spansignals_slo_bad_events_total`` (both created together, so
a ratio never lacks its numerator) and ``spansignals_slo_excluded_events_total{maintenance}``.
Gauges computed at collection time (label ``slo``): ``spansignals_slo_objective_ratio``,
``spansignals_slo_error_budget_remaining_ratio`` (``1 - period burn rate``; negative when
overspent) and ``spansignals_slo_burn_rate{window}`` for 5m, 30m, 1h, 2h, 6h, 1d, 3d, every
configured alert window and the period. The burn rate of a window is
``(bad / total) / (1 - objective)``; a window without events burns at 0.

Windows are in-process and rolling (see :mod:`._slo_windows` for resolution and memory: 10 s
buckets up to 6 h, 5 min beyond); they start empty when the process starts. Prometheus, fed by the
counters, holds the global and durable view (``spansignals rules``).

**Burn conditions.** A condition (``factor``, ``long_window``, ``short_window``) holds when the
error ratio over *both* windows is ``>= factor * (1 - objective)``; the threshold is computed in
decimal (14.4 x 0.001 is exactly 0.0144) less ``RATIO_SLACK`` (1e-12) for float noise. The SLO
state is ``page`` if any page condition holds, else ``ticket`` if any ticket condition holds, else
``ok``; each change is emitted as a ``SignalEvent(source="slo", name=<slo>, state=...)`` on the
event bus (``value``: the long-window burn rate of the strongest condition; ``details``: the
condition, every window's burn rate, the budget left). Conditions are evaluated at each metrics
collection, by :meth:`SloSpanProcessor.evaluate`, and every ``evaluation_interval`` seconds on a
background thread when one is given.

**Maintenance correction.** When an SLO sets ``exclude_maintenance: true``, the
``alerts.maintenance`` windows apply to it; windows listed under the SLO's own ``maintenance``
always apply to it. An event is excluded when the *end time* of its span lies inside an applicable
window (see :mod:`spansignals.processors.schedule` for the window semantics) and the window's
``match`` (if any) holds for the event: ``slo`` is compared with the SLO name and
``service``/``service_name`` with the span's service; a window whose ``match`` names any other
label concerns alerts only and never excludes SLO events. Excluded events are counted in neither
``events`` nor ``bad_events`` nor any window, so the error budget, burn rates and Prometheus rules
all see the period as if the maintenance traffic had not happened (good and bad alike; a window
does not add or refund budget for time without traffic). They are counted in
``spansignals_slo_excluded_events_total{slo, service_name, maintenance}``, so the exclusion stays
visible.

An event's time is the end time of its span, clamped to the processor's clock when in the future;
spans older than a ring's horizon are counted in the counters but not in that ring's windows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._slo_definition import RATIO_SLACK, STANDARD_WINDOWS_S, SloDefinition, error_ratio_threshold
from ._slo_windows import window_label
from .config.alerts import MaintenanceConfig
from .config.slos import SloConfig
from .engine import SignalSpanProcessor
from .events import SignalEvent
from .families import CounterFamily, GaugeFamily, MetricFamily
from .providers import ProviderTable, resolve_view
from .view import SpanView

__all__ = ["RATIO_SLACK", "STANDARD_WINDOWS_S", "SloSpanProcessor", "SloStatus", "error_ratio_threshold"]

_logger = logging.getLogger(__name__)

_MATCH_CACHE_MAX = 4096
_SEVERITY_RANK = {"ok": 0, "ticket": 1, "page": 2}
_UNRESOLVED = object()


@dataclass(frozen=True)
class SloStatus:
    """One SLO evaluated at ``at``: window sums, burn rates, budget and the condition state."""

    name: str
    sli: str
    objective: float
    period_s: float
    at: float
    state: str
    burn_rates: Mapping[str, float]
    window_events: Mapping[str, tuple[float, float]]
    error_budget_remaining: float
    firing: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


class SloSpanProcessor(SignalSpanProcessor):
    """Good/bad SLO events, rolling burn rates and burn-condition events (module docstring).

    ``slos`` are the ``slos:`` entries; ``maintenance`` the ``alerts.maintenance`` entries (used
    by SLOs that set ``exclude_maintenance``); ``providers`` resolves the ``provider`` selector
    (default: the built-in table). ``clock`` returns epoch seconds (default: ``time.time``);
    ``evaluation_interval`` (default: none) starts a daemon thread that evaluates the burn
    conditions that often, so events flow even when nobody scrapes.
    """

    processor_name = "slo"

    def __init__(
        self,
        slos: Sequence[SloConfig],
        *,
        maintenance: Sequence[MaintenanceConfig] = (),
        providers: ProviderTable | None = None,
        max_series: int = 2000,
        evaluation_interval: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        names = [s.name for s in slos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"slos: names must be unique, repeated: {dupes}")
        self._slos = tuple(SloDefinition(s, maintenance) for s in slos)
        self._providers = providers
        self._clock = clock
        self._match_cache: dict[tuple[str, str, int], tuple[SloDefinition, ...]] = {}
        self._seen: set[tuple[str, str]] = set()
        self._eval_lock = threading.Lock()
        self._last: tuple[float, dict[str, SloStatus]] | None = None
        labels = ("slo", "service.name")
        self.events_total = CounterFamily(
            "spansignals.slo.events",
            "SLO events (spans matching an SLO), maintenance exclusions left out.",
            "{event}",
            labels,
            max_series=max_series,
        )
        self.bad_events_total = CounterFamily(
            "spansignals.slo.bad_events",
            "SLO events classified bad (error or over the latency threshold).",
            "{event}",
            labels,
            max_series=max_series,
        )
        self.excluded_events_total = CounterFamily(
            "spansignals.slo.excluded_events",
            "SLO events left out of the SLO math by a maintenance window.",
            "{event}",
            (*labels, "maintenance"),
            max_series=max_series,
        )
        self.objective_ratio = GaugeFamily(
            "spansignals.slo.objective.ratio",
            "SLO objective (good ratio).",
            "1",
            ("slo",),
            callback=self._objective_points,
        )
        self.budget_remaining_ratio = GaugeFamily(
            "spansignals.slo.error_budget_remaining.ratio",
            "Error budget left over the rolling period (1 - period burn rate; negative when overspent).",
            "1",
            ("slo",),
            callback=self._budget_points,
        )
        self.burn_rate = GaugeFamily(
            "spansignals.slo.burn_rate",
            "Error budget burn rate per rolling window (1 = exactly on budget).",
            "1",
            ("slo", "window"),
            callback=self._burn_points,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if evaluation_interval is not None and self._slos:
            if evaluation_interval <= 0:
                raise ValueError(f"evaluation_interval must be > 0, got {evaluation_interval}")
            self._thread = threading.Thread(
                target=self._run, args=(evaluation_interval,), name="spansignals-slo-eval", daemon=True
            )
            self._thread.start()

    def metric_families(self) -> list[MetricFamily]:
        return [
            self.events_total,
            self.bad_events_total,
            self.excluded_events_total,
            self.objective_ratio,
            self.budget_remaining_ratio,
            self.burn_rate,
        ]

    # --- span path ------------------------------------------------------------------------------

    def observe(self, view: SpanView) -> None:
        if not self._slos:
            return
        service = view.service_name
        key = (service, view.name, view.kind)
        candidates = self._match_cache.get(key)
        if candidates is None:
            candidates = tuple(s for s in self._slos if s.static_match(*key))
            if len(self._match_cache) >= _MATCH_CACHE_MAX:
                self._match_cache.clear()
            self._match_cache[key] = candidates
        if not candidates:
            return
        t: float | None = None  # the event time, read once a candidate matches (most spans match none)
        weight = view.weight
        provider: str | object | None = _UNRESOLVED
        for slo in candidates:
            if slo.dynamic:
                if slo.providers is not None and provider is _UNRESOLVED:
                    info = resolve_view(view, self._providers)
                    provider = info.name if info is not None else None
                if slo.providers_only:
                    if provider not in (slo.providers or ()):
                        continue
                elif not slo.dynamic_match(view, provider):
                    continue
            if t is None:
                now = self._clock()
                t = view.end_ns / 1e9 if view.end_ns else now
                if t > now:
                    t = now
            labels = (slo.name, service)
            if slo.has_maintenance:
                window = slo.maintenance_at(t, service)
                if window is not None:
                    self.excluded_events_total.add((slo.name, service, window), weight)
                    continue
            bad = slo.is_bad(view)
            self.events_total.add(labels, weight)
            if bad:
                self.bad_events_total.add(labels, weight)
            elif labels not in self._seen and len(self._seen) < 10_000:
                self._seen.add(labels)
                self.bad_events_total.add(labels, 0)
            slo.windows.add(t, weight, weight if bad else 0.0)

    # --- evaluation -----------------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> dict[str, SloStatus]:
        """Evaluate every SLO at ``now`` (default: the clock), emit state changes, return statuses."""
        at = self._clock() if now is None else now
        statuses: dict[str, SloStatus] = {}
        changes: list[SignalEvent] = []
        with self._eval_lock:
            for slo in self._slos:
                status = self._status(slo, at)
                statuses[slo.name] = status
                if status.state != slo.state:
                    slo.state = status.state
                    changes.append(self._event(status))
            self._last = (at, statuses)
        for event in changes:
            self.events.emit(event)
        return statuses

    def _status(self, slo: SloDefinition, at: float) -> SloStatus:
        sums = slo.windows.sums(at)
        ratios = {w: (bad / total if total > 0 else 0.0) for w, (total, bad) in sums.items()}
        burn = {window_label(w): r / slo.budget for w, r in ratios.items()}
        firing = [
            c for c in slo.conditions if ratios[c.long_s] >= c.threshold and ratios[c.short_s] >= c.threshold
        ]
        state = max((c.severity for c in firing), key=_SEVERITY_RANK.__getitem__, default="ok")
        top = [c for c in firing if c.severity == state]
        details: dict[str, Any] = {"objective": slo.objective, "sli": slo.config.sli}
        if top:
            worst = max(top, key=lambda c: ratios[c.long_s])
            details.update(
                condition=worst.label,
                factor=worst.factor,
                long_window=window_label(worst.long_s),
                short_window=window_label(worst.short_s),
                long_burn_rate=ratios[worst.long_s] / slo.budget,
                short_burn_rate=ratios[worst.short_s] / slo.budget,
            )
        remaining = 1.0 - ratios[slo.period] / slo.budget
        details["error_budget_remaining"] = remaining
        return SloStatus(
            name=slo.name,
            sli=slo.config.sli,
            objective=slo.objective,
            period_s=slo.period,
            at=at,
            state=state,
            burn_rates=burn,
            window_events={window_label(w): s for w, s in sums.items()},
            error_budget_remaining=remaining,
            firing=tuple(c.label for c in firing),
            details=details,
        )

    @staticmethod
    def _event(status: SloStatus) -> SignalEvent:
        details = dict(status.details)
        details["burn_rates"] = dict(status.burn_rates)
        details["firing"] = list(status.firing)
        value = details.get("long_burn_rate", status.burn_rates.get(window_label(status.period_s)))
        return SignalEvent(
            source="slo",
            name=status.name,
            state=status.state,
            at=status.at,
            value=value,
            labels={"slo": status.name, "sli": status.sli},
            details=details,
        )

    def _current(self) -> dict[str, SloStatus]:
        """Statuses for this collection: one evaluation serves all three gauges."""
        now = self._clock()
        last = self._last
        if last is not None and 0 <= now - last[0] < 1.0:
            return last[1]
        return self.evaluate(now)

    def _objective_points(self) -> list[tuple[tuple[Any, ...], float]]:
        return [((s.name,), s.objective) for s in self._slos]

    def _budget_points(self) -> list[tuple[tuple[Any, ...], float]]:
        return [((name,), s.error_budget_remaining) for name, s in self._current().items()]

    def _burn_points(self) -> list[tuple[tuple[Any, ...], float]]:
        return [((name, w), v) for name, s in self._current().items() for w, v in s.burn_rates.items()]

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.evaluate()
            except Exception as exc:
                self.errors.record(self.processor_name, exc)

    def shutdown(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
