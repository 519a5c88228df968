"""The alerting engine: evaluates rules on a background thread and drives notifications.

Every ``evaluation_interval`` (default 15 s), and soon after a budget, SLO or breaker reports an
event (bursts coalesced: at most one evaluation per ``event_debounce``, default 0.25 s), the
worker thread reads the signal engine's families and the latest events and updates the alert
lifecycle; every ``tick_interval`` (default 1 s) it routes, groups, inhibits, mutes, escalates
and hands notifications to the receivers' delivery workers. Nothing here runs on the span path:
the only span-path cost is an event subscriber that records the event and sets a flag, and
notifier I/O happens on per-destination threads behind bounded queues.

Exposes ``spansignals_alerts_active{alertname,severity,state}`` and
``spansignals_notifications_total{receiver,outcome}`` as families (register them with the
front door's producer). Thread-safe: the management API calls into it from its own thread.

Build one from a config with :func:`~.factory.build_alert_engine`; tests construct it directly
with a fake clock and call :meth:`AlertEngine.tick`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..engine import ProcessorErrors
from ..events import EventBus, SignalEvent
from ..families import CounterFamily, GaugeFamily, MetricFamily
from ..schedule import MaintenanceWindow
from .channel import ReceiverChannel
from .escalation import EscalationTracker
from .lifecycle import FIRING, Alert, AlertStore
from .notification import AlertSnapshot, Notification
from .notifiers.alertmanager import AlertmanagerFeed
from .routing import Dispatcher, Inhibitor, InhibitRule, Route
from .rules import AlertRule
from .signals import EventTable, SignalSnapshot
from .silences import Silence, SilenceStore

__all__ = ["AlertEngine", "notifications_family"]

_logger = logging.getLogger(__name__)


def notifications_family() -> CounterFamily:
    """``spansignals_notifications_total{receiver,outcome}``."""
    return CounterFamily(
        "spansignals.notifications",
        "Notification deliveries by receiver and outcome (sent, retried, failed, dropped, rate_limited).",
        "{notification}",
        ("receiver", "outcome"),
        max_series=512,
    )


class AlertEngine:
    """Rules → lifecycle → routing/silences/inhibition/escalation → receivers (see module doc)."""

    def __init__(
        self,
        rules: Sequence[AlertRule],
        *,
        routes: Sequence[Route] = (),
        receivers: Mapping[str, ReceiverChannel] | None = None,
        feeds: Mapping[str, AlertmanagerFeed] | None = None,
        inhibit_rules: Sequence[InhibitRule] = (),
        silences: SilenceStore | None = None,
        default_receiver: str | None = None,
        extra_labels: Mapping[str, str] | None = None,
        evaluation_interval: float = 15.0,
        tick_interval: float = 1.0,
        event_debounce: float = 0.25,
        resolved_retention: float = 900.0,
        families: Callable[[], Iterable[MetricFamily]] = list,
        events: EventBus | None = None,
        notifications: CounterFamily | None = None,
        errors: ProcessorErrors | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [r.name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"alert rule names must be unique, repeated: {dupes}")
        self.rules = tuple(rules)
        self.receivers: dict[str, ReceiverChannel] = dict(receivers or {})
        self.feeds: dict[str, AlertmanagerFeed] = dict(feeds or {})
        self.dispatcher = Dispatcher(routes, default_receiver=default_receiver)
        self.inhibitor = Inhibitor(inhibit_rules)
        self.silences = silences or SilenceStore()
        self.escalation = EscalationTracker()
        self.store = AlertStore(resolved_retention=resolved_retention)
        self.extra_labels = dict(extra_labels or {})
        self.evaluation_interval = evaluation_interval
        self.tick_interval = tick_interval
        self.event_debounce = event_debounce
        self.errors = errors or ProcessorErrors()
        self.notifications = notifications or notifications_family()
        self.active_family = GaugeFamily(
            "spansignals.alerts.active",
            "Alerts by name, severity and state (pending, firing).",
            "{alert}",
            ("alertname", "severity", "state"),
            callback=self._active_counts,
            max_series=512,
        )
        self._families = families
        self._events = EventTable()
        self._clock = clock
        self._lock = threading.RLock()
        self._next_eval = 0.0
        self._last_eval = float("-inf")
        self._dirty = False
        self._muted: dict[str, str | None] = {}
        self._counts: dict[tuple[str, str, str], int] = {}
        self._seen_counts: set[tuple[str, str, str]] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe = events.subscribe(self.on_event) if events is not None else None
        self.api: Any = None  # the management API server, when one was started for this engine

    # --- inputs ------------------------------------------------------------------------------

    def on_event(self, event: SignalEvent) -> None:
        """Event-bus subscriber (runs on the emitter's thread, often the span path): record, wake."""
        self._events.record(event)
        self._dirty = True
        self._wake.set()

    def count_outcome(self, receiver: str, outcome: str) -> None:
        """Count one delivery outcome (called by delivery workers)."""
        self.notifications.add((receiver, outcome), 1)

    # --- the worker --------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[Notification]:
        """Evaluate if due, then route and hand out notifications; returns what was handed out."""
        now = self._clock() if now is None else now
        with self._lock:
            if now >= self._next_eval or (self._dirty and now - self._last_eval >= self.event_debounce):
                self._dirty = False
                self._next_eval = now + self.evaluation_interval
                self._last_eval = now
                self._evaluate(now)
            notes = self._dispatch(now)
            for channel in self.receivers.values():
                channel.tick(now)
        for note in notes:
            channel_for = self.receivers.get(note.receiver)
            if channel_for is None:
                _logger.warning("spansignals: no receiver named %s; notification dropped", note.receiver)
                self.count_outcome(note.receiver, "dropped")
                continue
            channel_for.offer(note, now)
        return notes

    def _evaluate(self, now: float) -> None:
        try:
            snapshot = SignalSnapshot.take(self._families, self._events)
        except Exception as exc:
            self.errors.record("alerts", exc)
            return
        for rule in self.rules:
            try:
                self.store.apply(rule, list(rule.evaluate(snapshot, self.extra_labels)), now)
            except Exception as exc:
                self.errors.record("alerts", exc)
        self.silences.expire(now)

    def _dispatch(self, now: float) -> list[Notification]:
        alerts = self.store.alerts()
        self.inhibitor.update(alerts)
        self._muted = {a.fingerprint: self._muted_by(a, now) for a in alerts}
        self._counts = dict(self.store.counts())

        def muted(alert: Alert) -> bool:
            return self._muted.get(alert.fingerprint) is not None

        notes = self.dispatcher.tick(alerts, now, muted, skip=self.feeds.__contains__)
        notes += self.escalation.tick(alerts, now, lambda a: self.dispatcher.routes_for(a.labels), muted)
        for receiver, feed in self.feeds.items():
            routed = [
                a
                for a in alerts
                if not muted(a) and any(r.receiver == receiver for r in self.dispatcher.routes_for(a.labels))
            ]
            note = feed.tick(routed, now)
            if note is not None:
                notes.append(note)
        return notes

    def _muted_by(self, alert: Alert, now: float) -> str | None:
        reason = self.silences.muted_by(alert.labels, now)
        if reason is None and alert.state == FIRING:
            src = self.inhibitor.inhibited_by(alert)
            if src is not None:
                reason = f"inhibited:{src}"
        return reason

    def _active_counts(self) -> list[tuple[tuple[str, str, str], float]]:
        counts = self._counts
        self._seen_counts.update(counts)
        return [(key, float(counts.get(key, 0))) for key in sorted(self._seen_counts)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:
                self.errors.record("alerts", exc)
            self._wake.wait(self.tick_interval)
            self._wake.clear()
            if self._dirty:  # coalesce bursts of events: at most one evaluation per event_debounce
                self._stop.wait(max(0.0, self._last_eval + self.event_debounce - self._clock()))

    def start(self) -> None:
        """Start delivery workers and the evaluation thread (idempotent)."""
        if self._thread is not None:
            return
        for channel in self.receivers.values():
            channel.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="spansignals-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop evaluating, then give queued notifications up to ``timeout`` to go out.

        Also stops the management API started with it. Never raises."""
        api, self.api = self.api, None
        if api is not None:
            try:
                api.stop()
            except Exception as exc:
                self.errors.record("alerts", exc)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if thread is not None:
            thread.join(timeout)
        for channel in self.receivers.values():
            try:
                channel.stop(max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                self.errors.record("alerts", exc)

    shutdown = stop

    def metric_families(self) -> list[MetricFamily]:
        """The alerting families (active alerts gauge, notifications counter)."""
        return [self.active_family, self.notifications]

    # --- the management surface (thread-safe) ------------------------------------------------

    def now(self) -> float:
        """The engine's clock (wall-clock seconds)."""
        return self._clock()

    def list_alerts(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every alert with its state, mute reason and escalation, newest first."""
        with self._lock:
            out = []
            for a in sorted(self.store.alerts(), key=lambda a: a.active_at, reverse=True):
                d = a.to_dict()
                d["muted_by"] = self._muted.get(a.fingerprint)
                d["escalated_to"] = self.escalation.escalated_to(a.fingerprint)
                d["receivers"] = [r.receiver for r in self.dispatcher.routes_for(a.labels)]
                out.append(d)
            return out

    def acknowledge(self, fingerprint: str, by: str, now: float | None = None) -> dict[str, Any] | None:
        """Acknowledge an alert: escalation stops; PagerDuty receivers get an acknowledge event."""
        now = self._clock() if now is None else now
        with self._lock:
            alert = self.store.acknowledge(fingerprint, by, now)
            if alert is None:
                return None
            receivers = {r.receiver for r in self.dispatcher.routes_for(alert.labels)}
            receivers.update(self.escalation.escalated_to(fingerprint))
            snap = (AlertSnapshot.of(alert),)
            result = alert.to_dict()
        for name in sorted(receivers):
            channel = self.receivers.get(name)
            if channel is not None and channel.kind == "pagerduty" and alert.state == FIRING:
                channel.offer(Notification(name, f"ack:{fingerprint}", snap, {}, "acknowledge", now), now)
        return result

    def resolve(self, fingerprint: str, now: float | None = None) -> dict[str, Any] | None:
        """Resolve an alert by hand (notified as resolved on the next tick)."""
        now = self._clock() if now is None else now
        with self._lock:
            alert = self.store.resolve(fingerprint, now)
            result = None if alert is None else alert.to_dict()
        self._wake.set()
        return result

    def add_silence(self, silence: Silence) -> Silence:
        """Add a silence (effective on the next tick)."""
        self.silences.add(silence)
        self._wake.set()
        return silence

    def delete_silence(self, silence_id: str) -> bool:
        """Remove a silence."""
        return self.silences.delete(silence_id)

    def list_silences(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every silence, with whether it is active now."""
        now = self._clock() if now is None else now
        return [s.to_dict(now) for s in self.silences.silences()]

    def add_maintenance(self, window: MaintenanceWindow) -> None:
        """Add a muting maintenance window (its ``match`` selects the alerts)."""
        self.silences.add_maintenance(window.name, window, window.match)
        self._wake.set()

    def list_maintenance(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every muting maintenance window, with whether it is active now."""
        now = self._clock() if now is None else now
        return [
            {
                "name": name,
                "match": dict(match),
                "active": window.is_active(now),
                "recurring": bool(getattr(window, "recurring", False)),
            }
            for name, window, match in self.silences.maintenance()
        ]
