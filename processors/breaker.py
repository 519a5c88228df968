"""Circuit breakers per provider (or provider + route) that also listen to the provider's headers.

A :class:`CircuitBreaker` is *closed* (calls flow), *open* (calls fail fast) or *half-open* (a few
probe calls decide). It opens when

- the failure rate over a sliding ``window`` (ten time buckets) reaches ``failure_rate`` with at
  least ``min_calls`` calls in the window, or
- ``consecutive_failures`` calls fail in a row (then it stays open ``open_for``), or
- proactively, when a response says the quota is exhausted or gives ``Retry-After``: then it stays
  open **until the provider's reset** (:meth:`CircuitBreaker.trip_until`).

When the open period ends the next call is a probe (``half_open_probes`` successes close it, any
failure reopens it for ``open_for``). Defaults come from :class:`~.config.ratelimits.BreakerConfig`
(50% over 60 s with 20 calls, 5 in a row, 30 s open, 1 probe).

:class:`CircuitBreakers` holds one breaker per key, exposes ``spansignals_breaker_state``
(0 closed, 1 half-open, 2 open; evaluated at collection time so an elapsed open period shows as
half-open) and reports every transition as a ``SignalEvent(source="breaker")`` on the event bus and
as a log line. :class:`FailureClassifier` decides what counts as the provider's failure: by default
429, 5xx, timeouts and connection errors; other 4xx are the caller's fault and count as successes.
The clock is injected (epoch seconds); tests never sleep.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from opentelemetry import trace

from .events import EventBus, SignalEvent
from .families import GaugeFamily

__all__ = [
    "BreakerSettings",
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakers",
    "FailureClassifier",
]

_logger = logging.getLogger(__name__)

_BUCKETS = 10


class BreakerState(IntEnum):
    """The gauge values of ``spansignals_breaker_state``."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        """``closed``, ``half_open`` or ``open`` (the event state)."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Thresholds of one breaker; see the module docstring for the defaults."""

    failure_rate: float = 0.5
    min_calls: int = 20
    window_s: float = 60.0
    consecutive_failures: int = 5
    open_for_s: float = 30.0
    half_open_probes: int = 1

    @classmethod
    def from_config(cls, config: Any) -> BreakerSettings:
        """From a :class:`~.config.ratelimits.BreakerConfig`."""
        return cls(
            failure_rate=config.failure_rate,
            min_calls=config.min_calls,
            window_s=config.window,
            consecutive_failures=config.consecutive_failures,
            open_for_s=config.open_for,
            half_open_probes=config.half_open_probes,
        )


class FailureClassifier:
    """Whether a finished call was the provider's failure.

    ``status_codes`` holds integers and class patterns like ``"5xx"``. A call without an HTTP
    status that ended in error is a timeout (``error.type`` mentions "timeout") or a connection
    error; each kind counts when its flag is on (default: both).
    """

    def __init__(
        self,
        status_codes: Iterable[int | str] = (429, "5xx"),
        *,
        timeouts: bool = True,
        connection_errors: bool = True,
    ) -> None:
        codes: set[int] = set()
        for code in status_codes:
            if isinstance(code, int):
                codes.add(code)
            elif len(code) == 3 and code[0] in "12345" and code[1:].lower() == "xx":
                base = int(code[0]) * 100
                codes.update(range(base, base + 100))
            else:
                raise ValueError(
                    f"failure status code must be an integer or a class like '5xx', got {code!r}"
                )
        self.codes: frozenset[int] = frozenset(codes)
        """The status codes that are failures (the span path tests a response's code in it directly)."""
        self._timeouts = timeouts
        self._connection_errors = connection_errors

    def is_failure(self, status_code: int | None, errored: bool, error_type: str | None) -> bool:
        """``status_code`` from the response (``None`` when there was none), ``errored`` from the
        span status, ``error_type`` from ``error.type``."""
        if status_code is not None:
            return status_code in self.codes
        if not errored:
            return False
        if error_type and "timeout" in error_type.lower():
            return self._timeouts
        return self._connection_errors


class CircuitBreaker:
    """One breaker; thread-safe. ``on_transition(breaker, old, new, reason, at)`` is called after
    each state change, outside the breaker's lock."""

    def __init__(
        self,
        key: tuple[str, ...],
        settings: BreakerSettings = BreakerSettings(),
        *,
        clock: Callable[[], float] = time.time,
        on_transition: Callable[[CircuitBreaker, BreakerState, BreakerState, str, float], None] | None = None,
    ) -> None:
        self.key = key
        self.settings = settings
        self._clock = clock
        self._on_transition = on_transition
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._open_until = 0.0
        self._consecutive = 0
        self._last_failure = float("-inf")
        self._probe_successes = 0
        self._probes: list[float] = []  # start times of probes let through and not yet answered
        self._bucket_width = max(settings.window_s / _BUCKETS, 1e-3)
        self._bucket_ids = [-1] * _BUCKETS
        self._calls = [0] * _BUCKETS
        self._fails = [0] * _BUCKETS
        # The window's sums for the bucket ``_window_at``, kept up to date by record(): a closed
        # breaker with a recent failure sums the window on every call, and a loop over the
        # buckets costs ~2 µs; it now runs once per bucket width.
        self._window_at: int | None = None
        self._window_calls = 0
        self._window_fails = 0

    # --- reading -------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state (an elapsed open period turns into half-open here)."""
        return self._transition_if_due(self._clock())

    @property
    def open_until(self) -> float:
        """Epoch seconds at which an open breaker lets a probe through."""
        return self._open_until

    def window_counts(self, now: float | None = None) -> tuple[int, int]:
        """``(calls, failures)`` in the sliding window."""
        now = self._clock() if now is None else now
        with self._lock:
            return self._window(now)

    def _window(self, now: float) -> tuple[int, int]:
        current = int(now // self._bucket_width)
        if current == self._window_at:
            return self._window_calls, self._window_fails
        calls = fails = 0
        for i in range(_BUCKETS):
            if current - _BUCKETS < self._bucket_ids[i] <= current:
                calls += self._calls[i]
                fails += self._fails[i]
        self._window_at, self._window_calls, self._window_fails = current, calls, fails
        return calls, fails

    # --- decisions -----------------------------------------------------------------------------

    def allow(self) -> float | None:
        """``None`` if a call may go now (taking a probe slot when half-open), else the seconds to
        wait before asking again."""
        if self._state is BreakerState.CLOSED:
            return None  # the common case: no clock read, no lock
        now = self._clock()
        if self._transition_if_due(now) is BreakerState.CLOSED:
            return None
        with self._lock:
            if self._state is BreakerState.OPEN:
                return max(0.0, self._open_until - now)
            timeout = max(self.settings.open_for_s, 1.0)
            self._probes = [t for t in self._probes if now - t < timeout]
            if len(self._probes) + self._probe_successes < self.settings.half_open_probes:
                self._probes.append(now)
                return None
            return min(timeout - (now - self._probes[0]), 1.0) if self._probes else 0.1

    def record(self, failure: bool) -> None:
        """The outcome of one call."""
        now = self._clock()
        if self._state is BreakerState.OPEN:  # only an open breaker can be due for a transition
            self._transition_if_due(now)
        change: tuple[BreakerState, BreakerState, str] | None = None
        with self._lock:
            state = self._state
            if state is BreakerState.OPEN:
                return  # calls that raced the opening say nothing new
            if state is BreakerState.HALF_OPEN:
                if self._probes:
                    self._probes.pop(0)
                if failure:
                    change = self._open(now, now + self.settings.open_for_s, "probe failed")
                else:
                    self._probe_successes += 1
                    if self._probe_successes >= self.settings.half_open_probes:
                        change = self._close("probe succeeded")
            else:
                current = int(now // self._bucket_width)
                slot = current % _BUCKETS
                if self._bucket_ids[slot] != current:
                    self._bucket_ids[slot] = current
                    self._calls[slot] = self._fails[slot] = 0
                self._calls[slot] += 1
                in_sums = self._window_at == current  # a reset slot held no bucket of this window
                if in_sums:
                    self._window_calls += 1
                s = self.settings
                if failure:
                    self._fails[slot] += 1
                    if in_sums:
                        self._window_fails += 1
                    self._consecutive += 1
                    self._last_failure = now
                else:
                    self._consecutive = 0
                if self._consecutive >= s.consecutive_failures:
                    change = self._open(now, now + s.open_for_s, f"{self._consecutive} consecutive failures")
                elif now - self._last_failure <= s.window_s:  # else no failure in the window to add up
                    calls, fails = self._window(now)
                    if calls >= s.min_calls and fails and fails / calls >= s.failure_rate:
                        change = self._open(
                            now, now + s.open_for_s, f"failure rate {fails}/{calls} over {s.window_s:g}s"
                        )
        if change is not None:
            self._notify(*change, now)

    def record_successes(self, count: int) -> None:
        """``count`` successful calls: what ``count`` calls of ``record(False)`` at one instant do,
        with one clock read and one lock when the breaker is closed (~0.2 µs instead of ~1 µs per
        call). A closed breaker with no failure in the window cannot change state; with one, a
        success can open it only by bringing the window to ``min_calls`` (each further success
        lowers the failure rate), so only that one is checked: then it opens there, and the
        successes after it are recorded one by one. Half-open and open: one :meth:`record` each."""
        if count <= 0:
            return
        now = self._clock()
        rest = count
        change: tuple[BreakerState, BreakerState, str] | None = None
        if self._state is BreakerState.CLOSED:
            s = self.settings
            with self._lock:
                if self._state is BreakerState.CLOSED and s.consecutive_failures > 0:
                    current = int(now // self._bucket_width)
                    slot = current % _BUCKETS
                    if self._bucket_ids[slot] != current:
                        self._bucket_ids[slot] = current  # an old bucket: outside the window
                        self._calls[slot] = self._fails[slot] = 0
                    taken = count
                    if now - self._last_failure <= s.window_s:  # a failure to add up
                        calls, fails = self._window(now)  # sums at ``current`` from here on
                        first = max(1, s.min_calls - calls)  # the success that reaches min_calls
                        if first <= count and fails and fails / (calls + first) >= s.failure_rate:
                            taken = first
                            change = self._open(
                                now,
                                now + s.open_for_s,
                                f"failure rate {fails}/{calls + first} over {s.window_s:g}s",
                            )
                    self._calls[slot] += taken
                    if self._window_at == current:
                        self._window_calls += taken
                    self._consecutive = 0
                    rest = count - taken
        if change is not None:
            self._notify(*change, now)
        for _ in range(rest):
            self.record(False)

    def trip_until(self, until: float, reason: str) -> None:
        """Open now and stay open until ``until`` (epoch seconds): the provider's reset or
        ``Retry-After``. Extends an open period; ignored when ``until`` is not in the future."""
        now = self._clock()
        if until <= now:
            return
        change = None
        with self._lock:
            if self._state is BreakerState.OPEN:
                self._open_until = max(self._open_until, until)
            else:
                change = self._open(now, until, reason)
        if change is not None:
            self._notify(*change, now)

    # --- transitions (callers hold the lock for _open/_close) -----------------------------------

    def _open(self, now: float, until: float, reason: str) -> tuple[BreakerState, BreakerState, str]:
        old = self._state
        self._state = BreakerState.OPEN
        self._open_until = until
        self._consecutive = 0
        self._probes = []
        self._probe_successes = 0
        return old, BreakerState.OPEN, reason

    def _close(self, reason: str) -> tuple[BreakerState, BreakerState, str]:
        old = self._state
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._probes = []
        self._probe_successes = 0
        self._bucket_ids = [-1] * _BUCKETS  # a fresh window: old failures must not reopen it at once
        self._window_at = None
        return old, BreakerState.CLOSED, reason

    def _transition_if_due(self, now: float) -> BreakerState:
        state = self._state
        if state is not BreakerState.OPEN or now < self._open_until:
            return state
        with self._lock:
            if self._state is not BreakerState.OPEN or now < self._open_until:
                return self._state
            self._state = BreakerState.HALF_OPEN
            self._probes = []
            self._probe_successes = 0
        self._notify(BreakerState.OPEN, BreakerState.HALF_OPEN, "open period ended", now)
        return BreakerState.HALF_OPEN

    def _notify(self, old: BreakerState, new: BreakerState, reason: str, at: float) -> None:
        if old is new or self._on_transition is None:
            return
        try:
            self._on_transition(self, old, new, reason, at)
        except Exception:
            _logger.exception("spansignals: breaker transition callback failed")


class CircuitBreakers:
    """One :class:`CircuitBreaker` per key, the ``spansignals_breaker_state`` gauge, and events.

    ``label_names`` name the key's parts (``service.name``, ``provider`` and optionally
    ``route``). Past ``max_series`` keys, new keys get no breaker (:meth:`get` returns ``None``).
    """

    def __init__(
        self,
        settings: BreakerSettings = BreakerSettings(),
        *,
        label_names: Sequence[str] = ("service.name", "provider"),
        max_series: int = 2000,
        events: EventBus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.label_names = tuple(label_names)
        self.max_series = max_series
        self.events = events or EventBus()
        self._clock = clock
        self._breakers: dict[tuple[str, ...], CircuitBreaker] = {}
        self._lock = threading.Lock()
        self.listeners: list[Callable[[CircuitBreaker, BreakerState, BreakerState, str, float], None]] = []
        self.state_family = GaugeFamily(
            "spansignals.breaker.state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            "1",
            self.label_names,
            callback=self._states,
            max_series=max_series,
        )

    def get(self, key: tuple[str, ...], *, create: bool = True) -> CircuitBreaker | None:
        """The breaker for ``key`` (created on first use unless ``create`` is false)."""
        breaker = self._breakers.get(key)
        if breaker is not None or not create:
            return breaker
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                if len(self._breakers) >= self.max_series:
                    return None
                breaker = CircuitBreaker(
                    key, self.settings, clock=self._clock, on_transition=self._transition
                )
                self._breakers[key] = breaker
        return breaker

    def clear(self) -> None:
        """Drop every breaker (shutdown)."""
        with self._lock:
            self._breakers.clear()

    def __iter__(self) -> Any:
        return iter(list(self._breakers.values()))

    def _states(self) -> list[tuple[tuple[str, ...], float]]:
        return [(key, float(b.state)) for key, b in list(self._breakers.items())]

    def _transition(
        self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState, reason: str, at: float
    ) -> None:
        labels = dict(zip((n.replace(".", "_") for n in self.label_names), breaker.key, strict=True))
        name = " ".join(p for p in breaker.key[1:] if p) or breaker.key[0]
        log = _logger.warning if new is BreakerState.OPEN else _logger.info
        log("spansignals: circuit breaker %s %s -> %s (%s)", name, old.label, new.label, reason)
        details: Mapping[str, Any] = {"reason": reason, "from": old.label}
        if new is BreakerState.OPEN:
            details = {
                **details,
                "open_until": breaker.open_until,
                "retry_after_s": max(0.0, breaker.open_until - at),
            }
        self.events.emit(
            SignalEvent(
                source="breaker",
                name=name,
                state=new.label,
                at=at,
                value=float(new),
                labels=labels,
                details=details,
            )
        )
        _add_span_event(name, old, new, reason)
        for listener in self.listeners:
            try:
                listener(breaker, old, new, reason, at)
            except Exception:
                _logger.exception("spansignals: breaker listener failed")


def _add_span_event(name: str, old: BreakerState, new: BreakerState, reason: str) -> None:
    """Record the transition on the current span when one is recording (in-app: the span of the
    work that made the call); in the collector there is none."""
    try:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "spansignals.breaker.transition",
                {
                    "spansignals.breaker": name,
                    "spansignals.breaker.from": old.label,
                    "spansignals.breaker.to": new.label,
                    "spansignals.breaker.reason": reason,
                },
            )
    except Exception:
        _logger.debug("spansignals: breaker span event failed", exc_info=True)
