"""End to end with a real Prometheus: instrumented httpx -> local LLM servers -> scraped cost series."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fake_llm import CASES, FakeLlmServers
from genai_prices import Usage, calc_price
from peers import PrometheusPeer, free_port

from spansignals.sdk import configure

pytestmark = pytest.mark.integration

GP_KEYS = {"input": "input_tokens", "output": "output_tokens", "cache_read": "cache_read_tokens",
           "cache_write": "cache_write_tokens", "reasoning": "output_reasoning_tokens",
           "cache_write_1h": "cache_write_1h_tokens"}  # fmt: skip
SYNC = [
    "openai-chat-cached",
    "openai-responses",
    "openai-embeddings",
    "anthropic-messages-cache",
    "gemini-generate",
]
STREAMS = ["openai-chat-stream", "anthropic-stream", "gemini-stream"]
ASYNC = ["anthropic-messages-cache-1h", "openai-chat-reasoning"]


def _expected(name: str) -> Decimal:
    """Independent of our parsers and plans: genai-prices' calc_price on the documented counts."""
    case = CASES[name]
    usage = Usage(**{GP_KEYS[k]: v for k, v in case["expected"].items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return calc_price(
            usage, case["model"], provider_id={"gemini": "google"}.get(case["provider"], case["provider"])
        ).total_price


@pytest.fixture
def llm() -> Iterator[FakeLlmServers]:
    """Fake OpenAI, Anthropic and Gemini servers."""
    servers = FakeLlmServers()
    yield servers
    servers.close()


def test_prometheus_cost_equals_independent_sum(
    start_prometheus: Callable[..., PrometheusPeer], llm: FakeLlmServers
) -> None:
    """Every scraped cost series equals its exact expected cost; their sum is the expected total."""
    port = free_port()
    telemetry = configure(
        {"service": {"name": "cost-e2e"}, "providers": FakeLlmServers.providers_config(),
         "budgets": [{"name": "e2e", "period": "day", "limit_usd": 1}]},
        traces_exporter="none",
        metrics_exporter="prometheus",
        prometheus_port=port,
        set_global_providers=False,
    )  # fmt: skip
    try:
        prometheus = start_prometheus([f"127.0.0.1:{port}"], scrape_interval="1s")
        expected: dict[tuple[str, str], Decimal] = {}

        def count(name: str) -> None:
            key = (CASES[name]["provider"], CASES[name]["model"])
            expected[key] = expected.get(key, Decimal(0)) + _expected(name)

        with httpx.Client() as client:
            for name in SYNC:
                client.post(
                    llm.url(name, enc="gzip"), json={"model": CASES[name]["model"]}
                ).raise_for_status()
                count(name)
            for name in STREAMS:
                with client.stream("POST", llm.url(name), json={"stream": True}) as response:
                    response.read()
                count(name)
            client.post(llm.url("unknown-model"), json={"model": "acme-unreleased-9000"})

        async def async_calls() -> None:
            async with httpx.AsyncClient() as client:
                for name in ASYNC:
                    (await client.post(llm.url(name), json={})).raise_for_status()

        asyncio.run(async_calls())
        for name in ASYNC:
            count(name)
        total = sum(expected.values(), Decimal(0))

        def complete(result: list[dict[str, Any]]) -> bool:
            return len(result) == len(expected)

        result = prometheus.wait_for('spansignals_cost_usd_total{service_name="cost-e2e"}', complete)
        scraped = {(r["metric"]["provider"], r["metric"]["model"]): float(r["value"][1]) for r in result}
        assert scraped == {k: float(v) for k, v in expected.items()}
        summed = prometheus.query('sum(spansignals_cost_usd_total{service_name="cost-e2e"})')
        assert float(summed[0]["value"][1]) == pytest.approx(float(total), rel=1e-12)
        unpriced = prometheus.wait_for(
            'spansignals_cost_unpriced_total{service_name="cost-e2e",model="acme-unreleased-9000"}', bool
        )
        assert float(unpriced[0]["value"][1]) == 1
        spent = prometheus.wait_for('spansignals_budget_spent_usd{budget="e2e"}', bool)
        assert float(spent[0]["value"][1]) == pytest.approx(float(total), rel=1e-12)
        tokens = prometheus.query(
            'spansignals_tokens_total{service_name="cost-e2e",provider="anthropic",token_type="cache_read"}'
        )
        assert sum(float(r["value"][1]) for r in tokens) == 12000 + 1000  # cached-messages + stream fixtures
    finally:
        telemetry.shutdown(timeout=5)
