"""Circuit breaker state machine with an injected clock: rate, consecutive, quota, half-open probes."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spansignals.processors.breaker import (
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
    CircuitBreakers,
    FailureClassifier,
)
from spansignals.processors.events import EventBus, SignalEvent


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


SETTINGS = BreakerSettings(
    failure_rate=0.5, min_calls=10, window_s=60, consecutive_failures=5, open_for_s=30, half_open_probes=1
)


def _breaker(clock: FakeClock, settings: BreakerSettings = SETTINGS) -> tuple[CircuitBreaker, list[tuple]]:
    seen: list[tuple] = []
    b = CircuitBreaker(
        ("svc", "openai"),
        settings,
        clock=clock,
        on_transition=lambda br, old, new, reason, at: seen.append((old, new, reason)),
    )
    return b, seen


def test_opens_on_failure_rate_with_min_calls() -> None:
    """Interleaved failures open it once the window holds min_calls calls at >= failure_rate, not before."""
    clock = FakeClock()
    b, seen = _breaker(clock)
    for i in range(9):
        b.record(failure=i % 2 == 0)  # 5 failures / 9 calls, never 5 in a row
        clock.advance(1)
    assert b.state is BreakerState.CLOSED
    b.record(failure=False)  # 10th call: 5/10 = 0.5
    assert b.state is BreakerState.OPEN
    assert "failure rate 5/10" in seen[-1][2]
    assert b.allow() == pytest.approx(30)


def test_failure_rate_window_slides() -> None:
    """Failures older than the window stop counting, so the same rate spread over time keeps it closed."""
    clock = FakeClock()
    b, _ = _breaker(clock)
    for _ in range(4):
        b.record(failure=True)
    clock.advance(61)
    for i in range(9):
        b.record(failure=i == 8)
    calls, fails = b.window_counts()
    assert (calls, fails) == (9, 1)
    assert b.state is BreakerState.CLOSED


def test_opens_on_consecutive_failures_and_success_resets_streak() -> None:
    """Five failures in a row open it; a success in between resets the streak."""
    clock = FakeClock()
    b, seen = _breaker(clock, BreakerSettings(min_calls=1000, consecutive_failures=5, open_for_s=30))
    for _ in range(4):
        b.record(failure=True)
    b.record(failure=False)
    for _ in range(4):
        b.record(failure=True)
    assert b.state is BreakerState.CLOSED
    b.record(failure=True)
    assert b.state is BreakerState.OPEN
    assert seen == [(BreakerState.CLOSED, BreakerState.OPEN, "5 consecutive failures")]


def test_trip_until_quota_reset_then_probe_closes() -> None:
    """An exhausted quota opens it until the reset (not open_for); then one probe's success closes it."""
    clock = FakeClock()
    b, seen = _breaker(clock)
    b.trip_until(clock.now + 5, "rate limited (Retry-After)")
    assert b.state is BreakerState.OPEN and b.allow() == pytest.approx(5)
    clock.advance(4.9)
    assert b.allow() == pytest.approx(0.1)
    clock.advance(0.1)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow() is None  # the probe
    assert b.allow() is not None  # only one probe at a time
    b.record(failure=False)
    assert b.state is BreakerState.CLOSED and b.allow() is None
    assert [s[1] for s in seen] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_half_open_probe_failure_reopens_for_open_for() -> None:
    """A failed probe reopens the breaker for open_for seconds."""
    clock = FakeClock()
    b, seen = _breaker(clock)
    b.trip_until(clock.now + 1, "quota exhausted (requests)")
    clock.advance(1)
    assert b.allow() is None
    b.record(failure=True)
    assert b.state is BreakerState.OPEN
    assert b.open_until == pytest.approx(clock.now + 30)
    assert seen[-1] == (BreakerState.HALF_OPEN, BreakerState.OPEN, "probe failed")


def test_half_open_needs_all_probes_to_succeed() -> None:
    """With half_open_probes=2, two successes are needed to close; one lets the second probe through."""
    clock = FakeClock()
    b, _ = _breaker(clock, BreakerSettings(half_open_probes=2, open_for_s=10))
    b.trip_until(clock.now + 1, "x")
    clock.advance(1)
    assert b.allow() is None and b.allow() is None and b.allow() is not None
    b.record(failure=False)
    assert b.state is BreakerState.HALF_OPEN
    b.record(failure=False)
    assert b.state is BreakerState.CLOSED


def test_lost_probe_expires() -> None:
    """A probe whose outcome never arrives frees its slot after open_for, so the breaker cannot stick."""
    clock = FakeClock()
    b, _ = _breaker(clock)
    b.trip_until(clock.now + 1, "x")
    clock.advance(1)
    assert b.allow() is None
    assert b.allow() is not None
    clock.advance(30)
    assert b.allow() is None


def test_trip_extends_but_never_shortens_and_ignores_the_past() -> None:
    """trip_until extends an open period, never shortens it, and ignores instants already past."""
    clock = FakeClock()
    b, seen = _breaker(clock)
    b.trip_until(clock.now - 1, "late")
    assert b.state is BreakerState.CLOSED and seen == []
    b.trip_until(clock.now + 10, "a")
    b.trip_until(clock.now + 5, "b")
    assert b.open_until == clock.now + 10
    b.trip_until(clock.now + 20, "c")
    assert b.open_until == clock.now + 20
    assert len(seen) == 1


def test_recovered_breaker_starts_with_a_fresh_window() -> None:
    """After closing, the failures that opened it do not count again."""
    clock = FakeClock()
    b, _ = _breaker(
        clock, BreakerSettings(min_calls=4, failure_rate=0.5, consecutive_failures=100, open_for_s=5)
    )
    for _ in range(4):
        b.record(failure=True)
    assert b.state is BreakerState.OPEN
    clock.advance(5)
    b.allow()
    b.record(failure=False)
    assert b.state is BreakerState.CLOSED
    b.record(failure=True)
    assert b.state is BreakerState.CLOSED and b.window_counts() == (1, 1)


@pytest.mark.parametrize(
    ("status", "errored", "error_type", "failure"),
    [
        (200, False, None, False),
        (400, True, None, False),
        (401, True, None, False),
        (404, True, None, False),
        (429, True, None, True),
        (500, True, None, True),
        (501, True, None, True),
        (503, True, None, True),
        (None, True, "httpx.ReadTimeout", True),
        (None, True, "ConnectError", True),
        (None, False, None, False),
    ],
)
def test_default_failure_classification(
    status: int | None, errored: bool, error_type: str | None, failure: bool
) -> None:
    """429, 5xx, timeouts and connection errors are failures; other 4xx are the caller's fault."""
    assert FailureClassifier().is_failure(status, errored, error_type) is failure


def test_failure_classification_is_configurable() -> None:
    """Configured codes replace the defaults; timeouts and connection errors can be turned off."""
    c = FailureClassifier([503, "4xx"], timeouts=False, connection_errors=False)
    assert c.is_failure(404, True, None) and c.is_failure(503, True, None)
    assert not c.is_failure(500, True, None)
    assert not c.is_failure(None, True, "ReadTimeout") and not c.is_failure(None, True, "ConnectError")
    with pytest.raises(ValueError, match="5xx"):
        FailureClassifier(["five"])


def test_registry_gauge_events_and_cap() -> None:
    """The state gauge follows time (open -> half-open), transitions reach the bus, no keys past the cap."""
    clock = FakeClock()
    bus = EventBus()
    events: list[SignalEvent] = []
    bus.subscribe(events.append)
    reg = CircuitBreakers(SETTINGS, max_series=2, events=bus, clock=clock)
    b = reg.get(("svc", "openai"))
    assert b is not None and reg.get(("svc", "openai")) is b
    assert reg.get(("svc", "github")) is not None
    assert reg.get(("svc", "third")) is None
    b.trip_until(clock.now + 5, "rate limited (Retry-After)")
    assert dict(reg.state_family.snapshot())[("svc", "openai")] == 2.0
    clock.advance(5)
    assert dict(reg.state_family.snapshot())[("svc", "openai")] == 1.0
    assert [(e.source, e.name, e.state) for e in events] == [
        ("breaker", "openai", "open"),
        ("breaker", "openai", "half_open"),
    ]
    assert events[0].labels == {"service_name": "svc", "provider": "openai"}
    assert events[0].details["retry_after_s"] == pytest.approx(5)
    assert events[0].value == 2.0


def test_transition_is_an_event_on_the_current_span() -> None:
    """A transition while a span is current adds spansignals.breaker.transition to that span."""
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    clock = FakeClock()
    reg = CircuitBreakers(SETTINGS, clock=clock)
    b = reg.get(("svc", "openai"))
    assert b is not None
    with tp.get_tracer("t").start_as_current_span("work"):
        b.trip_until(clock.now + 5, "rate limited (Retry-After)")
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == "spansignals.breaker.transition"
    assert event.attributes["spansignals.breaker.to"] == "open"
    tp.shutdown()


def test_concurrent_records_are_exact() -> None:
    """Calls recorded from many threads are all counted in the window."""
    clock = FakeClock()
    b, _ = _breaker(clock, BreakerSettings(min_calls=10**9, consecutive_failures=10**9))

    def work() -> None:
        for i in range(1000):
            b.record(failure=i % 3 == 0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.window_counts() == (8000, 8 * 334)


def test_window_counts_kept_in_step_with_a_full_recount() -> None:
    """The cached window sums equal a recount of the buckets after every call, across bucket ends."""
    clock = FakeClock()
    settings = BreakerSettings(
        failure_rate=0.99, min_calls=10_000, window_s=60, consecutive_failures=10_000, open_for_s=30
    )
    b, _ = _breaker(clock, settings)

    def recount() -> tuple[int, int]:
        current = int(clock.now // b._bucket_width)
        live = [i for i, bucket in enumerate(b._bucket_ids) if current - 10 < bucket <= current]
        pairs = [(b._calls[i], b._fails[i]) for i in live]
        return sum(c for c, _ in pairs), sum(f for _, f in pairs)

    for i in range(400):
        b.record(i % 3 == 0)
        assert b.window_counts() == recount(), i
        clock.advance(0.7 if i % 50 else 25.0)
    assert b.window_counts()[0] > 0


@given(
    st.lists(
        st.tuples(st.sampled_from(["fail", "ok", "trip"]), st.integers(0, 25), st.floats(0, 40)),
        max_size=40,
    ),
    st.integers(1, 3),
)
def test_record_successes_is_record_false_repeated(steps: list[tuple[str, int, float]], probes: int) -> None:
    """A batch of successes leaves a breaker exactly as that many single successes would: state,
    window counts, open period and transitions, through closed, open and half-open."""
    settings = BreakerSettings(
        min_calls=10, window_s=60, consecutive_failures=3, open_for_s=30, half_open_probes=probes
    )
    clock_a, clock_b = FakeClock(), FakeClock()
    batched, seen_a = _breaker(clock_a, settings)
    single, seen_b = _breaker(clock_b, settings)
    for what, n, advance in steps:
        for clock in (clock_a, clock_b):
            clock.advance(advance)
        if what == "ok":
            batched.record_successes(n)
            for _ in range(n):
                single.record(False)
        elif what == "fail":
            batched.record(True)
            single.record(True)
        else:
            batched.trip_until(clock_a.now + n, "quota")
            single.trip_until(clock_b.now + n, "quota")
        assert batched.state == single.state
        assert batched.window_counts() == single.window_counts()
        assert batched.open_until == single.open_until
    assert seen_a == seen_b


@pytest.mark.parametrize(
    ("before", "successes"),
    [
        ([True, False] * 4 + [True], 4),  # 5/9: the 10th call (the batch's first) opens it at 5/10
        ([True, False, False] * 3, 3),  # 3/9: 3/10 stays closed
        ([True, False, True, False, False], 9),  # 2/5 then 2/10 at the batch's 5th: closed
        ([True, True, False] * 2 + [True], 5),  # 5/7: the batch's 3rd call opens it at 5/10
        ([True, False] * 6, 2),  # 6/12 opened on the 12th call: the batch finds it open
    ],
)
def test_record_successes_opens_where_the_success_reaching_min_calls_would(
    before: list[bool], successes: int
) -> None:
    """With failures in the window, the batch's success that brings the window to min_calls opens
    the breaker when the failure rate still holds, with the reason single calls give; the
    successes after it are recorded on the open breaker."""
    clock_a, clock_b = FakeClock(), FakeClock()
    batched, seen_a = _breaker(clock_a)
    single, seen_b = _breaker(clock_b)
    for failure in before:
        for b, clock in ((batched, clock_a), (single, clock_b)):
            b.record(failure)
            clock.advance(1)
    batched.record_successes(successes)
    for _ in range(successes):
        single.record(False)
    assert (batched.state, batched.window_counts(), batched.open_until) == (
        single.state,
        single.window_counts(),
        single.open_until,
    )
    assert seen_a == seen_b
