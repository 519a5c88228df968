"""guard(): reject and wait modes, sync and async, concurrency, counting, and never touching the network."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spansignals.processors.config import load_config
from spansignals.processors.providers import ProviderInfo, ProviderTable
from spansignals.processors.ratelimit import RateLimitSpanProcessor
from spansignals.processors.view import KIND_CLIENT, STATUS_UNSET, SpanView
from spansignals.sdk import RequestBlocked, guard

NOW = 1_700_000_000.0
URL = "https://api.provider.test/v1/chat/completions"


class FakeClock:
    """Seconds that move only when a test (or the fake sleep) says so."""

    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


class CountingTransport:
    """Answers 200 and counts requests (sync and async), so a test can prove nothing was sent.

    With ``feed``, each answer is also reported to that processor as a finished client span
    would be (what the span pipeline does in an app), so half-open probes can succeed.
    """

    def __init__(self, feed: RateLimitSpanProcessor | None = None) -> None:
        self.calls = 0
        self.feed = feed
        self._lock = threading.Lock()

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.calls += 1
        if self.feed is not None:
            attrs = {
                "http.request.method": request.method,
                "server.address": request.url.host,
                "http.response.status_code": 200,
            }
            self.feed.observe(
                SpanView("GET", KIND_CLIENT, 0, 1, STATUS_UNSET, attrs, {"service.name": "app"})
            )
        return httpx.Response(200, json={"ok": True})

    def sync(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


def _processor(clock: FakeClock, **guard_cfg: Any) -> RateLimitSpanProcessor:
    cfg = load_config({"ratelimits": {"guard": guard_cfg}} if guard_cfg else {}).ratelimits
    table = ProviderTable([("api.provider.test", ProviderInfo("prov", "openai"))])
    return RateLimitSpanProcessor(cfg, providers=table, service_name="app", clock=clock)


def _limited(p: RateLimitSpanProcessor, retry_after: str = "5") -> None:
    """Feed the processor one 429 with Retry-After, as the span of a real call would."""
    attrs = {
        "http.request.method": "POST",
        "server.address": "api.provider.test",
        "http.response.status_code": 429,
        "http.response.header.retry-after": (retry_after,),
    }
    end = int(NOW * 1e9)
    p.observe(SpanView("POST", KIND_CLIENT, end - 1000, end, STATUS_UNSET, attrs, {"service.name": "app"}))


def _decisions(p: RateLimitSpanProcessor) -> dict[str, float]:
    return {labels[2]: v for labels, v in p.guard_decisions.snapshot()}


def test_allowed_when_nothing_is_limited() -> None:
    """With no limit reported the request goes through and counts as allowed."""
    clock, transport = FakeClock(), CountingTransport()
    p = _processor(clock)
    client = guard(httpx.Client(transport=transport.sync()), processor=p, clock=clock, sleep=clock.sleep)
    assert client.get(URL).status_code == 200
    assert transport.calls == 1 and _decisions(p) == {"allowed": 1}


def test_reject_mode_raises_without_touching_the_network() -> None:
    """Reject mode raises RequestBlocked (provider, reason, retry_after) and sends nothing."""
    clock, transport = FakeClock(), CountingTransport()
    p = _processor(clock)
    _limited(p)
    client = guard(httpx.Client(transport=transport.sync()), processor=p, clock=clock, sleep=clock.sleep)
    with pytest.raises(RequestBlocked) as info:
        client.post(URL, json={})
    assert info.value.provider == "prov" and info.value.retry_after == pytest.approx(5)
    assert "Retry-After" in info.value.reason
    assert transport.calls == 0 and clock.slept == []
    assert _decisions(p) == {"rejected": 1}


def test_unknown_hosts_pass_uncounted() -> None:
    """Hosts outside the provider table are neither checked nor counted."""
    clock, transport = FakeClock(), CountingTransport()
    p = _processor(clock)
    _limited(p)
    client = guard(httpx.Client(transport=transport.sync()), processor=p)
    client.get("https://elsewhere.test/")
    assert transport.calls == 1 and _decisions(p) == {}


def test_wait_mode_waits_until_reset_then_proceeds() -> None:
    """In wait mode the guard sleeps until the Retry-After instant, then sends and counts delayed."""
    clock, transport = FakeClock(), CountingTransport()
    p = _processor(clock, mode="wait", max_wait="10s")
    _limited(p)
    client = guard(httpx.Client(transport=transport.sync()), processor=p, clock=clock, sleep=clock.sleep)
    assert client.get(URL).status_code == 200
    assert sum(clock.slept) == pytest.approx(5) and transport.calls == 1
    assert _decisions(p) == {"delayed": 1}


def test_wait_mode_rejects_beyond_max_wait() -> None:
    """A reset further away than max_wait is rejected at once, without waiting."""
    clock, transport = FakeClock(), CountingTransport()
    p = _processor(clock)
    _limited(p, "60")
    client = guard(
        httpx.Client(transport=transport.sync()),
        mode="wait",
        max_wait=10,
        processor=p,
        clock=clock,
        sleep=clock.sleep,
    )
    with pytest.raises(RequestBlocked):
        client.get(URL)
    assert clock.slept == [] and transport.calls == 0 and _decisions(p) == {"rejected": 1}


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_wait_rechecks_after_each_sleep_and_rejects_a_longer_new_limit(flavour: str) -> None:
    """Sync and async hooks share one wait loop: after sleeping to the first reset it asks again,
    and a new, longer limit seen meanwhile (a 429 with Retry-After: 60) is rejected then."""
    clock, transport = FakeClock(), CountingTransport()
    p = _processor(clock, mode="wait", max_wait="10s")
    _limited(p)

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        _limited(p, "60")  # another caller's request was limited while this one waited

    async def async_sleep(seconds: float) -> None:
        sleep(seconds)
        await asyncio.sleep(0)

    if flavour == "sync":
        client = guard(httpx.Client(transport=transport.sync()), processor=p, clock=clock, sleep=sleep)
        with pytest.raises(RequestBlocked) as blocked:
            client.get(URL)
    else:

        async def run() -> None:
            inner = httpx.AsyncClient(transport=transport.sync())
            aclient = guard(inner, processor=p, clock=clock, async_sleep=async_sleep)
            try:
                await aclient.get(URL)
            finally:
                await aclient.aclose()

        with pytest.raises(RequestBlocked) as blocked:
            asyncio.run(run())
    assert clock.slept == [5] and blocked.value.retry_after == pytest.approx(55)
    assert transport.calls == 0 and _decisions(p) == {"rejected": 1}


def test_half_open_lets_exactly_one_probe_through_under_concurrency() -> None:
    """When the breaker turns half-open, 16 threads race: one probe is sent, the other 15 are rejected."""
    clock, transport = FakeClock(), CountingTransport()
    p = _processor(clock)
    _limited(p)
    clock.now += 5  # the reset instant passes: the next call is the probe
    client = guard(httpx.Client(transport=transport.sync()), processor=p, clock=clock, sleep=clock.sleep)

    def call(_: int) -> str:
        try:
            client.get(URL)
            return "sent"
        except RequestBlocked:
            return "blocked"

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    assert results.count("sent") == 1 and transport.calls == 1
    assert _decisions(p) == {"allowed": 1, "rejected": 15}


async def test_async_reject_and_allow() -> None:
    """An AsyncClient is guarded the same way: allowed when free, RequestBlocked when limited."""
    clock, transport = FakeClock(), CountingTransport()
    p = _processor(clock)
    client = guard(
        httpx.AsyncClient(transport=transport.sync()), processor=p, clock=clock, async_sleep=clock.async_sleep
    )
    assert (await client.get(URL)).status_code == 200
    _limited(p)
    with pytest.raises(RequestBlocked):
        await client.get(URL)
    assert transport.calls == 1 and _decisions(p) == {"allowed": 1, "rejected": 1}
    await client.aclose()


async def test_async_wait_does_not_block_the_event_loop() -> None:
    """While a guarded async request waits for the reset, other tasks keep running on the loop."""
    clock, transport = FakeClock(), CountingTransport()
    p = _processor(clock, mode="wait")
    _limited(p)
    other_ran = asyncio.Event()

    async def sleep_until_other_task_ran(seconds: float) -> None:
        await asyncio.wait_for(other_ran.wait(), timeout=5)  # only possible if the loop is free
        clock.sleep(seconds)

    client = guard(
        httpx.AsyncClient(transport=transport.sync()),
        processor=p,
        clock=clock,
        async_sleep=sleep_until_other_task_ran,
    )

    async def other() -> None:
        other_ran.set()

    response, _ = await asyncio.gather(client.get(URL), other())
    assert response.status_code == 200 and _decisions(p) == {"delayed": 1}
    await client.aclose()


async def test_async_concurrent_waiters_all_proceed_after_reset() -> None:
    """Twenty waiters on a 2 s Retry-After: after it, one probe goes, its success lets the rest through."""
    clock = FakeClock()
    p = _processor(clock, mode="wait")
    transport = CountingTransport(feed=p)
    _limited(p, "2")

    async def sleep_until(seconds: float) -> None:
        target = clock.now + seconds
        while clock.now < target:
            await asyncio.sleep(0)

    client = guard(
        httpx.AsyncClient(transport=transport.sync()), processor=p, clock=clock, async_sleep=sleep_until
    )
    requests = asyncio.gather(*(client.get(URL) for _ in range(20)))
    while not requests.done():  # fake time moves 10 ms per turn of the loop
        await asyncio.sleep(0)
        clock.now += 0.01
    responses = await requests
    assert all(r.status_code == 200 for r in responses) and transport.calls == 20
    assert _decisions(p) == {"delayed": 20}
    await client.aclose()


def test_rejection_is_a_span_event() -> None:
    """A rejection adds spansignals.guard.rejected to the current recording span."""
    clock, transport = FakeClock(), CountingTransport()
    p = _processor(clock)
    _limited(p)
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    client = guard(httpx.Client(transport=transport.sync()), processor=p, clock=clock)
    with tp.get_tracer("t").start_as_current_span("work"), pytest.raises(RequestBlocked):
        client.get(URL)
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == "spansignals.guard.rejected"
    assert event.attributes["spansignals.provider"] == "prov"
    tp.shutdown()


def test_guard_without_a_processor_lets_requests_pass() -> None:
    """With no configure() active and no processor given, guarded requests pass unchanged."""
    transport = CountingTransport()
    client = guard(httpx.Client(transport=transport.sync()))
    client.get(URL)
    assert transport.calls == 1


def test_guard_twice_replaces_and_keeps_user_hooks() -> None:
    """Guarding twice installs one guard, first, and keeps the app's own request hooks."""
    seen: list[str] = []
    client = httpx.Client(event_hooks={"request": [lambda r: seen.append("user")]})
    guard(client)
    guard(client)
    assert len(client.event_hooks["request"]) == 2
    assert hasattr(client.event_hooks["request"][0], "_spansignals_guard")


def test_bad_arguments() -> None:
    """Non-httpx clients raise TypeError; an unknown mode or negative max_wait raises ValueError."""
    with pytest.raises(TypeError, match="httpx"):
        guard(object())
    with pytest.raises(ValueError, match="mode"):
        guard(httpx.Client(), mode="maybe")
    with pytest.raises(ValueError, match="max_wait"):
        guard(httpx.Client(), max_wait=-1)


def test_route_scoped_breaker_blocks_only_its_route() -> None:
    """With breaker.key provider_route, an open breaker on one path blocks that path only."""
    clock, transport = FakeClock(), CountingTransport()
    cfg = load_config(
        {"ratelimits": {"breaker": {"key": "provider_route", "consecutive_failures": 2}}}
    ).ratelimits
    table = ProviderTable([("api.provider.test", ProviderInfo("prov", "openai"))])
    p = RateLimitSpanProcessor(cfg, providers=table, service_name="app", clock=clock)
    for _ in range(2):
        attrs = {
            "http.request.method": "POST",
            "url.full": "https://api.provider.test/v1/files/12345/content",
            "server.address": "api.provider.test",
            "http.response.status_code": 503,
        }
        p.observe(SpanView("POST", KIND_CLIENT, 0, 1, STATUS_UNSET, attrs, {"service.name": "app"}))
    client = guard(httpx.Client(transport=transport.sync()), processor=p, clock=clock)
    with pytest.raises(RequestBlocked):
        client.get("https://api.provider.test/v1/files/67890/content")
    assert client.get(URL).status_code == 200
    assert transport.calls == 1
