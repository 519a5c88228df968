"""SLO processor: classification, rolling burn rates vs reference math, conditions, maintenance."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from spansignals.processors import SignalMetricProducer, SpanView
from spansignals.processors.config import load_config
from spansignals.processors.config.alerts import MaintenanceConfig
from spansignals.processors.config.slos import SloConfig
from spansignals.processors.events import SignalEvent
from spansignals.processors.factory import build_engine
from spansignals.processors.producer import attach_producer
from spansignals.processors.slo import SloSpanProcessor

T0 = 1_800_000_000.0  # a multiple of 300 s: bucket boundaries are easy to reason about
assert T0 % 300 == 0

WINDOWS = {"5m": 300, "30m": 1800, "1h": 3600, "2h": 7200, "6h": 21600, "1d": 86400, "3d": 259200}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def span(
    t: float,
    *,
    error: bool = False,
    duration: float = 0.1,
    service: str = "checkout-api",
    name: str = "GET /",
    kind: int = 2,
    attributes: dict[str, Any] | None = None,
    weight: float = 1.0,
) -> SpanView:
    end = round(t * 1e9)
    return SpanView(
        name,
        kind,
        end - int(duration * 1e9),
        end,
        2 if error else 0,
        attributes or {},
        {"service.name": service},
        weight=weight,
    )


def slo(**kwargs: Any) -> SloConfig:
    kwargs.setdefault("name", "avail")
    kwargs.setdefault("objective", 0.999)
    return SloConfig.model_validate(kwargs)


def feed(proc: SloSpanProcessor, clock: Clock, events: list[tuple[float, float, bool]]) -> None:
    for t, weight, bad in events:
        clock.now = t
        proc.observe(span(t, error=bad, weight=weight))


def reference_burn(
    events: list[tuple[float, float, bool]], now: float, window: float, objective: float
) -> float:
    """Textbook burn rate over (now - window, now], straight from the event list."""
    total = sum(w for t, w, _ in events if now - window < t <= now)
    bad = sum(w for t, w, b in events if b and now - window < t <= now)
    return 0.0 if total == 0 else (bad / total) / (1 - objective)


def scripted_stream(start: float, seconds: int, step: int = 10) -> list[tuple[float, float, bool]]:
    """Deterministic traffic with an error rate that changes hour by hour and sampled (weighted) spans."""
    events = []
    for i, t in enumerate(range(int(start), int(start) + seconds, step)):
        hour = (t - int(start)) // 3600
        bad_every = (7, 50, 400, 13, 1000, 3)[hour % 6]
        weight = 4.0 if i % 5 == 0 else 1.0
        events.append((float(t), weight, i % bad_every == 0))
    return events


def test_burn_rates_and_budget_equal_the_reference_math_on_a_scripted_stream():
    """Each window's burn rate and the budget left match the formulas on raw events (4d period, 6d data)."""
    clock = Clock(T0)
    proc = SloSpanProcessor([slo(period="4d")], clock=clock)
    events = scripted_stream(T0, 6 * 86400)
    feed(proc, clock, events[: len(events) // 2])
    checkpoints = [T0 + 3 * 86400 - 0.5, T0 + 6 * 86400 - 0.5]
    # Evaluation at the end of a 5 min bucket: the window holds exactly the events in (now - W, now].
    status = proc.evaluate(checkpoints[0])["avail"]
    for label, seconds in WINDOWS.items():
        assert status.burn_rates[label] == pytest.approx(
            reference_burn(events, checkpoints[0], seconds, 0.999), rel=1e-12
        )
    feed(proc, clock, events[len(events) // 2 :])
    status = proc.evaluate(checkpoints[1])["avail"]
    for label, seconds in {**WINDOWS, "4d": 4 * 86400}.items():
        assert status.burn_rates[label] == pytest.approx(
            reference_burn(events, checkpoints[1], seconds, 0.999), rel=1e-12
        )
    period_burn = reference_burn(events, checkpoints[1], 4 * 86400, 0.999)
    assert status.error_budget_remaining == pytest.approx(1 - period_burn, rel=1e-12)
    total = sum(w for _, w, _ in events)
    assert proc.events_total.value(("avail", "checkout-api")) == total


def test_window_covers_the_documented_bucket_range_between_boundaries():
    """Mid-bucket, a window holds the events since (floor(now/width)+1)*width - W (the resolution rule)."""
    clock = Clock(T0)
    proc = SloSpanProcessor([slo()], clock=clock)
    events = [(T0 + s, 1.0, s % 3 == 0) for s in range(0, 3 * 3600, 7)]
    feed(proc, clock, events)
    now = T0 + 3 * 3600 - 123.0
    status = proc.evaluate(now)["avail"]
    for label, width in (("5m", 10), ("1h", 10), ("2h", 10)):
        seconds = WINDOWS[label]
        start = (now // width + 1) * width - seconds
        in_window = [(t, w, b) for t, w, b in events if start <= t <= now]
        expected = sum(w for _, w, b in in_window if b) / sum(w for _, w, _ in in_window) / 0.001
        assert status.burn_rates[label] == pytest.approx(expected, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.integers(0, 3 * 86400), st.sampled_from([1.0, 2.0, 4.0]), st.booleans()),
        min_size=1,
        max_size=300,
    ),
    now_extra=st.integers(0, 3000),
)
def test_windows_match_the_documented_rule_for_random_out_of_order_streams(events, now_extra):
    """Random, unordered, weighted events over 3 days: every window sums what the resolution rule says."""
    now = T0 + 3 * 86400 + now_extra
    proc = SloSpanProcessor([slo(period="4d")], clock=Clock(now))
    for offset, weight, bad in events:
        proc.observe(span(T0 + offset, error=bad, weight=weight))
    status = proc.evaluate(now)["avail"]
    for label, seconds in {**WINDOWS, "4d": 4 * 86400}.items():
        width = 10 if seconds <= 6 * 3600 else 300
        start = (now // width + 1) * width - seconds
        total = sum(w for o, w, _ in events if start <= T0 + o <= now)
        bad = sum(w for o, w, b in events if b and start <= T0 + o <= now)
        assert status.window_events[label] == (total, bad)


def test_no_traffic_burns_nothing_and_keeps_the_whole_budget():
    """Without events every burn rate is 0 and the budget remaining is 1."""
    proc = SloSpanProcessor([slo()], clock=Clock(T0))
    status = proc.evaluate()["avail"]
    assert set(status.burn_rates.values()) == {0.0}
    assert status.error_budget_remaining == 1.0
    assert status.state == "ok"


@pytest.mark.parametrize(
    ("bad_per_10k", "state", "firing"),
    [
        # 144 / 10,000 = 14.4 x a 0.1% budget: the fast page fires exactly at its threshold...
        (144, "page", ("14.4x 1h/5m", "6x 6h/30m", "3x 1d/2h", "1x 3d/6h")),
        # ...and a hair below it only the slower conditions hold.
        (143, "page", ("6x 6h/30m", "3x 1d/2h", "1x 3d/6h")),
        # Sustained 10x: 14.4x stays quiet while 6x fires.
        (100, "page", ("6x 6h/30m", "3x 1d/2h", "1x 3d/6h")),
        # 6x exactly fires; 5.9x does not page.
        (60, "page", ("6x 6h/30m", "3x 1d/2h", "1x 3d/6h")),
        (59, "ticket", ("3x 1d/2h", "1x 3d/6h")),
        # 3x exactly tickets; 2x: no page, no 3x, the 1x ticket does.
        (30, "ticket", ("3x 1d/2h", "1x 3d/6h")),
        (20, "ticket", ("1x 3d/6h",)),
        (10, "ticket", ("1x 3d/6h",)),
        (9, "ok", ()),
    ],
)
def test_each_burn_condition_fires_at_its_threshold_and_stays_quiet_below(bad_per_10k, state, firing):
    """A sustained error ratio fires exactly the conditions whose factor it reaches (SRE defaults)."""
    clock = Clock(T0)
    proc = SloSpanProcessor([slo()], clock=clock)
    # Every 10 s bucket holds the same integer-weighted mix, so every window's ratio is exactly
    # bad_per_10k / 10,000 (integer sums are exact in floats), for 3 days and more of history.
    start = T0 - 280_000
    for i in range(28_000):
        clock.now = start + 10 * i
        proc.observe(span(clock.now, error=True, weight=bad_per_10k))
        proc.observe(span(clock.now, weight=10_000 - bad_per_10k))
    assert proc.events_total.value(("avail", "checkout-api")) == 28_000 * 10_000
    status = proc.evaluate(start + 280_000 - 0.5)["avail"]
    assert status.state == state
    assert status.firing == firing


def test_state_changes_are_emitted_as_slo_events():
    """ok -> page -> ok transitions are SignalEvents with the condition and burn rates; no repeats."""
    clock = Clock(T0)
    proc = SloSpanProcessor([slo()], clock=clock)
    received: list[SignalEvent] = []
    proc.events.subscribe(received.append)
    for i in range(3600):
        clock.now = T0 + i
        proc.observe(span(clock.now, error=i % 20 == 0))  # 5% errors = 50x
    proc.evaluate()
    proc.evaluate()
    assert [(e.source, e.name, e.state) for e in received] == [("slo", "avail", "page")]
    page = received[0]
    assert page.details["condition"] == "14.4x 1h/5m"
    assert page.value == pytest.approx(50.0)
    assert page.labels == {"slo": "avail", "sli": "availability"}
    # Four clean days later every window is clean again.
    for i in range(0, 4 * 86400, 60):
        clock.now = T0 + 3600 + i
        proc.observe(span(clock.now))
    proc.evaluate()
    assert [e.state for e in received] == ["page", "ok"]


def test_latency_sli_uses_the_exact_threshold():
    """Latency SLO: a span exactly at the threshold is good, 1 ms above is bad; errors do not count."""
    clock = Clock(T0)
    proc = SloSpanProcessor([slo(name="lat", latency_threshold="2s", objective=0.99)], clock=clock)
    proc.observe(span(T0, duration=2.0))
    proc.observe(span(T0, duration=2.001))
    proc.observe(span(T0, duration=0.5, error=True))
    assert proc.events_total.value(("lat", "checkout-api")) == 3
    assert proc.bad_events_total.value(("lat", "checkout-api")) == 1


def test_bad_status_codes_replace_the_error_status_when_a_code_is_present():
    """With bad_status_codes: listed codes are bad, an unlisted 404 is good, no code: the status."""
    clock = Clock(T0)
    proc = SloSpanProcessor([slo(bad_status_codes=[429, 500, 502, 503])], clock=clock)
    proc.observe(span(T0, error=True, attributes={"http.response.status_code": 503}))
    proc.observe(span(T0, attributes={"http.response.status_code": 429}))
    proc.observe(span(T0, error=True, attributes={"http.response.status_code": 404}))
    proc.observe(span(T0, error=True))
    proc.observe(span(T0, attributes={"http.status_code": "500"}))
    assert proc.events_total.value(("avail", "checkout-api")) == 5
    assert proc.bad_events_total.value(("avail", "checkout-api")) == 4  # 503, 429, the code-less error, "500"
    proc2 = SloSpanProcessor([slo()], clock=clock)
    proc2.observe(span(T0, error=True, attributes={"http.response.status_code": 404}))
    assert proc2.bad_events_total.value(("avail", "checkout-api")) == 1


def test_selectors_match_service_kind_name_route_provider_and_attributes():
    """Each selector field narrows the events; lists mean any of their values; resource attributes count."""
    clock = Clock(T0)
    slos = [
        slo(name="svc-server", match={"service": ["checkout-api", "cart"], "span_kind": "server"}),
        slo(name="route", match={"route": "/pay/{id}"}),
        slo(name="openai", match={"provider": "openai"}),
        slo(name="attr", match={"attributes": {"tier": "gold", "deployment.environment": "prod"}}),
        slo(name="named", match={"span_name": "POST /pay"}),
    ]
    proc = SloSpanProcessor(slos, clock=clock)
    proc.observe(span(T0, kind=2, attributes={"http.route": "/pay/{id}"}))
    proc.observe(span(T0, kind=3, service="cart", attributes={"server.address": "api.openai.com"}))
    proc.observe(
        span(T0, kind=3, service="other", name="POST /pay", attributes={"spansignals.provider": "openai"})
    )
    proc.observe(
        SpanView(
            "x",
            1,
            0,
            int(T0 * 1e9),
            0,
            {"tier": "gold"},
            {"service.name": "svc", "deployment.environment": "prod"},
        )
    )
    proc.observe(
        SpanView(
            "x",
            1,
            0,
            int(T0 * 1e9),
            0,
            {"tier": "silver"},
            {"service.name": "svc", "deployment.environment": "prod"},
        )
    )
    counts = {labels: v for labels, v in proc.events_total.snapshot()}
    assert counts == {
        ("svc-server", "checkout-api"): 1,
        ("route", "checkout-api"): 1,
        ("openai", "cart"): 1,
        ("openai", "other"): 1,
        ("named", "other"): 1,
        ("attr", "svc"): 1,
    }


def test_sampling_weight_counts_as_adjusted_count():
    """A span kept at 1-in-4 counts as 4 events (and 4 bad ones when it failed)."""
    clock = Clock(T0)
    proc = SloSpanProcessor([slo()], clock=clock)
    proc.observe(span(T0, error=True, weight=4.0))
    proc.observe(span(T0, weight=1.0))
    assert proc.events_total.value(("avail", "checkout-api")) == 5
    assert proc.bad_events_total.value(("avail", "checkout-api")) == 4
    assert proc.evaluate(T0)["avail"].burn_rates["5m"] == pytest.approx(0.8 / 0.001)


def _maintenance(**kwargs: Any) -> MaintenanceConfig:
    return MaintenanceConfig.model_validate(kwargs)


def test_maintenance_windows_exclude_events_from_the_math_and_count_them():
    """Events ending inside an applicable window leave the SLO math and appear in the excluded counter."""
    start = dt.datetime.fromtimestamp(T0 + 600, dt.timezone.utc)
    global_window = _maintenance(name="deploy", starts_at=start, ends_at=start + dt.timedelta(minutes=10))
    other_alerts = _maintenance(
        name="alerts-only", starts_at=start, ends_at=start + dt.timedelta(hours=1), match={"alertname": "Foo"}
    )
    clock = Clock(T0)
    proc = SloSpanProcessor(
        [slo(name="corrected", exclude_maintenance=True), slo(name="raw")],
        maintenance=[global_window, other_alerts],
        clock=clock,
    )
    events = [(T0 + s, 1.0, 600 <= s < 1200 or s % 100 == 0) for s in range(0, 1800)]
    feed(proc, clock, events)
    now = T0 + 1800 - 0.5
    corrected, raw = proc.evaluate(now)["corrected"], proc.evaluate(now)["raw"]
    kept = [(t, w, b) for t, w, b in events if not T0 + 600 <= t < T0 + 1200]
    assert corrected.burn_rates["30m"] == pytest.approx(reference_burn(kept, now, 1800, 0.999))
    assert raw.burn_rates["30m"] == pytest.approx(reference_burn(events, now, 1800, 0.999))
    assert corrected.burn_rates["30m"] < raw.burn_rates["30m"]
    assert proc.events_total.value(("corrected", "checkout-api")) == 1200
    assert proc.excluded_events_total.value(("corrected", "checkout-api", "deploy")) == 600
    assert proc.events_total.value(("raw", "checkout-api")) == 1800
    assert proc.excluded_events_total.series_count() == 1


def test_per_slo_maintenance_and_service_matchers():
    """Windows under an SLO always apply; a service matcher limits a window to that service's spans."""
    weekly = {"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "00:00"}
    clock = Clock(T0)
    proc = SloSpanProcessor(
        [
            slo(name="own", maintenance=[{"name": "always", "schedule": weekly}]),
            slo(name="svc", exclude_maintenance=True),
            slo(name="other-slo", exclude_maintenance=True),
        ],
        maintenance=[
            _maintenance(name="cart-only", schedule=weekly, match={"service_name": "cart"}),
            _maintenance(name="for-svc", schedule=weekly, match={"slo": "svc", "service": "billing"}),
        ],
        clock=clock,
    )
    for service in ("checkout-api", "cart", "billing"):
        proc.observe(span(T0, service=service))
    assert proc.events_total.value(("own", "checkout-api")) == 0
    assert proc.excluded_events_total.value(("own", "cart", "always")) == 1
    assert proc.events_total.value(("svc", "checkout-api")) == 1
    assert proc.excluded_events_total.value(("svc", "cart", "cart-only")) == 1
    assert proc.excluded_events_total.value(("svc", "billing", "for-svc")) == 1
    assert proc.events_total.value(("other-slo", "billing")) == 1


def test_gauges_and_counters_through_an_sdk_reader():
    """Objective, budget remaining and per-window burn rates come out of a MetricReader with their labels."""
    clock = Clock(T0)
    proc = SloSpanProcessor([slo(period="28d")], clock=clock)
    for i in range(100):
        proc.observe(span(T0 - 100 + i, error=i == 0))
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    producer = SignalMetricProducer()
    producer.register(*proc.metric_families())
    attach_producer(reader, producer)
    points: dict[str, list[Any]] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points[m.name] = list(m.data.data_points)
    provider.shutdown()
    assert [(p.attributes, p.value) for p in points["spansignals.slo.objective.ratio"]] == [
        ({"slo": "avail"}, 0.999)
    ]
    (budget,) = points["spansignals.slo.error_budget_remaining.ratio"]
    assert budget.value == pytest.approx(1 - 0.01 / 0.001)
    windows = {p.attributes["window"]: p.value for p in points["spansignals.slo.burn_rate"]}
    assert set(windows) == {*WINDOWS, "28d"}
    assert windows["5m"] == pytest.approx(10.0)
    bad = {tuple(p.attributes.items()): p.value for p in points["spansignals.slo.bad_events"]}
    assert bad == {(("slo", "avail"), ("service.name", "checkout-api")): 1}


def test_good_only_traffic_still_exports_a_zero_bad_series():
    """The bad counter exists (at 0) once an SLO sees an event, so Prometheus ratios have a numerator."""
    proc = SloSpanProcessor([slo()], clock=Clock(T0))
    proc.observe(span(T0))
    assert proc.bad_events_total.snapshot() == [(("avail", "checkout-api"), 0)]


def test_duplicate_names_and_bad_config_are_rejected():
    """Duplicate SLO names raise; config errors name the field."""
    with pytest.raises(ValueError, match="unique"):
        SloSpanProcessor([slo(), slo()])
    from spansignals.processors.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape("slos: SLO names must be unique")):
        load_config({"slos": [{"name": "x", "objective": 0.9}, {"name": "x", "objective": 0.99}]})
    for bad, field in [
        ({"name": "x", "objective": 1.0}, "slos[0].objective"),
        ({"name": "x", "objective": 0.9, "period": "2d"}, "slos[0].period: period (2d) must be longer"),
        (
            {"name": "x", "objective": 0.9, "latency_threshold": "1s", "bad_status_codes": [500]},
            "slos[0].bad_status_codes: applies to availability SLOs only",
        ),
        ({"name": "x", "objective": 0.9, "bad_status_codes": [700]}, "slos[0].bad_status_codes"),
        ({"name": "x", "objective": 0.9, "match": {"span_kind": "sideways"}}, "slos[0].match.span_kind"),
        (
            {
                "name": "x",
                "objective": 0.9,
                "burn_alerts": [{"severity": "page", "factor": 2, "long_window": "5m", "short_window": "1h"}],
            },
            "short_window",
        ),
    ]:
        with pytest.raises(ConfigError, match=re.escape(field)):
            load_config({"slos": [bad]})


def test_factory_builds_the_slo_processor_with_global_maintenance():
    """build_engine wires SloSpanProcessor with alerts.maintenance; spans reach it through the engine."""
    config = load_config(
        {
            "slos": [{"name": "a", "objective": 0.99, "exclude_maintenance": True}],
            "alerts": {"maintenance": [{"name": "always", "schedule": {"start": "00:00", "end": "00:00"}}]},
        }
    )
    engine = build_engine(config)
    proc = engine.get("slo")
    assert isinstance(proc, SloSpanProcessor)
    engine.process(span(T0))
    assert proc.excluded_events_total.value(("a", "checkout-api", "always")) == 1
    engine.shutdown()
