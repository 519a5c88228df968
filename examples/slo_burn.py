"""SLOs in-process: error budget, multi-window burn rates, a page, and maintenance that corrects the math.

Run:   python examples/slo_burn.py          (about 2 seconds)
Needs: spansignals installed (``pip install -e .``); no network, no servers.

What it does: an OTel SDK ``TracerProvider`` with spansignals' ``SloSpanProcessor`` for one
availability SLO (99.9% over 30 days, ``exclude_maintenance: true``) and a simulated clock, so
days of traffic take seconds and nothing sleeps. Server spans are created with explicit
timestamps, one every 10 seconds, and the burn conditions are evaluated every 5 minutes:

1. 2 days at 0.02% errors: the state stays ``ok``;
2. a 20-minute incident at 5% errors: the 14.4x page condition (1h and 5m windows) fires and a
   ``SignalEvent(source="slo", state="page")`` is printed;
3. 40 clean minutes: the 5m window has recovered, so the page clears although the 1h burn rate is
   still 16.7x (that is what the short window is for);
4. a deploy inside the ``weekly-deploy`` maintenance window (Mondays 23:00-23:59 UTC) fails every
   request for 30 minutes: those events are excluded (counted in
   ``spansignals_slo_excluded_events_total``) and the error budget does not move.

Expect ``event: checkout-availability -> page (14.4x 1h/5m, 1h burn 16.7x)``, ``event:
checkout-availability -> ok (clear)``, ``maintenance: 180 events excluded, budget left 49.0% before
and 49.0% after`` and a final ``ok: paged on the incident, recovered, maintenance excluded``.
"""

from __future__ import annotations

import datetime as dt

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from spansignals.processors.config import load_config
from spansignals.processors.events import SignalEvent
from spansignals.processors.slo import SloSpanProcessor

START = dt.datetime(2026, 11, 21, 0, 0, tzinfo=dt.timezone.utc)  # a Saturday
CONFIG = {
    "service": {"name": "checkout-api"},
    "slos": [
        {
            "name": "checkout-availability",
            "match": {"service": "checkout-api", "span_kind": "server"},
            "objective": 0.999,
            "period": "30d",
            "exclude_maintenance": True,
        }
    ],
    "alerts": {
        "maintenance": [
            {"name": "weekly-deploy", "schedule": {"weekdays": ["mon"], "start": "23:00", "end": "23:59"}}
        ]
    },
}


class SimulatedClock:
    """Seconds since the epoch, moved forward by the script."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now


def main() -> None:
    config = load_config(CONFIG)
    clock = SimulatedClock(START)
    slo = SloSpanProcessor(config.slos, maintenance=config.alerts.maintenance, clock=clock)
    events: list[SignalEvent] = []
    slo.events.subscribe(events.append)
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout-api"}))
    provider.add_span_processor(slo)
    tracer = provider.get_tracer("example")

    def traffic(minutes: int, errors_per_10k: int) -> None:
        """One request every 10 s; ``errors_per_10k`` of each 10,000 fail; evaluate every 5 minutes."""
        for i in range(minutes * 6):
            clock.now += 10
            end_ns = int(clock.now * 1e9)
            span = tracer.start_span("GET /cart", kind=SpanKind.SERVER, start_time=end_ns - 80_000_000)
            if errors_per_10k and i % (10_000 // errors_per_10k) == 10_000 // errors_per_10k - 1:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=end_ns)
            if i % 30 == 29:
                slo.evaluate()

    def show(step: str) -> dict:
        status = slo.evaluate()["checkout-availability"]
        rates = ", ".join(f"{w} {status.burn_rates[w]:.1f}x" for w in ("5m", "1h", "6h", "30d"))
        print(f"{step}: state {status.state}; burn {rates}; budget left {status.error_budget_remaining:.1%}")
        return {"state": status.state, "budget": status.error_budget_remaining}

    printed = 0

    def print_events() -> None:
        nonlocal printed
        for event in events[printed:]:
            d = event.details
            why = (
                f"{d['condition']}, {d['long_window']} burn {d['long_burn_rate']:.1f}x"
                if "condition" in d
                else "clear"
            )
            print(f"event: {event.name} -> {event.state} ({why})")
        printed = len(events)

    traffic(2 * 24 * 60, 2)
    healthy = show("after 2 days at 0.02% errors")
    traffic(20, 500)
    print_events()
    incident = show("after a 20 min incident at 5% errors")
    traffic(40, 0)
    print_events()
    before = show("40 clean minutes later")

    clock.now = (START + dt.timedelta(days=2, hours=23)).timestamp()  # Monday 23:00: the deploy window
    traffic(30, 10_000)  # every request fails during the deploy
    after = show("after a 30 min deploy inside weekly-deploy")
    excluded = slo.excluded_events_total.value(("checkout-availability", "checkout-api", "weekly-deploy"))
    print(
        f"maintenance: {excluded:.0f} events excluded, budget left {before['budget']:.1%} before "
        f"and {after['budget']:.1%} after"
    )
    provider.shutdown()

    states = [e.state for e in events]
    ok = (
        healthy["state"] == "ok"
        and incident["state"] == "page"
        and states[:1] == ["page"]
        and states[-1] == "ok"
        and excluded == 180
        and after["budget"] == before["budget"]
    )
    print("ok: paged on the incident, recovered, maintenance excluded" if ok else f"UNEXPECTED: {states}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
