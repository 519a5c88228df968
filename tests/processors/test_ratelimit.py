"""RateLimitSpanProcessor: one metric set for every dialect, throttling, breakers fed by spans, admission."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest

from spansignals.processors import SignalEngine, SignalEvent, SpanView, view_from_otlp_span
from spansignals.processors.config import load_config
from spansignals.processors.factory import build_engine
from spansignals.processors.producer import SignalMetricProducer, attach_to_meter_provider
from spansignals.processors.providers import ProviderInfo, ProviderTable
from spansignals.processors.ratelimit import RateLimitSpanProcessor, route_of_path
from spansignals.processors.view import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, STATUS_UNSET

NOW = 1_700_000_000.0
CASES = yaml.safe_load(
    (Path(__file__).parent.parent / "testdata" / "ratelimits" / "header_dialects.yaml").read_text()
)
PREFIX = "http.response.header."


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _table() -> ProviderTable:
    return ProviderTable(
        [
            (f"{d}.test", ProviderInfo(d, d))
            for d in ("openai", "anthropic", "github", "ietf", "gemini", "generic")
        ]
    )


def _processor(clock: FakeClock, **config: Any) -> RateLimitSpanProcessor:
    cfg = load_config({"ratelimits": config}).ratelimits if config else None
    return RateLimitSpanProcessor(cfg, providers=_table(), service_name="svc", clock=clock)


def _view(
    host: str,
    status: int | None,
    headers: dict[str, str] | None = None,
    *,
    at: float = NOW,
    kind: int = KIND_CLIENT,
    span_status: int = STATUS_UNSET,
    path: str = "/v1/chat/completions",
    **extra: Any,
) -> SpanView:
    attrs: dict[str, Any] = {
        "http.request.method": "POST",
        "server.address": host,
        "url.full": f"https://{host}{path}",
        **extra,
    }
    if status is not None:
        attrs["http.response.status_code"] = status
    for name, value in (headers or {}).items():
        attrs[PREFIX + name] = (value,)
    end = int(at * 1e9)
    return SpanView("POST", kind, end - 1_000_000, end, span_status, attrs, {"service.name": "svc"})


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["readings"] and not c.get("failures")], ids=lambda c: c["name"]
)
def test_every_dialect_gives_the_same_metric_set(case: dict[str, Any]) -> None:
    """Each dialect fills limit, remaining, reset seconds and utilization per provider and resource."""
    clock = FakeClock()
    dialect = (
        case["dialect"]
        if case["dialect"] in ("openai", "anthropic", "github", "ietf", "gemini")
        else "generic"
    )
    p = _processor(clock)
    p.observe(_view(f"{dialect}.test", case["status"], case["headers"]))
    clock.advance(0.5)
    resets = dict(p.reset.snapshot())
    limits, remainings, utilizations = (dict(f.snapshot()) for f in (p.limit, p.remaining, p.utilization))
    for resource, want in case["readings"].items():
        labels = ("svc", dialect, resource)
        assert limits.get(labels) == want.get("limit")
        assert remainings.get(labels) == want.get("remaining")
        if "reset_in" in want:
            assert resets[labels] == pytest.approx(max(0.0, want["reset_in"] - 0.5))
        if "limit" in want and "remaining" in want:
            assert utilizations[labels] == pytest.approx((want["limit"] - want["remaining"]) / want["limit"])


def test_reset_seconds_count_down_at_collection_time() -> None:
    """The reset gauge is computed from the absolute reset when collected, and stops at 0."""
    clock = FakeClock()
    p = _processor(clock)
    p.observe(
        _view("openai.test", 200, {"x-ratelimit-reset-tokens": "6m0s", "x-ratelimit-remaining-tokens": "9"})
    )
    labels = ("svc", "openai", "tokens")
    assert dict(p.reset.snapshot())[labels] == 360
    clock.advance(300)
    assert dict(p.reset.snapshot())[labels] == 60
    clock.advance(100)
    assert dict(p.reset.snapshot())[labels] == 0


def test_repeated_header_values_reset_from_each_spans_own_end() -> None:
    """Identical header values still give a reset relative to each span's end, and an unchanged
    reading keeps its series."""
    clock = FakeClock()
    p = _processor(clock)
    headers = {"x-ratelimit-reset-requests": "10s", "x-ratelimit-remaining-requests": "9"}
    p.observe(_view("openai.test", 200, headers))
    p.observe(_view("openai.test", 200, headers, at=NOW + 4))
    labels = ("svc", "openai", "requests")
    assert dict(p.reset.snapshot())[labels] == pytest.approx(14)
    p.observe(_view("openai.test", 200, headers, at=NOW + 4))
    assert dict(p.reset.snapshot())[labels] == pytest.approx(14)
    assert dict(p.remaining.snapshot()) == {labels: 9}


def test_github_403_counts_an_exhausted_quota_remembered_from_before() -> None:
    """A 403 whose headers leave remaining out is throttling when the last reported remaining was 0,
    and blocks until the remembered reset."""
    clock = FakeClock()
    p = _processor(clock)
    reset = str(int(NOW) + 60)
    p.observe(_view("github.test", 200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}))
    p.observe(_view("github.test", 403, {"x-ratelimit-limit": "60"}))
    assert p.throttled.value(("svc", "github", "403")) == 1
    adm = p.admission("github")
    assert adm is not None and adm.reason == "quota exhausted (core)" and adm.retry_after == pytest.approx(60)


def test_throttled_counts_429_and_github_403() -> None:
    """429s and GitHub's exhausted 403s are counted by status code; a plain 403 is not."""
    p = _processor(FakeClock())
    p.observe(_view("openai.test", 429, {"retry-after": "1"}))
    p.observe(_view("openai.test", 429))
    p.observe(
        _view("github.test", 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 60)})
    )
    p.observe(_view("github.test", 403, {"x-ratelimit-remaining": "10"}))
    assert p.throttled.value(("svc", "openai", "429")) == 2
    assert p.throttled.value(("svc", "github", "403")) == 1


def test_fields_left_out_keep_their_last_value_and_series_are_capped() -> None:
    """A response without the limit keeps the last reported limit; past max_series no new series appear."""
    clock = FakeClock()
    p = _processor(clock, max_series=1)
    p.observe(
        _view(
            "openai.test", 200, {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59"}
        )
    )
    p.observe(_view("openai.test", 200, {"x-ratelimit-remaining-requests": "30"}))
    p.observe(_view("openai.test", 200, {"x-ratelimit-remaining-tokens": "5"}))
    labels = ("svc", "openai", "requests")
    assert dict(p.limit.snapshot()) == {labels: 60}
    assert dict(p.remaining.snapshot()) == {labels: 30}
    assert dict(p.utilization.snapshot()) == {labels: 0.5}


def test_shutdown_leaves_nothing_to_collect() -> None:
    """After shutdown the callback gauges render no series and nothing is blocked."""
    p = _processor(FakeClock())
    p.observe(_view("openai.test", 429, {"retry-after": "5", "x-ratelimit-remaining-requests": "0"}))
    assert p.reset.snapshot() == [] and p.remaining.snapshot() and p.breakers.state_family.snapshot()
    p.shutdown()
    families = (p.limit, p.remaining, p.reset, p.utilization, p.breakers.state_family)
    assert all(f.snapshot() == [] for f in families)
    assert p.admission("openai") is None


def test_header_errors_are_counted() -> None:
    """Unparseable header values are counted per provider and do not stop the rest."""
    p = _processor(FakeClock())
    p.observe(
        _view(
            "openai.test", 200, {"x-ratelimit-limit-requests": "lots", "x-ratelimit-remaining-requests": "4"}
        )
    )
    assert p.header_errors.value(("svc", "openai")) == 1
    assert dict(p.remaining.snapshot())[("svc", "openai", "requests")] == 4


def test_ignores_non_http_client_spans_and_unknown_hosts() -> None:
    """Server spans, spans without an HTTP method and unknown hosts leave no series and no breaker."""
    p = _processor(FakeClock())
    p.observe(_view("openai.test", 429, {"retry-after": "5"}, kind=KIND_SERVER))
    p.observe(_view("unknown.example", 429, {"retry-after": "5"}))
    view = _view("openai.test", 429, {"retry-after": "5"})
    attrs = dict(view.attributes)
    del attrs["http.request.method"]
    p.observe(SpanView("llm", KIND_CLIENT, 0, int(NOW * 1e9), STATUS_UNSET, attrs, {}))
    assert p.throttled.snapshot() == [] and list(p.breakers) == []
    assert p.admission("openai") is None


def test_burst_of_429_with_retry_after_blocks_until_then_probe_recovers() -> None:
    """A 429 with Retry-After: 5 opens the breaker until then; admission says so; a good probe closes it."""
    clock = FakeClock()
    p = _processor(clock)
    events: list[SignalEvent] = []
    p.events.subscribe(events.append)
    for _ in range(3):
        p.observe(_view("openai.test", 429, {"retry-after": "5"}, span_status=STATUS_ERROR))
    adm = p.admission("openai")
    assert adm is not None and adm.retry_after == pytest.approx(5) and "Retry-After" in adm.reason
    assert dict(p.breakers.state_family.snapshot())[("svc", "openai")] == 2
    clock.advance(5)
    assert p.admission("openai") is None  # the probe
    second = p.admission("openai")
    assert second is not None and "half_open" in second.reason
    p.observe(_view("openai.test", 200, at=clock.now))
    assert p.admission("openai") is None
    assert dict(p.breakers.state_family.snapshot())[("svc", "openai")] == 0
    assert [e.state for e in events] == ["open", "half_open", "closed"]


def test_exhausted_quota_on_success_opens_until_reset() -> None:
    """remaining 0 on a 200 opens proactively until the reported reset, with the resource in the reason."""
    clock = FakeClock()
    p = _processor(clock)
    p.observe(
        _view("openai.test", 200, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"})
    )
    adm = p.admission("openai")
    assert (
        adm is not None and adm.reason == "quota exhausted (requests)" and adm.retry_after == pytest.approx(2)
    )
    clock.advance(2)
    assert p.admission("openai") is None


def test_retry_after_on_success_is_not_a_limit() -> None:
    """Retry-After on a 2xx (a polling hint) neither blocks nor opens the breaker."""
    p = _processor(FakeClock())
    p.observe(_view("openai.test", 202, {"retry-after": "30"}))
    assert p.admission("openai") is None


def test_consecutive_5xx_and_timeouts_open_but_4xx_do_not() -> None:
    """5xx and timeouts count as failures, 400/404 do not, per the default classification."""
    clock = FakeClock()
    p = _processor(clock, breaker={"consecutive_failures": 3, "min_calls": 100})
    for status in (400, 404, 400, 404):
        p.observe(_view("openai.test", status, span_status=STATUS_ERROR))
    assert p.admission("openai") is None
    p.observe(_view("openai.test", 503, span_status=STATUS_ERROR))
    p.observe(_view("openai.test", 500, span_status=STATUS_ERROR))
    p.observe(_view("openai.test", None, span_status=STATUS_ERROR, **{"error.type": "httpx.ReadTimeout"}))
    adm = p.admission("openai")
    assert adm is not None and adm.reason == "circuit breaker open" and adm.retry_after == pytest.approx(30)


def test_breaker_per_route_when_configured() -> None:
    """With key provider_route, failures on one route leave another route's calls admitted."""
    p = _processor(FakeClock(), breaker={"key": "provider_route", "consecutive_failures": 2})
    for _ in range(2):
        p.observe(_view("openai.test", 503, path="/v1/embeddings"))
    assert p.admission("openai", "/v1/embeddings") is not None
    assert p.admission("openai", "/v1/chat/completions") is None
    assert dict(p.breakers.state_family.snapshot())[("svc", "openai", "/v1/embeddings")] == 2


def test_route_of_path_folds_ids() -> None:
    """Ids in paths become {id} and long paths are cut, so routes stay low-cardinality."""
    assert route_of_path("/repos/12345/issues/9?page=2") == "/repos/{id}/issues/{id}"
    assert route_of_path("/v1/threads/thread_abcdefghijklmnopqrstuvwx/runs") == "/v1/threads/{id}/runs"
    assert route_of_path("/a/b/c/d/e/f") == "/a/b/c/d"
    assert route_of_path("") == "/"


def test_breaker_disabled_still_blocks_on_quota() -> None:
    """With the breaker off, the reported quota still decides admission."""
    clock = FakeClock()
    p = _processor(clock, breaker={"enabled": False})
    p.observe(_view("openai.test", 429, {"retry-after": "3"}))
    assert list(p.breakers) == []
    adm = p.admission("openai")
    assert adm is not None and adm.retry_after == pytest.approx(3)


def test_collector_path_reads_otlp_array_attributes() -> None:
    """An OTLP span from another language (headers as string arrays) yields the same readings."""
    span = OtlpSpan(
        name="GET",
        kind=OtlpSpan.SPAN_KIND_CLIENT,
        start_time_unix_nano=int(NOW * 1e9) - 1000,
        end_time_unix_nano=int(NOW * 1e9),
    )

    def kv(key: str, value: Any) -> KeyValue:
        if isinstance(value, list):
            return KeyValue(
                key=key,
                value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value])),
            )
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    span.attributes.extend(
        [
            kv("http.request.method", "GET"),
            kv("server.address", "api.github.com"),
            kv("http.response.status_code", 200),
            kv(PREFIX + "x-ratelimit-limit", ["5000"]),
            kv(PREFIX + "x-ratelimit-remaining", ["4999"]),
            kv(PREFIX + "x-ratelimit-reset", [str(int(NOW) + 3600)]),
            kv(PREFIX + "x-ratelimit-resource", ["core"]),
        ]
    )
    p = RateLimitSpanProcessor(clock=FakeClock())
    p.observe(view_from_otlp_span(span, {}, "java-svc"))
    assert dict(p.remaining.snapshot())[("java-svc", "github", "core")] == 4999
    assert dict(p.reset.snapshot())[("java-svc", "github", "core")] == 3600


def test_engine_wiring_events_and_prometheus_names() -> None:
    """build_engine installs it; transitions reach the engine bus; Prometheus sees the catalogue names."""
    cfg = load_config({"providers": [{"name": "local", "hosts": ["openai.test"], "dialect": "openai"}]})
    engine = build_engine(cfg)
    p = engine.get("ratelimit")
    assert isinstance(p, RateLimitSpanProcessor)
    events: list[SignalEvent] = []
    engine.events.subscribe(events.append)
    engine.process(
        _view(
            "openai.test",
            429,
            {
                "retry-after": "5",
                "x-ratelimit-limit-requests": "60",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "5s",
            },
            at=time.time(),
        )
    )
    assert [(e.source, e.state) for e in events] == [("breaker", "open")]
    p.count_decision("local", "rejected")
    registry = CollectorRegistry()
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    producer = SignalMetricProducer()
    producer.register(*engine.metric_families())
    attach_to_meter_provider(meter_provider, producer)
    text = generate_latest(registry).decode()
    for name in (
        "spansignals_ratelimit_limit{",
        "spansignals_ratelimit_remaining{",
        "spansignals_ratelimit_reset_seconds{",
        "spansignals_ratelimit_utilization_ratio{",
        "spansignals_ratelimit_throttled_total{",
        "spansignals_breaker_state{",
        "spansignals_guard_decisions_total{",
    ):
        assert name in text, name
    for label in ('outcome="rejected"', 'resource="requests"', 'status_code="429"', 'provider="local"'):
        assert label in text, label
    meter_provider.shutdown()


def test_engine_never_raises_on_hostile_spans() -> None:
    """Ill-typed attributes go through the engine without an exception reaching the caller."""
    engine = SignalEngine([RateLimitSpanProcessor(providers=_table(), clock=FakeClock())])
    weird = {
        "http.request.method": "GET",
        "server.address": "openai.test",
        "http.response.status_code": "abc",
        PREFIX + "x-ratelimit-remaining-requests": (b"\xff",),
        PREFIX + "retry-after": 1e400,
    }
    engine.process(SpanView("x", KIND_CLIENT, 0, 0, STATUS_ERROR, weird, {}))
    assert engine.errors.count("ratelimit") == 0


def test_a_batch_derives_what_span_by_span_derives() -> None:
    """observe_batch (successes counted once per breaker and batch) ends where observe on each span
    ends: breaker states and window counts, throttling, readings, blocks; through a rate-opened
    breaker, a Retry-After trip and an unknown host."""
    ok = {"x-ratelimit-remaining-requests": "7", "x-ratelimit-limit-requests": "10"}
    views = (
        [_view("openai.test", 200, ok) for _ in range(12)]
        + [_view("openai.test", 500, span_status=STATUS_ERROR) for _ in range(4)]
        + [_view("github.test", 200, {"x-ratelimit-remaining": "3"}) for _ in range(3)]
        + [_view("openai.test", 200, ok), _view("unknown.example", 500)]
        + [_view("openai.test", 503, span_status=STATUS_ERROR) for _ in range(12)]
        + [_view("ietf.test", 429, {"retry-after": "9"}), _view("ietf.test", 200)]
        + [_view("openai.test", 200, kind=KIND_SERVER)]
    )
    single, batched = _processor(FakeClock()), _processor(FakeClock())
    events: dict[str, list[SignalEvent]] = {"single": [], "batched": []}
    single.events.subscribe(events["single"].append)
    batched.events.subscribe(events["batched"].append)
    for view in views:
        single.observe(view)
    batched.observe_batch(views)

    def state(p: RateLimitSpanProcessor) -> Any:
        return (
            sorted((b.key, b.state, b.window_counts(), b.open_until) for b in p.breakers),
            sorted(p.throttled.snapshot()),
            sorted(p.remaining.snapshot()),
            {name: p.admission(name) for name in ("openai", "github", "ietf")},
        )

    assert state(batched) == state(single)
    assert [(e.name, e.state) for e in events["batched"]] == [(e.name, e.state) for e in events["single"]]
    assert any(e.state == "open" for e in events["single"])
