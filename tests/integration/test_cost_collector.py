"""The collector front door: cost from OTLP spans of other languages, sampling weights, budget restarts."""

from __future__ import annotations

import json
import os
import time
import urllib.request
import warnings
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from peers import CollectorProcess, poll_until

pytestmark = pytest.mark.integration


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _span(i: int, attrs: dict[str, Any], trace_state: str = "") -> dict[str, Any]:
    now = time.time_ns()
    span = {
        "traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": "chat gpt-4o-mini", "kind": 3,
        "startTimeUnixNano": str(now - 10**8), "endTimeUnixNano": str(now),
        "attributes": [_attr(k, v) for k, v in attrs.items()],
    }  # fmt: skip
    if trace_state:
        span["traceState"] = trace_state
    return span


def _post(collector: CollectorProcess, spans: list[dict[str, Any]]) -> None:
    body = {"resourceSpans": [{"resource": {"attributes": [_attr("service.name", "go-svc")]},
                               "scopeSpans": [{"spans": spans}]}]}  # fmt: skip
    request = urllib.request.Request(
        collector.traces_url, json.dumps(body).encode(), {"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _value(collector: CollectorProcess, name: str, **labels: str) -> float | None:
    for sample_labels, value in collector.samples(name):
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return value
    return None


def test_collector_prices_otlp_spans_weights_them_and_keeps_budget_across_restart(
    start_collector: Callable[..., CollectorProcess], tmp_path: Path
) -> None:
    """OTLP GenAI spans are priced (1-in-2 sampled ones count twice); budget spend survives a restart."""
    usage = {"gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat",
             "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 1200,
             "gen_ai.usage.output_tokens": 80, "gen_ai.usage.cache_read.input_tokens": 1024}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = calc_price(Usage(input_tokens=1200, output_tokens=80, cache_read_tokens=1024),
                         "gpt-4o-mini-2024-07-18", provider_id="openai").total_price  # fmt: skip
    expected = one * 3  # one unsampled span + one span kept at probability 1/2 (threshold 0x8)
    blocks = {
        "budgets": [{"name": "go-llm", "period": "month", "limit_usd": 1, "match": {"service": "go-svc"}}]
    }
    env = {**os.environ, "SPANSIGNALS_BUDGET_STATE": str(tmp_path / "budgets.json")}
    collector = start_collector(config_blocks=blocks, env=env)
    _post(collector, [_span(0, usage), _span(1, usage, trace_state="ot=th:8")])
    labels = {"service_name": "go-svc", "provider": "openai", "model": "gpt-4o-mini-2024-07-18"}
    cost = poll_until(
        lambda: _value(collector, "spansignals_cost_usd_total", **labels), timeout=10, what="cost"
    )
    assert cost == pytest.approx(float(expected), rel=1e-12)
    assert _value(collector, "spansignals_tokens_total", token_type="input", **labels) == 3600
    assert _value(collector, "spansignals_budget_spent_usd", budget="go-llm") == pytest.approx(
        float(expected)
    )
    assert collector.process.stop() == 0  # SIGTERM: graceful stop writes the budget state
    assert (
        Decimal(json.loads((tmp_path / "budgets.json").read_text())["budgets"]["go-llm"]["spent"]) == expected
    )

    restarted = start_collector(config_blocks=blocks, env=env)
    assert _value(restarted, "spansignals_budget_spent_usd", budget="go-llm") == pytest.approx(
        float(expected)
    )
    assert (
        _value(restarted, "spansignals_cost_usd_total", **labels) is None
    )  # counters restart, as counters do
    _post(restarted, [_span(2, usage)])
    spent = poll_until(
        lambda: (
            (v := _value(restarted, "spansignals_budget_spent_usd", budget="go-llm"))
            and v > float(expected)
            and v
        ),
        timeout=10,
        what="budget spend after restart",
    )
    assert spent == pytest.approx(float(expected + one))
    assert (
        Decimal(json.loads((tmp_path / "budgets.json").read_text())["budgets"]["go-llm"]["spent"]) == expected
    )
