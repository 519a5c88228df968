"""Maintenance windows: when is a one-off or recurring window active?

Shared by the SLO processor (maintenance correction) and the alerting engine (muting). Built from
``alerts.maintenance`` entries (:class:`~spansignals.processors.config.alerts.MaintenanceConfig`)
with :meth:`MaintenanceWindow.from_config`.

Semantics, precisely:

- **One-off** (``starts_at``/``ends_at``): active for instants ``starts_at <= t < ends_at``.
  A timestamp written without a UTC offset is taken as UTC.
- **Recurring** (``schedule``: ``weekdays``, ``start``, ``end`` as HH:MM, ``timezone``): active
  for every instant whose *local wall-clock time* in ``timezone`` lies in ``[start, end)`` on a
  listed weekday. When ``end <= start`` the window crosses midnight: it starts on a listed
  weekday at ``start`` and ends at ``end`` on the following day (so ``sat 22:00-02:00`` covers
  Saturday night into Sunday morning). ``start == end`` means a whole day from ``start``.
- **Daylight saving time** follows from the wall-clock rule: on a spring-forward day a window
  inside the skipped hour does not happen and one that straddles it is shorter; on a fall-back
  day every instant whose local time is in the window counts, so ``01:00-02:00`` over the
  repeated hour lasts two hours.

:meth:`MaintenanceWindow.is_active` is exact; :meth:`MaintenanceWindow.next_change` gives the next
instant at which the state may change, which :class:`ActiveCache` uses to answer the per-span
question with two float comparisons most of the time.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["WEEKDAYS", "ActiveCache", "MaintenanceWindow", "windows_from_config"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = 86400.0


def _to_timestamp(at: dt.datetime | float) -> float:
    if isinstance(at, dt.datetime):
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.timezone.utc)
        return at.timestamp()
    return float(at)


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.partition(":")
    return int(hours) * 60 + int(minutes)


class MaintenanceWindow:
    """One maintenance window, one-off or recurring (see the module docstring for semantics).

    ``match`` is carried for the consumers (label matchers deciding which alerts or SLOs a window
    concerns); this class only answers *when*.
    """

    def __init__(
        self,
        name: str,
        *,
        starts_at: dt.datetime | float | None = None,
        ends_at: dt.datetime | float | None = None,
        weekdays: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        timezone: str = "UTC",
        match: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.match: Mapping[str, str] = dict(match or {})
        one_off = starts_at is not None or ends_at is not None
        recurring = start is not None or end is not None
        if one_off == recurring:
            raise ValueError(f"maintenance window {name!r}: give either starts_at/ends_at or start/end")
        self._starts_at: float | None = None
        self._ends_at: float | None = None
        if one_off:
            if starts_at is None or ends_at is None:
                raise ValueError(f"maintenance window {name!r}: a one-off window needs starts_at and ends_at")
            self._starts_at, self._ends_at = _to_timestamp(starts_at), _to_timestamp(ends_at)
            if self._ends_at <= self._starts_at:
                raise ValueError(f"maintenance window {name!r}: starts_at must be before ends_at")
            return
        if start is None or end is None:
            raise ValueError(f"maintenance window {name!r}: a recurring window needs start and end")
        days = list(weekdays) if weekdays is not None else list(WEEKDAYS)
        unknown = [d for d in days if d not in WEEKDAYS]
        if unknown:
            raise ValueError(f"maintenance window {name!r}: unknown weekdays {unknown}")
        self._days = frozenset(WEEKDAYS.index(d) for d in days)
        self._start_min = _minutes(start)
        end_min = _minutes(end)
        # Length in minutes; end <= start crosses midnight (equal: a whole day).
        self._length_min = (end_min - self._start_min) % 1440 or 1440
        self._tz = ZoneInfo(timezone)

    @classmethod
    def from_config(cls, config: Any) -> MaintenanceWindow:
        """Build from a ``MaintenanceConfig`` (``alerts.maintenance`` / ``slos[i].maintenance``)."""
        schedule = config.schedule
        if schedule is not None:
            return cls(
                config.name,
                weekdays=schedule.weekdays,
                start=schedule.start,
                end=schedule.end,
                timezone=schedule.timezone,
                match=config.match,
            )
        return cls(config.name, starts_at=config.starts_at, ends_at=config.ends_at, match=config.match)

    @property
    def recurring(self) -> bool:
        """Whether this is a weekly schedule (else a one-off window)."""
        return self._starts_at is None

    def is_active(self, at: dt.datetime | float) -> bool:
        """Whether the window covers instant ``at`` (a datetime, naive = UTC, or epoch seconds)."""
        t = _to_timestamp(at)
        if self._starts_at is not None:
            return self._starts_at <= t < self._ends_at  # type: ignore[operator]
        local = dt.datetime.fromtimestamp(t, self._tz)
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        weekday = local.weekday()
        # Minutes since ``start`` on the day the occurrence began: today, or yesterday when the
        # window runs past midnight.
        since_today = minute - self._start_min
        if since_today >= 0 and weekday in self._days and since_today < self._length_min:
            return True
        since_yesterday = since_today + 1440
        return (weekday - 1) % 7 in self._days and since_yesterday < self._length_min

    def next_change(self, at: dt.datetime | float) -> float:
        """An instant after ``at`` before which :meth:`is_active` cannot change (``inf``: never).

        Exact for one-off windows. For schedules it is the earliest candidate boundary; around
        DST transitions it may come early (then the state simply has not changed yet), never late.
        """
        t = _to_timestamp(at)
        if self._starts_at is not None:
            for edge in (self._starts_at, self._ends_at):
                if edge > t:  # type: ignore[operator]
                    return edge  # type: ignore[return-value]
            return math.inf
        local_date = dt.datetime.fromtimestamp(t, self._tz).date()
        best = math.inf
        for offset in range(-1, 9):
            day = local_date + dt.timedelta(days=offset)
            if day.weekday() not in self._days:
                continue
            begin = dt.datetime(day.year, day.month, day.day, tzinfo=self._tz) + dt.timedelta(
                minutes=self._start_min
            )
            finish_naive = begin.replace(tzinfo=None) + dt.timedelta(minutes=self._length_min)
            for wall in (begin.replace(tzinfo=None), finish_naive):
                for fold in (0, 1):
                    edge = wall.replace(tzinfo=self._tz, fold=fold).timestamp()
                    if t < edge < best:
                        best = edge
            if best < math.inf and offset >= 1:
                break
        return best

    def occurrences(self, start: dt.datetime | float, end: dt.datetime | float) -> list[tuple[float, float]]:
        """The active intervals ``[from, to)`` (epoch seconds) clipped to ``[start, end)``."""
        t, stop = _to_timestamp(start), _to_timestamp(end)
        out: list[tuple[float, float]] = []
        while t < stop:
            change = min(self.next_change(t), stop)
            if self.is_active(t):
                if out and out[-1][1] == t:
                    out[-1] = (out[-1][0], change)
                else:
                    out.append((t, change))
            t = change
        return out

    def __repr__(self) -> str:
        if self._starts_at is not None:
            return f"MaintenanceWindow({self.name!r}, {self._starts_at:g}..{self._ends_at:g})"
        days = ",".join(WEEKDAYS[d] for d in sorted(self._days))
        span = f"+{self._start_min}min for {self._length_min}min"
        return f"MaintenanceWindow({self.name!r}, {days} {span}, {self._tz})"


def windows_from_config(configs: Iterable[Any]) -> list[MaintenanceWindow]:
    """:class:`MaintenanceWindow` for each ``MaintenanceConfig``."""
    return [MaintenanceWindow.from_config(c) for c in configs]


class ActiveCache:
    """Which of ``windows`` is active at ``t``, cached between state changes.

    For the span path: while ``t`` stays inside the interval over which the answer is known to be
    constant, :meth:`active` is two comparisons. Safe to share between threads (a stale read only
    costs a recomputation).
    """

    __slots__ = ("_state", "_windows")

    def __init__(self, windows: Sequence[MaintenanceWindow]) -> None:
        self._windows = tuple(windows)
        self._state: tuple[float, float, str | None] = (math.inf, -math.inf, None)

    def which(self, t: float) -> str | None:
        """The name of the first window (in the given order) active at epoch second ``t``, or None."""
        lo, hi, name = self._state
        if lo <= t < hi:
            return name
        if not self._windows:
            return None
        name = next((w.name for w in self._windows if w.is_active(t)), None)
        hi = min(w.next_change(t) for w in self._windows)
        self._state = (t, hi, name)
        return name

    def active(self, t: float) -> bool:
        """Whether any window covers epoch second ``t``."""
        return self.which(t) is not None
