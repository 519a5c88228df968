"""Routing, grouping and inhibition with Alertmanager's semantics.

Routes are tried in order; the first whose matchers hold takes the alert, and later routes are
tried too only when it has ``continue: true``. Alerts no route matches go to the default
receiver, if one is configured. Within a route, alerts are grouped by the values of its
``group_by`` labels (``...`` groups by every label): a new group is first notified after
``group_wait``; afterwards it is checked every ``group_interval`` and notified when an alert
started firing or a notified alert resolved, or else every ``repeat_interval`` while anything
fires. Muted alerts (silence, maintenance, inhibition) are left out of notifications.

Inhibition: a firing alert matching an inhibit rule's ``source_match`` mutes alerts matching its
``target_match`` when the ``equal`` labels have the same values (critical mutes warning for the
same service).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .lifecycle import FIRING, PENDING, RESOLVED, Alert
from .notification import AlertSnapshot, Notification
from .rules import labels_match

__all__ = ["AggregationGroup", "Dispatcher", "InhibitRule", "Inhibitor", "Route"]


@dataclass(frozen=True)
class Route:
    """One route (times in seconds). ``index`` keeps group keys of equal routes apart."""

    receiver: str
    matchers: Mapping[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 14400.0
    continue_: bool = False
    escalation: tuple[tuple[float, str], ...] = ()
    index: int = 0

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that identify this alert's group."""
        if "..." in self.group_by:
            return dict(sorted(labels.items()))
        return {k: labels.get(k, "") for k in self.group_by}


@dataclass(frozen=True)
class InhibitRule:
    """Firing ``source`` alerts mute ``target`` alerts that agree on the ``equal`` labels."""

    source_match: Mapping[str, str]
    target_match: Mapping[str, str]
    equal: tuple[str, ...] = ()


class Inhibitor:
    """Decides which alerts are inhibited, given the firing alerts of one evaluation."""

    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self.rules = tuple(rules)
        self._sources: list[tuple[InhibitRule, list[Alert]]] = []

    def update(self, alerts: Iterable[Alert]) -> None:
        """Remember the firing alerts that act as sources."""
        firing = [a for a in alerts if a.state == FIRING]
        self._sources = [
            (r, [a for a in firing if labels_match(a.labels, r.source_match)]) for r in self.rules
        ]

    def inhibited_by(self, alert: Alert) -> str | None:
        """Fingerprint of an alert inhibiting ``alert``, else ``None``."""
        for rule, sources in self._sources:
            if not sources or not labels_match(alert.labels, rule.target_match):
                continue
            for src in sources:
                if src.fingerprint == alert.fingerprint:
                    continue
                if all(src.labels.get(k, "") == alert.labels.get(k, "") for k in rule.equal):
                    return src.fingerprint
        return None


class AggregationGroup:
    """Alerts of one route sharing group-label values, and what was last notified."""

    def __init__(self, route: Route, labels: Mapping[str, str], now: float) -> None:
        self.route = route
        self.labels = dict(labels)
        digest = hashlib.sha256(repr((route.index, sorted(labels.items()))).encode()).hexdigest()[:16]
        self.key = f"{route.index}:{digest}"
        self.alerts: dict[str, Alert] = {}
        self.next_flush_at = now + route.group_wait
        self.last_notified_at: float | None = None
        self.notified_firing: set[str] = set()

    def flush(self, now: float, muted: Callable[[Alert], bool]) -> Notification | None:
        """Decide whether to notify now; updates the group's memory of what was sent."""
        self.next_flush_at = now + self.route.group_interval
        firing = {fp: a for fp, a in self.alerts.items() if a.state == FIRING and not muted(a)}
        resolved = {
            fp: a for fp, a in self.alerts.items() if a.state == RESOLVED and fp in self.notified_firing
        }
        new_firing = set(firing) - self.notified_firing
        repeat_due = (
            bool(firing)
            and self.last_notified_at is not None
            and now - self.last_notified_at >= self.route.repeat_interval
        )
        for fp in [fp for fp, a in self.alerts.items() if a.state == RESOLVED]:
            del self.alerts[fp]  # a resolution is notified once (or never, if never notified firing)
        if not (new_firing or resolved or repeat_due):
            self.notified_firing &= set(self.alerts)
            return None
        self.notified_firing = set(firing)
        self.last_notified_at = now
        snapshots = tuple(AlertSnapshot.of(a) for a in [*firing.values(), *resolved.values()])
        return Notification(self.route.receiver, self.key, snapshots, self.labels, "group", now)


class Dispatcher:
    """Routes alerts into aggregation groups and produces due notifications."""

    def __init__(self, routes: Sequence[Route], *, default_receiver: str | None = None) -> None:
        self.routes = tuple(routes)
        self.default_route = (
            Route(default_receiver, group_wait=30.0, index=len(self.routes)) if default_receiver else None
        )
        self._groups: dict[str, AggregationGroup] = {}

    def routes_for(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with ``labels`` takes."""
        out: list[Route] = []
        for route in self.routes:
            if labels_match(labels, route.matchers):
                out.append(route)
                if not route.continue_:
                    return out
        if not out and self.default_route is not None:
            out.append(self.default_route)
        return out

    def tick(
        self, alerts: Iterable[Alert], now: float, muted: Callable[[Alert], bool], skip: Callable[[str], bool]
    ) -> list[Notification]:
        """Group ``alerts`` and return notifications due at ``now``.

        ``skip(receiver)`` excludes receivers that take alerts directly (Alertmanager).
        """
        present: set[str] = set()
        for alert in alerts:
            if alert.state == PENDING:
                continue
            present.add(alert.fingerprint)
            for route in self.routes_for(alert.labels):
                if skip(route.receiver):
                    continue
                glabels = route.group_labels(alert.labels)
                probe = AggregationGroup(route, glabels, now)
                group = self._groups.get(probe.key)
                if group is None:
                    if alert.state == RESOLVED:
                        continue  # nothing was ever sent about it
                    group = self._groups[probe.key] = probe
                group.alerts[alert.fingerprint] = alert
        out: list[Notification] = []
        for key, group in list(self._groups.items()):
            for fp in [fp for fp in group.alerts if fp not in present]:
                del group.alerts[fp]
            if now >= group.next_flush_at:
                note = group.flush(now, muted)
                if note is not None:
                    out.append(note)
            if not group.alerts:
                del self._groups[key]
        return out

    def groups(self) -> list[AggregationGroup]:
        """Current aggregation groups (for the API and tests)."""
        return list(self._groups.values())
