"""The signal engine: derivations written once against :class:`~.view.SpanView`.

:class:`SignalSpanProcessor` is the base of every derivation (RED, cost, rate limits, SLOs). It is
an SDK ``SpanProcessor`` (so one derivation can be added to a ``TracerProvider`` on its own) whose
real work is :meth:`SignalSpanProcessor.observe`, called with a view. :class:`SignalEngine` runs
several derivations on one view per span and is what both front doors use: the in-app
:class:`EngineSpanProcessor` and the collector.

The span path never raises: each derivation call is wrapped, the first failure of each
derivation is logged with its traceback, later ones at most once a minute, and every failure is
counted in ``spansignals_processor_errors_total{processor}``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind

from .deferred import DeferredSpans
from .events import EventBus
from .families import CounterFamily, MetricFamily
from .view import _SDK_KIND_TO_OTLP, SpanView, view_from_readable_span

__all__ = ["EngineSpanProcessor", "ProcessorErrors", "SignalEngine", "SignalSpanProcessor"]

_logger = logging.getLogger(__name__)

_LOG_EVERY_S = 60.0
SDK_SPAN_KINDS = tuple(SpanKind)


class ProcessorErrors:
    """Counts and rate-limits the logging of derivation failures."""

    def __init__(self) -> None:
        self.family = CounterFamily(
            "spansignals.processor.errors",
            "Exceptions caught in spansignals processors (the span path never raises).",
            "{error}",
            ("processor",),
            max_series=64,
        )
        self._last_log: dict[str, float] = {}
        self._lock = threading.Lock()

    def record(self, processor: str, exc: BaseException) -> None:
        """Count one failure of ``processor`` and maybe log it."""
        try:
            self.family.add((processor,), 1)
            now = time.monotonic()
            with self._lock:
                last = self._last_log.get(processor)
                if last is not None and now - last < _LOG_EVERY_S:
                    return
                self._last_log[processor] = now
            _logger.error(
                "spansignals: processor %s failed (%s: %s); counted in spansignals_processor_errors_total,"
                " further failures logged at most once a minute",
                processor,
                type(exc).__name__,
                exc,
                exc_info=last is None,
            )
        except Exception:  # counting must never raise either
            pass

    def count(self, processor: str) -> float:
        """Failures counted so far for ``processor``."""
        return self.family.value((processor,))


class SignalSpanProcessor(SpanProcessor):
    """Base of every derivation. Subclasses set ``processor_name`` and override :meth:`observe`
    and :meth:`metric_families`.

    Used on its own as an SDK span processor it converts each ended span to a view; inside a
    :class:`SignalEngine` the view is built once and shared.
    """

    processor_name = "signal"
    sync_kinds: frozenset[int] = frozenset()
    """OTLP span kinds this derivation must see on the span path when the in-app front door
    defers derivation (see :mod:`.deferred`). Ask with :meth:`require_sync` when a decision made
    before the next request starts depending on the state (``guard()`` and the breakers)."""

    observed_kinds: frozenset[int] | None = None
    """OTLP span kinds :meth:`observe` can learn anything from (``None``: every kind). The default
    :meth:`observe_batch` leaves the others out without a call."""

    def __init__(self) -> None:
        self.errors = ProcessorErrors()
        self.events = EventBus()
        self._sync_listeners: list[Callable[[], None]] = []

    @property
    def events(self) -> EventBus:
        """The bus this derivation emits :class:`~.events.SignalEvent` on (the engine's shared one
        once installed in a :class:`SignalEngine`)."""
        return self._events

    @events.setter
    def events(self, bus: EventBus) -> None:
        self._events = bus
        self._events_changed(bus)

    def _events_changed(self, bus: EventBus) -> None:
        """Override to hand a new bus on to components that emit (budgets, breakers). Called from
        ``__init__`` too, before the subclass has built them."""

    def require_sync(self, kinds: frozenset[int] | set[int]) -> None:
        """From now on, derive spans of ``kinds`` inside ``span.end()``; front doors that defer
        derivation are told (they derive what is queued first, so state stays in order)."""
        wanted = self.sync_kinds | frozenset(kinds)
        if wanted == self.sync_kinds:
            return
        self.sync_kinds = wanted
        for listener in tuple(self._sync_listeners):
            listener()

    def observe(self, view: SpanView) -> None:
        """Derive from one finished span. Runs on the span path: dictionary arithmetic only."""

    def observe_batch(self, views: Sequence[SpanView]) -> None:
        """Derive from several finished spans, in order. Never raises: a failure on one span is
        counted in ``errors`` and the spans after it are still derived.

        The front doors hand over whole batches (a collector request, a deferred queue drain), so
        the per-span dispatch is paid once per batch. Override when a batch is cheaper to derive
        than its spans one by one (RED updates each series once per batch); an override must keep
        the promise above.
        """
        kinds = self.observed_kinds
        self._observe_each(views if kinds is None else [v for v in views if v.kind in kinds], self.observe)

    def _observe_each(self, views: Iterable[SpanView], observe: Callable[[SpanView], object]) -> None:
        """``observe`` each view in order; a failure is counted in ``errors`` and the views after
        it are still observed (the promise of :meth:`observe_batch`, for overrides to reuse)."""
        remaining = iter(views)
        while True:
            try:
                for view in remaining:
                    observe(view)
                return
            except Exception as exc:  # resume after the span that failed
                self.errors.record(self.processor_name, exc)

    def metric_families(self) -> list[MetricFamily]:
        """The families this derivation writes (registered with a producer by the front door)."""
        return []

    def on_end(self, span: Any) -> None:
        try:
            self.observe(view_from_readable_span(span))
        except Exception as exc:
            self.errors.record(self.processor_name, exc)

    def shutdown(self) -> None:
        """Release resources (background workers); the default holds none."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class SignalEngine:
    """Runs derivations over views; shares one error counter and one event bus between them."""

    def __init__(self, processors: Sequence[SignalSpanProcessor]) -> None:
        self.errors = ProcessorErrors()
        self.events = EventBus()
        self._processors = tuple(processors)
        for p in self._processors:
            p.errors = self.errors
            p.events = self.events
        self._observers = tuple((p.processor_name, p.observe) for p in self._processors)
        self._flushers: list[Callable[[], object]] = []

    @property
    def processors(self) -> tuple[SignalSpanProcessor, ...]:
        """The derivations, in the order they run."""
        return self._processors

    def get(self, processor_name: str) -> SignalSpanProcessor | None:
        """The derivation with this ``processor_name``, if installed."""
        for p in self._processors:
            if p.processor_name == processor_name:
                return p
        return None

    def process(
        self, view: SpanView, observers: Sequence[tuple[str, Callable[[SpanView], None]]] | None = None
    ) -> None:
        """Run every derivation (or only ``observers``, ``(name, observe)`` pairs) on ``view``;
        never raises."""
        for name, observe in self._observers if observers is None else observers:
            try:
                observe(view)
            except Exception as exc:
                self.errors.record(name, exc)

    def process_batch(
        self, views: Sequence[SpanView], processors: Sequence[SignalSpanProcessor] | None = None
    ) -> None:
        """Run every derivation (or only ``processors``) over ``views``, one derivation at a time
        (each sees the spans in order); never raises."""
        for p in self._processors if processors is None else processors:
            try:
                p.observe_batch(views)
            except Exception as exc:  # an observe_batch override that broke its promise
                self.errors.record(p.processor_name, exc)

    def add_flusher(self, flush: Callable[[], object]) -> None:
        """Register a callable that derives spans a front door has queued (see :meth:`flush`)."""
        self._flushers.append(flush)

    def flush(self) -> None:
        """Derive every queued span now, so that state read next includes them; never raises."""
        for flush in self._flushers:
            try:
                flush()
            except Exception as exc:
                self.errors.record("deferred", exc)

    def fresh_families(self) -> list[MetricFamily]:
        """:meth:`flush`, then :meth:`metric_families`: what readers of current values call."""
        self.flush()
        return self.metric_families()

    def metric_families(self) -> list[MetricFamily]:
        """Every family of every derivation, plus the error counter."""
        families: list[MetricFamily] = []
        for p in self._processors:
            families.extend(p.metric_families())
        families.append(self.errors.family)
        return families

    def shutdown(self) -> None:
        """Shut every derivation down; failures are logged, not raised."""
        for p in self._processors:
            try:
                p.shutdown()
            except Exception as exc:
                self.errors.record(p.processor_name, exc)


class EngineSpanProcessor(SpanProcessor):
    """The in-app front door: an SDK span processor that feeds every ended span to an engine.

    It sees every *recording* span, sampled or not (see :class:`spansignals.sdk.RecordAllSampler`
    for keeping derived signals exact while the app samples traces).

    With ``deferred=True`` (what ``configure()`` uses) ``span.end()`` only enqueues the span and a
    worker derives in batches (:class:`~.deferred.DeferredSpans`); derivations with ``sync_kinds``
    still run on the span path for those kinds. ``engine.flush()`` (called before every metric
    collection and alert evaluation), ``force_flush`` and ``shutdown`` derive what is queued.
    Without it, derivation runs inside ``span.end()`` (simplest; what tests of one derivation use).
    """

    def __init__(self, engine: SignalEngine, *, deferred: bool = False, **deferred_options: Any) -> None:
        self.engine = engine
        self._deferred: DeferredSpans | None = None
        if not deferred:
            return
        self._deferred = DeferredSpans(self._consume, **deferred_options)
        engine.add_flusher(self._deferred.flush)
        self._plan = self._sync_plan()
        for p in engine.processors:
            p._sync_listeners.append(self._sync_changed)

    def _sync_plan(self) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[SignalSpanProcessor, ...]]:
        """``(SDK kinds derived on the span path, their observers, the other derivations)``."""
        sync = [p for p in self.engine.processors if p.sync_kinds]
        kinds: set[int] = set().union(*(p.sync_kinds for p in sync))
        # SDK SpanKind members, compared by identity on the span path (no enum hashing there).
        sdk_kinds = tuple(k for k in SDK_SPAN_KINDS if _SDK_KIND_TO_OTLP[k.value] in kinds)
        return (
            sdk_kinds,
            tuple((p.processor_name, p.observe) for p in sync),
            tuple(p for p in self.engine.processors if not p.sync_kinds),
        )

    def _sync_changed(self) -> None:
        if self._deferred is not None:
            self._deferred.flush()  # what was queued before the switch is derived first, in order
        self._plan = self._sync_plan()

    @property
    def deferred(self) -> DeferredSpans | None:
        """The queue in deferred mode (``pending``, ``sync_fallbacks``), else ``None``."""
        return self._deferred

    def on_end(self, span: Any) -> None:
        deferred = self._deferred
        if deferred is None:
            try:
                self.engine.process(view_from_readable_span(span))
            except Exception as exc:  # a span the adapter cannot read
                self.engine.errors.record("adapter", exc)
            return
        try:
            sync_kinds, sync_observers, _ = self._plan
            if sync_kinds and span.kind in sync_kinds:
                view = view_from_readable_span(span)
                self.engine.process(view, sync_observers)
                deferred.put(view)
            else:
                deferred.put(span)
        except Exception as exc:
            self.engine.errors.record("adapter", exc)

    def _consume(self, batch: list[Any]) -> None:
        # Runs of ended spans go to every derivation; runs of views (spans the sync derivations
        # already saw on the span path) to the others. Runs keep the queue's order.
        engine = self.engine
        later = self._plan[2]
        run: list[SpanView] = []
        run_of_views = False
        for item in batch:
            is_view = isinstance(item, SpanView)
            if is_view is not run_of_views and run:
                engine.process_batch(run, later if run_of_views else None)
                run = []
            run_of_views = is_view
            if is_view:
                run.append(item)
                continue
            try:
                run.append(view_from_readable_span(item))
            except Exception as exc:  # a span the adapter cannot read
                engine.errors.record("adapter", exc)
        if run:
            engine.process_batch(run, later if run_of_views else None)

    def shutdown(self) -> None:
        if self._deferred is not None:
            self._deferred.stop()
        self.engine.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._deferred is not None:
            self._deferred.flush()
        return True
