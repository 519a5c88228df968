"""The genai_usage enricher: usage and cost from raw httpx LLM traffic, streaming included."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fake_llm import CASES, FakeLlmServers, case_body
from genai_prices import Usage, calc_price
from sdk_fixtures import Providers

from spansignals.sdk import Telemetry

GP_KEYS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write": "cache_write_tokens",
    "reasoning": "output_reasoning_tokens",
    "cache_write_1h": "cache_write_1h_tokens",
}
_BUILTIN = ("openai", "anthropic", "gemini")
PRICED = [n for n, c in CASES.items() if c.get("gp_provider") and c["provider"] in _BUILTIN]
JSON_CASES = [n for n in PRICED if "sse" not in CASES[n] and not CASES[n].get("progressive")]
SSE_CASES = [n for n in PRICED if "sse" in CASES[n] or CASES[n].get("progressive")]


def _expected_cost(case: dict[str, Any], at: Any = None) -> Decimal:
    """Independent: genai-prices' calc_price on the fixture's documented counts."""
    usage = Usage(**{GP_KEYS[k]: v for k, v in case["expected"].items()})
    gp = {"gemini": "google"}.get(case["provider"], case["provider"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = case.get("body")
        tier = case.get("service_tier", body.get("service_tier") if isinstance(body, dict) else None)
        context = {"service_tier": tier} if tier else None
        return calc_price(
            usage, case["model"], provider_id=gp, genai_request_timestamp=at, price_context=context
        ).total_price


@pytest.fixture
def llm() -> Iterator[FakeLlmServers]:
    """Fake OpenAI, Anthropic and Gemini servers on 127.0.0.1/2/3."""
    servers = FakeLlmServers()
    yield servers
    servers.close()


@pytest.fixture
def app(configured: Callable[..., Telemetry], providers: Providers) -> Callable[..., Telemetry]:
    """configure() on private providers, with the fake hosts mapped to the three dialects."""

    def run(**extra: Any) -> Telemetry:
        return configured(
            {"providers": FakeLlmServers.providers_config(), **extra},
            tracer_provider=providers.tracer_provider,
            meter_provider=providers.meter_provider,
        )

    return run


def _cost(telemetry: Telemetry) -> Any:
    """The cost processor, after the engine derived every span it may have queued."""
    telemetry.engine.flush()
    return telemetry.engine.get("cost")


def _cost_total(telemetry: Telemetry) -> Decimal:
    cost = _cost(telemetry)
    return sum((cost.cost.exact(labels) for labels, _ in cost.cost.snapshot()), Decimal(0))  # exact sums


def _client_span(providers: Providers) -> Any:
    spans = [s for s in providers.spans() if s.kind.name == "CLIENT"]
    assert len(spans) == 1
    return spans[0]


@pytest.mark.parametrize("enc", ["", "gzip", "br"])
@pytest.mark.parametrize("name", JSON_CASES)
def test_sync_json_usage_and_cost_on_the_span(
    name: str, enc: str, app: Callable[..., Telemetry], providers: Providers, llm: FakeLlmServers
) -> None:
    """A sync non-streaming call: the app gets the same body; the span carries usage and exact cost."""
    case = CASES[name]
    telemetry = app()
    with httpx.Client() as client:
        response = client.post(llm.url(name, enc=enc), json={"model": case["model"], "messages": []})
    assert response.content == case_body(case)
    span = _client_span(providers)
    attrs = dict(span.attributes)
    want = _expected_cost(case)
    assert attrs["gen_ai.usage.input_tokens"] == case["expected"]["input"]
    assert attrs["gen_ai.request.model"] == case["model"]
    assert attrs["gen_ai.response.model"] == case["model"]
    assert attrs["gen_ai.operation.name"] == case["operation"]
    assert attrs["gen_ai.usage.cost"] == float(want)
    assert _cost_total(telemetry) == want


@pytest.mark.parametrize("name", SSE_CASES)
def test_sync_stream_same_bytes_and_late_usage(
    name: str, app: Callable[..., Telemetry], providers: Providers, llm: FakeLlmServers
) -> None:
    """A stream: bytes unchanged and unbuffered; usage is counted after the span ended."""
    case = CASES[name]
    telemetry = app()
    received = b""
    with (
        httpx.Client() as client,
        client.stream("POST", llm.url(name), json={"model": case["model"]}) as response,
    ):
        iterator = response.iter_raw()
        received += next(iterator)
        assert _client_span(providers).end_time is not None  # the span ended before the body was read
        assert _cost_total(telemetry) == 0
        for chunk in iterator:
            received += chunk
    assert received == case_body(case)
    assert "gen_ai.usage.input_tokens" not in _client_span(providers).attributes
    assert _cost_total(telemetry) == _expected_cost(case)
    cost = _cost(telemetry)
    assert (
        cost.tokens.value(("test-app", case["provider"], case["model"], "input")) == case["expected"]["input"]
    )


@pytest.mark.parametrize(
    "name", ["openai-chat-cached", "anthropic-stream", "gemini-stream", "openai-embeddings"]
)
def test_async_client_usage_is_counted(name: str, app: Callable[..., Telemetry], llm: FakeLlmServers) -> None:
    """httpx.AsyncClient calls (JSON and streams) are counted through the late path."""
    case = CASES[name]
    telemetry = app()

    async def call() -> bytes:
        async with httpx.AsyncClient() as client:
            response = await client.post(llm.url(name, enc="gzip"), json={"model": case["model"]})
            return response.content

    assert asyncio.run(call()) == case_body(case)
    assert _cost_total(telemetry) == _expected_cost(case)


def test_error_and_non_llm_responses_are_untouched(
    app: Callable[..., Telemetry], providers: Providers, llm: FakeLlmServers
) -> None:
    """Error bodies, HTML and truncated JSON pass through unchanged and cost nothing."""
    telemetry = app()
    with httpx.Client() as client:
        for name in (
            "openai-error",
            "anthropic-overloaded",
            "truncated-json",
            "html-error",
            "ill-typed-usage",
        ):
            assert client.post(llm.url(name), json={}).content == case_body(CASES[name])
    assert _cost_total(telemetry) == 0
    assert _cost(telemetry).unpriced.snapshot() == []


def test_unknown_model_counts_unpriced(
    app: Callable[..., Telemetry], providers: Providers, llm: FakeLlmServers
) -> None:
    """An unknown model: tokens on the span, no gen_ai.usage.cost, one unpriced count."""
    telemetry = app()
    with httpx.Client() as client:
        client.post(llm.url("unknown-model"), json={"model": "acme-unreleased-9000"})
    attrs = dict(_client_span(providers).attributes)
    assert attrs["gen_ai.usage.input_tokens"] == 19 and "gen_ai.usage.cost" not in attrs
    assert _cost(telemetry).unpriced.value(("test-app", "openai", "acme-unreleased-9000")) == 1


def test_abandoned_stream_counts_what_was_reported(
    app: Callable[..., Telemetry], llm: FakeLlmServers
) -> None:
    """An Anthropic stream closed after message_start still counts its (billed) input tokens."""
    telemetry = app()
    with httpx.Client() as client, client.stream("POST", llm.url("anthropic-stream"), json={}) as response:
        raw = response.iter_raw(512)
        next(raw)
    cost = _cost(telemetry)
    assert cost.tokens.value(("test-app", "anthropic", "claude-sonnet-4-5-20250929", "input")) == 1672


def test_budget_sees_streamed_and_plain_calls(app: Callable[..., Telemetry], llm: FakeLlmServers) -> None:
    """Budgets count late (streamed) and on-span costs alike."""
    telemetry = app(budgets=[{"name": "llm", "limit_usd": 1, "match": {"provider": ["openai", "anthropic"]}}])
    with httpx.Client() as client:
        client.post(llm.url("anthropic-messages"), json={})
        with client.stream("POST", llm.url("openai-chat-stream"), json={}) as response:
            response.read()
    budget = _cost(telemetry).budgets.get("llm")
    assert budget.spent == _expected_cost(CASES["anthropic-messages"]) + _expected_cost(
        CASES["openai-chat-stream"]
    )


def test_usage_from_http_off_leaves_bodies_alone(
    app: Callable[..., Telemetry], providers: Providers, llm: FakeLlmServers
) -> None:
    """pricing.usage_from_http: false (another instrumentation records usage): no attributes, no cost."""
    telemetry = app(pricing={"usage_from_http": False})
    with httpx.Client() as client:
        client.post(llm.url("openai-chat"), json={"model": "gpt-4o"})
    assert "gen_ai.usage.input_tokens" not in _client_span(providers).attributes
    assert _cost_total(telemetry) == 0


def test_bedrock_converse_priced_from_the_url_model(
    app: Callable[..., Telemetry], providers: Providers, llm: FakeLlmServers
) -> None:
    """AWS Bedrock converse (genai-prices' extractor, model from the URL) is priced like calc_price(aws)."""
    case = CASES["bedrock-converse"]
    telemetry = app()
    with httpx.Client() as client:
        client.post(llm.url("bedrock-converse"), json={"messages": []})
    attrs = dict(_client_span(providers).attributes)
    assert attrs["gen_ai.request.model"] == case["request_model"]
    assert attrs["gen_ai.operation.name"] == "chat"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = calc_price(Usage(input_tokens=30, output_tokens=628), case["request_model"], provider_id="aws")
    assert attrs["gen_ai.usage.cost"] == float(want.total_price)
    assert _cost_total(telemetry) == want.total_price


def _spy_pricing(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """From now on, every usage PricePlan.cost prices (it still prices), in order."""
    from spansignals.processors.pricing import PricePlan

    priced: list[Any] = []
    original = PricePlan.cost
    monkeypatch.setattr(PricePlan, "cost", lambda plan, usage: priced.append(usage) or original(plan, usage))
    return priced


@pytest.mark.parametrize("name", JSON_CASES)
def test_sync_json_call_is_priced_once(
    name: str,
    app: Callable[..., Telemetry],
    providers: Providers,
    llm: FakeLlmServers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The enricher's price (gen_ai.usage.cost) is the one the cost derivation charges: one
    PricePlan.cost per call, and the metric equals the attribute's exact price."""
    priced = _spy_pricing(monkeypatch)
    case = CASES[name]
    telemetry = app()
    with httpx.Client() as client:
        client.post(llm.url(name), json={"model": case["model"], "messages": []})
    want = _expected_cost(case)
    assert _cost_total(telemetry) == want
    assert dict(_client_span(providers).attributes)["gen_ai.usage.cost"] == float(want)
    assert len(priced) == 1


@pytest.mark.parametrize("name", SSE_CASES)
def test_streamed_usage_is_exported_on_a_report_span_and_counted_once(
    name: str,
    app: Callable[..., Telemetry],
    providers: Providers,
    llm: FakeLlmServers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When a stream completes, a gen_ai.usage child span of the client span carries its usage,
    cost and models: the app prices and counts the call once (not again when that span ends), and
    a spansignals collector fed the exported spans prices it once, exactly; the report names its
    provider only in spansignals.usage.provider, so provider selectors (SLOs) see no second call."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from spansignals.processors.collector.pipeline import TracePipeline
    from spansignals.processors.cost import CostSpanProcessor
    from spansignals.processors.engine import SignalEngine
    from spansignals.processors.providers import resolve_view
    from spansignals.processors.view import view_from_readable_span
    from spansignals.sdk.usage_enricher import GenAiUsageEnricher

    priced = _spy_pricing(monkeypatch)
    case = CASES[name]
    telemetry = app()
    for enricher in telemetry.hooks.enrichers:
        if isinstance(enricher, GenAiUsageEnricher):
            enricher.tracer_provider = providers.tracer_provider  # what configure() was given
    with httpx.Client() as client, client.stream("POST", llm.url(name), json={"model": case["model"]}) as r:
        r.read()
    want = _expected_cost(case)
    assert _cost_total(telemetry) == want  # once, though the report span went through the engine
    assert len(priced) == 1  # and priced once
    client_span = _client_span(providers)
    reports = [s for s in providers.spans() if s.name == "gen_ai.usage"]
    assert len(reports) == 1
    report = reports[0]
    assert report.parent is not None and report.parent.span_id == client_span.context.span_id
    assert report.start_time == client_span.start_time and report.end_time >= client_span.end_time
    attrs = dict(report.attributes)
    assert attrs["gen_ai.usage.input_tokens"] == case["expected"]["input"]
    assert attrs["gen_ai.response.model"] == case["model"]
    assert attrs["spansignals.usage.provider"] == case["provider"]
    assert attrs["gen_ai.usage.cost"] == float(want)
    assert resolve_view(view_from_readable_span(report)) is None  # no provider for selectors
    downstream = CostSpanProcessor()
    TracePipeline(SignalEngine([downstream])).ingest(encode_spans(providers.spans()), "grpc")
    snapshot = downstream.cost.snapshot()
    assert len(snapshot) == 1 and downstream.cost.exact(snapshot[0][0]) == want
    assert snapshot[0][0][1] == case["provider"]
