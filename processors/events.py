"""Signal events: the one interface derivations use to tell the alerting engine about changes.

Budgets (state changes), SLOs (burn-rate conditions) and circuit breakers (transitions) emit a
:class:`SignalEvent` through an :class:`EventBus`. Subscribers are called synchronously on the
thread that emitted, which is often the span path: a subscriber must only enqueue (the alerting
engine hands events to its own worker). A subscriber that raises is logged and skipped; it never
reaches the emitter.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EventBus", "SignalEvent"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignalEvent:
    """Something a derivation decided.

    ``source`` names the derivation family (``budget``, ``slo``, ``breaker``); ``name`` the
    instance (budget name, SLO name, breaker key); ``state`` the new state (``critical``,
    ``page``, ``open``, ``ok``...); ``labels`` low-cardinality identity labels; ``value`` the
    number behind the decision (utilization, burn rate); ``at`` wall-clock seconds.
    """

    source: str
    name: str
    state: str
    at: float
    value: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)


class EventBus:
    """Fan-out of :class:`SignalEvent` to subscribers; cheap when nobody listens."""

    def __init__(self) -> None:
        self._subscribers: tuple[Callable[[SignalEvent], None], ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, callback: Callable[[SignalEvent], None]) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not callback)

        return unsubscribe

    def emit(self, event: SignalEvent) -> None:
        """Deliver ``event`` to every subscriber; never raises."""
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:
                _logger.exception("spansignals: event subscriber %r failed", callback)
