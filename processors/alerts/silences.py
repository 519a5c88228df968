"""Silences and maintenance windows: both mute notifications of alerts whose labels match.

A :class:`Silence` has label matchers, an author and a comment, and is active either between
``starts_at`` and ``ends_at`` or, when recurring, whenever its schedule says so (a
:class:`~spansignals.processors.schedule.MaintenanceWindow` gives the recurrence: weekdays,
``HH:MM`` start and end, IANA timezone). Expired one-off silences are dropped. Maintenance
windows come from ``alerts.maintenance``: a window with ``mute: true`` (the default) silences
alerts matching its ``match`` (every alert when empty) while it is active. Muted alerts stay
listed (with ``muted_by``); they are only kept out of notifications.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .rules import labels_match

__all__ = ["ActiveWindow", "Silence", "SilenceStore"]


class ActiveWindow(Protocol):
    """Anything that knows whether it is active at a wall-clock instant (epoch seconds)."""

    def is_active(self, at: float) -> bool: ...


@dataclass
class Silence:
    """Mutes alerts matching ``matchers`` while active."""

    matchers: Mapping[str, str]
    starts_at: float | None = None
    ends_at: float | None = None
    schedule: ActiveWindow | None = None
    author: str = "unknown"
    comment: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def is_active(self, now: float) -> bool:
        """Within the one-off interval, or inside the recurring schedule (and its bounds)."""
        if self.starts_at is not None and now < self.starts_at:
            return False
        if self.ends_at is not None and now >= self.ends_at:
            return False
        if self.schedule is not None:
            return self.schedule.is_active(now)
        return True

    def expired(self, now: float) -> bool:
        """Whether it can never be active again."""
        return self.ends_at is not None and now >= self.ends_at

    def to_dict(self, now: float) -> dict[str, object]:
        """JSON-ready view for the management API."""
        return {
            "id": self.id,
            "matchers": dict(self.matchers),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "recurring": self.schedule is not None,
            "author": self.author,
            "comment": self.comment,
            "active": self.is_active(now),
        }


@dataclass(frozen=True)
class _Maintenance:
    name: str
    window: ActiveWindow
    matchers: Mapping[str, str]


class SilenceStore:
    """Silences (config and API) and muting maintenance windows; thread-safe."""

    def __init__(self) -> None:
        self._silences: dict[str, Silence] = {}
        self._maintenance: list[_Maintenance] = []
        self._lock = threading.Lock()

    def add(self, silence: Silence) -> Silence:
        """Add (or replace, by id) a silence."""
        if not silence.matchers:
            raise ValueError("a silence needs at least one matcher")
        with self._lock:
            self._silences[silence.id] = silence
        return silence

    def delete(self, silence_id: str) -> bool:
        """Remove a silence; whether it existed."""
        with self._lock:
            return self._silences.pop(silence_id, None) is not None

    def silences(self) -> list[Silence]:
        """Every silence held."""
        with self._lock:
            return list(self._silences.values())

    def add_maintenance(
        self, name: str, window: ActiveWindow, matchers: Mapping[str, str] | None = None
    ) -> None:
        """A maintenance window that mutes matching alerts (all when ``matchers`` is empty)."""
        with self._lock:
            self._maintenance.append(_Maintenance(name, window, dict(matchers or {})))

    def maintenance(self) -> list[tuple[str, ActiveWindow, Mapping[str, str]]]:
        """``(name, window, matchers)`` of every muting maintenance window."""
        with self._lock:
            return [(m.name, m.window, m.matchers) for m in self._maintenance]

    def expire(self, now: float) -> None:
        """Drop silences that ended."""
        with self._lock:
            for sid in [sid for sid, s in self._silences.items() if s.expired(now)]:
                del self._silences[sid]

    def muted_by(self, labels: Mapping[str, str], now: float) -> str | None:
        """``silence:<id>`` or ``maintenance:<name>`` muting ``labels`` now, else ``None``."""
        with self._lock:
            silences = list(self._silences.values())
            maintenance = list(self._maintenance)
        for s in silences:
            if s.is_active(now) and labels_match(labels, s.matchers):
                return f"silence:{s.id}"
        for m in maintenance:
            # literal: a window's ``match`` is shared with the SLO processor, which compares values
            if labels_match(labels, m.matchers, literal=True) and m.window.is_active(now):
                return f"maintenance:{m.name}"
        return None

    def active_ids(self, now: float) -> Iterable[str]:
        """Ids of silences active now."""
        return [s.id for s in self.silences() if s.is_active(now)]
