"""Fakes shared by the alerting tests: a settable clock, a gauge source, a recording worker."""

from __future__ import annotations

from spansignals.processors.alerts.channel import ReceiverChannel
from spansignals.processors.alerts.engine import AlertEngine
from spansignals.processors.alerts.notification import Notification
from spansignals.processors.families import GaugeFamily

T0 = 1_790_000_000.0  # a fixed wall-clock instant (2026-09-21, a Monday, 14:13:20 UTC)


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Recorder:
    """Stands in for a delivery worker: keeps what it is given."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def submit(self, notification: Notification) -> bool:
        self.sent.append(notification)
        return True

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 0) -> None:
        pass


def budget_gauge() -> GaugeFamily:
    """``spansignals_budget_state{budget,period}`` as the budget processor exposes it."""
    return GaugeFamily("spansignals.budget.state", "budget state", "1", ("budget", "period"))


def attach_recorders(
    engine: AlertEngine, *names: str, kind: str = "", **channel_kwargs: object
) -> dict[str, Recorder]:
    """Give ``engine`` a recording receiver channel for each name."""
    out = {}
    for name in names:
        rec = Recorder()
        engine.receivers[name] = ReceiverChannel(
            name,
            [rec],
            kind=kind,
            on_outcome=engine.count_outcome,
            **channel_kwargs,  # type: ignore[arg-type, list-item]
        )
        out[name] = rec
    return out
