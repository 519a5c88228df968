"""Spending budgets: calendar-aligned periods, thresholds, projections, state events.

A :class:`BudgetTracker` receives every priced cost from the :class:`~.cost.CostSpanProcessor`
(``record``) and keeps, per configured budget, the spend of the current period. Periods are
``day``, ``week`` (ISO, from Monday), ``month`` or ``year``, aligned to the calendar in the
budget's time zone (``zoneinfo``; DST days are 23 or 25 hours long). A cost belongs to the period
in which the tracker's clock sees it.

Derived values, computed from the clock at collection time (so they move without traffic):

- ``spansignals_budget_limit_usd`` / ``_spent_usd`` / ``_projected_usd`` {budget, period}
- ``spansignals_budget_utilization_ratio`` {budget}: spent / limit
- ``spansignals_budget_state`` {budget}: 0 ok, 1 warning, 2 critical, 3 emergency, from the
  utilization and the thresholds (defaults 0.75 / 0.90 / 0.95)
- ``spansignals_budget_time_to_limit_seconds`` {budget}: at the current burn (absent while
  nothing is being spent; 0 once the limit is reached)

**Projection.** The burn rate is the spend of the last ``projection_window`` (default 1 h, kept
in one-minute buckets; the elapsed part of the period when that is shorter). Projected
period-end spend = spent + rate * time left in the period.

**Events.** Every state change (up, down, and back to ``ok`` when a new period starts) is emitted
on the engine's :class:`~.events.EventBus` as ``SignalEvent(source="budget", name=<budget>,
state="ok"|"warning"|"critical"|"emergency", value=<utilization>, labels={"budget", "period"},
details={limit_usd, spent_usd, projected_usd, time_to_limit_s, period_start, period_end,
previous_state})``. :meth:`BudgetTracker.current_events` returns the same shape for every budget,
for a subscriber that starts late (e.g. after a restart).

**Restarts.** With a state file (``state_path``, or the ``SPANSIGNALS_BUDGET_STATE`` environment
variable; default: none), each budget's period, spend, burn buckets and state are written
atomically (temp file + rename) every ``save_interval`` seconds (default 10) and at shutdown,
and read back at start when the saved period is still the current one and the budget's
definition (match, period, time zone) is unchanged. Why a file rather than rebuilding from
Prometheus: the spend of a budget that matches on span attributes or services is not
recoverable from metric labels, a rebuild would depend on Prometheus being reachable at start,
and ``increase()`` extrapolates. The file is exact and local; a crash loses at most the last
``save_interval`` of spend. Budgets are per instance: with several collectors, the global view
is ``sum`` over ``spansignals_cost_usd_total`` in Prometheus (``spansignals rules``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from .events import EventBus, SignalEvent
from .families import GaugeFamily, MetricFamily

__all__ = ["ENV_STATE_FILE", "STATE_NAMES", "Budget", "BudgetTracker", "period_bounds"]

_logger = logging.getLogger(__name__)

ENV_STATE_FILE = "SPANSIGNALS_BUDGET_STATE"
"""Environment variable naming the budget state file (default: no file, state starts empty)."""

STATE_NAMES = ("ok", "warning", "critical", "emergency")
_ZERO = Decimal(0)
_BUCKET_S = 60


def period_bounds(period: str, tz: ZoneInfo, at: float) -> tuple[float, float]:
    """``(start, end)`` epoch seconds of the calendar ``period`` containing ``at`` in ``tz``."""
    local = dt.datetime.fromtimestamp(at, tz)
    if period == "day":
        start = dt.datetime(local.year, local.month, local.day, tzinfo=tz)
        nxt = start.date() + dt.timedelta(days=1)
        end = dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    elif period == "week":
        monday = local.date() - dt.timedelta(days=local.weekday())
        start = dt.datetime(monday.year, monday.month, monday.day, tzinfo=tz)
        nxt = monday + dt.timedelta(days=7)
        end = dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    elif period == "month":
        start = dt.datetime(local.year, local.month, 1, tzinfo=tz)
        y, m = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        end = dt.datetime(y, m, 1, tzinfo=tz)
    elif period == "year":
        start = dt.datetime(local.year, 1, 1, tzinfo=tz)
        end = dt.datetime(local.year + 1, 1, 1, tzinfo=tz)
    else:
        raise ValueError(f"period must be day, week, month or year, got {period!r}")
    return start.timestamp(), end.timestamp()


class Budget:
    """One configured budget and the spend of its current period."""

    def __init__(self, config: Any, *, projection_window_s: float = 3600.0) -> None:
        self.name: str = config.name
        self.period: str = config.period
        self.timezone = ZoneInfo(config.timezone)
        self.limit: Decimal = Decimal(config.limit_usd)
        t = config.thresholds
        self.thresholds = (float(t.warning), float(t.critical), float(t.emergency))
        match = config.match
        self.providers = frozenset(p.lower() for p in match.provider) if match.provider else None
        self.models = frozenset(m.lower() for m in match.model) if match.model else None
        self.services = frozenset(match.service) if match.service else None
        self.attributes: dict[str, str] = dict(match.attributes)
        self.window_s = projection_window_s
        self.fingerprint = hashlib.sha256(
            json.dumps([self.period, config.timezone, match.model_dump(mode="json")], sort_keys=True).encode()
        ).hexdigest()[:16]
        self.period_start = 0.0
        self.period_end = 0.0
        self.spent = _ZERO
        self.buckets: deque[list[Any]] = deque()  # [minute index, Decimal]
        self.state = 0

    def matches_static(self, provider: str, models: Iterable[str], service: str) -> bool:
        """Whether provider / model / service fit (attribute matchers are checked per span)."""
        if self.providers is not None and provider.lower() not in self.providers:
            return False
        if self.models is not None and not any(m.lower() in self.models for m in models if m):
            return False
        return self.services is None or service in self.services

    def matches_attributes(self, attributes: Mapping[str, Any], resource: Mapping[str, Any]) -> bool:
        """Whether every ``match.attributes`` entry equals the span (or resource) attribute."""
        for key, want in self.attributes.items():
            value = attributes.get(key)
            if value is None:
                value = resource.get(key)
            if value is None or str(value) != want:
                return False
        return True

    def roll(self, now: float) -> None:
        """Start the period containing ``now`` if the current one has ended."""
        if self.period_start <= now < self.period_end:
            return
        self.period_start, self.period_end = period_bounds(self.period, self.timezone, now)
        self.spent = _ZERO
        self.buckets.clear()

    def add(self, amount: Decimal, now: float) -> None:
        """Add spend to the current period and its burn bucket."""
        self.spent += amount
        minute = int(now // _BUCKET_S)
        buckets = self.buckets
        if buckets and buckets[-1][0] == minute:
            buckets[-1][1] += amount
        else:
            buckets.append([minute, amount])
            horizon = minute - int(self.window_s // _BUCKET_S)
            while buckets and buckets[0][0] < horizon:
                buckets.popleft()

    def burn_rate(self, now: float) -> float:
        """USD per second over the projection window (or the elapsed period, if shorter)."""
        first = int((now - self.window_s) // _BUCKET_S)
        recent = sum((amount for minute, amount in self.buckets if minute >= first), _ZERO)
        if recent <= 0:
            return 0.0
        span = min(self.window_s, max(now - self.period_start, float(_BUCKET_S)))
        return float(recent) / span

    def utilization(self) -> float:
        """Spent / limit."""
        return float(self.spent / self.limit)

    def state_for(self, utilization: float) -> int:
        """0 ok, 1 warning, 2 critical, 3 emergency."""
        warning, critical, emergency = self.thresholds
        if utilization >= emergency:
            return 3
        if utilization >= critical:
            return 2
        if utilization >= warning:
            return 1
        return 0

    def projection(self, now: float) -> tuple[float, float | None]:
        """``(projected period-end spend, seconds until the limit or None when not burning)``."""
        rate = self.burn_rate(now)
        spent = float(self.spent)
        projected = spent + rate * max(self.period_end - now, 0.0)
        limit = float(self.limit)
        if spent >= limit:
            return projected, 0.0
        if rate <= 0:
            return projected, None
        return projected, (limit - spent) / rate


class BudgetTracker:
    """Budgets by name; thread-safe; see the module docstring for semantics and defaults."""

    def __init__(
        self,
        budgets: Sequence[Any],
        *,
        events: EventBus | None = None,
        state_path: str | os.PathLike[str] | None = None,
        save_interval: float = 10.0,
        projection_window: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.budgets = [Budget(b, projection_window_s=projection_window) for b in budgets]
        names = [b.name for b in self.budgets]
        if len(set(names)) != len(names):
            raise ValueError(f"budget names must be unique, got {names}")
        self.events = events if events is not None else EventBus()
        self._clock = clock
        self._lock = threading.Lock()
        self._static_cache: dict[tuple[str, tuple[str, ...], str], tuple[Budget, ...]] = {}
        if state_path is None:
            state_path = os.environ.get(ENV_STATE_FILE) or None
        self.state_path = os.fspath(state_path) if state_path is not None else None
        now = clock()
        for b in self.budgets:
            b.roll(now)
        self._changes = 0  # bumped on every change of spend; the saver skips unchanged state
        self._saved_changes = -1
        if self.state_path is not None:
            self._load(now)
        self._stop = threading.Event()
        self._saver: threading.Thread | None = None
        if self.state_path is not None and save_interval > 0:
            self._saver = threading.Thread(
                target=self._save_loop, args=(save_interval,), name="spansignals-budget-state", daemon=True
            )
            self._saver.start()
        self.families = self._build_families()

    # --- span path ------------------------------------------------------------------------------

    def record(
        self,
        amount: Decimal,
        *,
        provider: str,
        models: tuple[str, ...],
        service: str,
        attributes: Mapping[str, Any],
        resource: Mapping[str, Any],
    ) -> None:
        """Count ``amount`` USD toward every matching budget; may emit state-change events."""
        if not self.budgets or amount <= 0:
            return
        key = (provider, models, service)
        matched = self._static_cache.get(key)
        if matched is None:
            matched = tuple(b for b in self.budgets if b.matches_static(provider, models, service))
            if len(self._static_cache) >= 4096:
                self._static_cache.clear()
            self._static_cache[key] = matched
        if not matched:
            return
        now = self._clock()
        changes = []
        with self._lock:
            for b in matched:
                if b.attributes and not b.matches_attributes(attributes, resource):
                    continue
                b.roll(now)
                b.add(amount, now)
                self._changes += 1
                change = self._evaluate(b, now)
                if change is not None:
                    changes.append(change)
        for event in changes:
            self.events.emit(event)

    # --- state ----------------------------------------------------------------------------------

    def _evaluate(self, b: Budget, now: float) -> SignalEvent | None:
        """Recompute the state; return the event when it changed. Caller holds the lock."""
        utilization = b.utilization()
        state = b.state_for(utilization)
        if state == b.state:
            return None
        previous, b.state = b.state, state
        return self._event(b, now, utilization, previous)

    def _event(self, b: Budget, now: float, utilization: float, previous: int | None) -> SignalEvent:
        projected, ttl = b.projection(now)
        return SignalEvent(
            source="budget",
            name=b.name,
            state=STATE_NAMES[b.state],
            at=now,
            value=utilization,
            labels={"budget": b.name, "period": b.period},
            details={
                "limit_usd": str(b.limit),
                "spent_usd": str(b.spent),
                "projected_usd": projected,
                "time_to_limit_s": ttl,
                "period_start": dt.datetime.fromtimestamp(b.period_start, b.timezone).isoformat(),
                "period_end": dt.datetime.fromtimestamp(b.period_end, b.timezone).isoformat(),
                "previous_state": STATE_NAMES[previous] if previous is not None else None,
            },
        )

    def tick(self) -> None:
        """Roll budgets whose period ended (emitting ``ok`` events); called at every collection."""
        now = self._clock()
        changes = []
        with self._lock:
            for b in self.budgets:
                if not b.period_start <= now < b.period_end:
                    b.roll(now)
                    self._changes += 1
                    change = self._evaluate(b, now)
                    if change is not None:
                        changes.append(change)
        for event in changes:
            self.events.emit(event)

    def current_events(self) -> list[SignalEvent]:
        """The current state of every budget, as events (for a subscriber starting late)."""
        self.tick()
        now = self._clock()
        with self._lock:
            return [self._event(b, now, b.utilization(), None) for b in self.budgets]

    def get(self, name: str) -> Budget | None:
        """The budget called ``name``."""
        return next((b for b in self.budgets if b.name == name), None)

    # --- metrics --------------------------------------------------------------------------------

    def _rows(self) -> list[tuple[Budget, float, float, float | None]]:
        self.tick()
        now = self._clock()
        with self._lock:
            return [(b, b.utilization(), *b.projection(now)) for b in self.budgets]

    def _build_families(self) -> list[MetricFamily]:
        def per_period(
            value: Callable[[Budget, float, float, float | None], float | None],
        ) -> Callable[[], Any]:
            def callback() -> list[tuple[tuple[Any, ...], float]]:
                out = []
                for b, u, p, ttl in self._rows():
                    v = value(b, u, p, ttl)
                    if v is not None:
                        out.append(((b.name, b.period), v))
                return out

            return callback

        def per_budget(
            value: Callable[[Budget, float, float, float | None], float | None],
        ) -> Callable[[], Any]:
            def callback() -> list[tuple[tuple[Any, ...], float]]:
                out = []
                for b, u, p, ttl in self._rows():
                    v = value(b, u, p, ttl)
                    if v is not None:
                        out.append(((b.name,), v))
                return out

            return callback

        bp = ("budget", "period")
        return [
            GaugeFamily(
                "spansignals.budget.limit.usd",
                "Budget limit per period.",
                "{USD}",
                bp,
                callback=per_period(lambda b, u, p, t: float(b.limit)),
            ),
            GaugeFamily(
                "spansignals.budget.spent.usd",
                "Spend in the current budget period.",
                "{USD}",
                bp,
                callback=per_period(lambda b, u, p, t: float(b.spent)),
            ),
            GaugeFamily(
                "spansignals.budget.projected.usd",
                "Projected spend at the end of the period.",
                "{USD}",
                bp,
                callback=per_period(lambda b, u, p, t: p),
            ),
            GaugeFamily(
                "spansignals.budget.utilization.ratio",
                "Spent / limit.",
                "1",
                ("budget",),
                callback=per_budget(lambda b, u, p, t: u),
            ),
            GaugeFamily(
                "spansignals.budget.state",
                "0 ok, 1 warning, 2 critical, 3 emergency.",
                "1",
                ("budget",),
                callback=per_budget(lambda b, u, p, t: float(b.state)),
            ),
            GaugeFamily(
                "spansignals.budget.time_to_limit",
                "Time until the limit at the current burn.",
                "s",
                ("budget",),
                callback=per_budget(lambda b, u, p, t: t),
            ),
        ]

    # --- persistence ----------------------------------------------------------------------------

    def save(self, *, only_if_changed: bool = False) -> bool:
        """Write the state file now (atomically); ``False`` when there is none, nothing changed
        (with ``only_if_changed``) or writing failed."""
        path = self.state_path
        if path is None:
            return False
        with self._lock:
            if only_if_changed and self._changes == self._saved_changes:
                return False
            changes = self._changes
            data = {
                "version": 1,
                "saved_at": self._clock(),
                "budgets": {
                    b.name: {
                        "fingerprint": b.fingerprint,
                        "period_start": b.period_start,
                        "spent": str(b.spent),
                        "state": b.state,
                        "buckets": [[m, str(a)] for m, a in b.buckets],
                    }
                    for b in self.budgets
                },
            }
        try:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".budgets-", dir=directory)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(data, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                self._saved_changes = changes
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            _logger.warning("spansignals: cannot write budget state %s: %s", path, exc)
            return False
        return True

    def _load(self, now: float) -> None:
        path = self.state_path
        assert path is not None
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            _logger.warning("spansignals: ignoring unreadable budget state %s: %s", path, exc)
            return
        saved = data.get("budgets") if isinstance(data, dict) else None
        if not isinstance(saved, dict):
            return
        for b in self.budgets:
            entry = saved.get(b.name)
            if not isinstance(entry, dict) or entry.get("fingerprint") != b.fingerprint:
                continue
            if entry.get("period_start") != b.period_start:
                continue  # a new period began while we were down
            try:
                b.spent = Decimal(entry["spent"])
                b.state = int(entry.get("state", 0))
                b.buckets = deque([int(m), Decimal(a)] for m, a in entry.get("buckets", []))
            except Exception as exc:
                _logger.warning("spansignals: ignoring bad budget state for %s: %s", b.name, exc)
                b.spent, b.state, b.buckets = _ZERO, 0, deque()
                continue
            _logger.info("spansignals: budget %s restored: %s USD spent this %s", b.name, b.spent, b.period)

    def _save_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.save(only_if_changed=True)

    def shutdown(self) -> None:
        """Stop the saver and write the state one last time."""
        self._stop.set()
        if self._saver is not None:
            self._saver.join(timeout=5)
        self.save()
