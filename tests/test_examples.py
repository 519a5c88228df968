"""Every example runs alone and prints what its header promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"

# Lines (substrings) each example must print. An example not listed here must still exit 0.
EXPECTED: dict[str, list[str]] = {
    "alerting.py": [
        "alertmanager <- SpansignalsBudgetCritical {budget=llm-daily} firing",
        "alertmanager <- SpansignalsSloBurnRatePage {slo=openai-availability} firing",
        "webhook <- [FIRING:1] SpansignalsBudgetCritical (signature ok)",
        "webhook <- [FIRING:1] SpansignalsSloBurnRatePage (signature ok)",
        "OpenAIErrors                   firing   muted by silence:",
        "ok: 2 alerts at Alertmanager, 2 at the webhook, 1 silenced",
    ],
    "quickstart_app.py": [
        'span_kind="SPAN_KIND_CLIENT"',
        'status_code="STATUS_CODE_ERROR"',
        "ok: 5 client calls counted",
    ],
    "llm_cost.py": [
        "openai gpt-4o call: $0.005615 -- gen_ai.usage.cost on the span = 0.005615",
        "anthropic claude-sonnet-4-5 stream: $0.0327510 -- counted when the stream ended",
        "budget event: llm-daily -> critical",
        'spansignals_budget_state{budget="llm-daily"',
        "ok: 4 calls priced, total $0.0510872; budget llm-daily is critical",
    ],
    "slo_burn.py": [
        "event: checkout-availability -> page (14.4x 1h/5m, 1h burn 16.7x)",
        "event: checkout-availability -> ok (clear)",
        "maintenance: 180 events excluded, budget left 49.0% before and 49.0% after",
        "ok: paged on the incident, recovered, maintenance excluded",
    ],
    "rate_limits.py": [
        'spansignals_ratelimit_reset_seconds{provider="github",resource="core"',
        'spansignals_ratelimit_remaining{provider="ietf",resource="requests",service_name="rate-limit-demo"}',
        'spansignals_ratelimit_limit{provider="anthropic",resource="input_tokens"',
        "blocked: request to openai blocked by spansignals: rate limited (Retry-After)",
        "then 200",
        "ok: breaker opened, guard blocked, probes recovered",
    ],
}


def _clean_env() -> dict[str, str]:
    """The environment without OTEL_*/SPANSIGNALS_* settings that would change an example."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SPANSIGNALS_"))}


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_runs(example: str) -> None:
    """The example exits 0 within a minute and prints its expected lines."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=EXAMPLES.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in EXPECTED.get(example, []):
        assert expected in result.stdout, result.stdout
    assert "sk-demo-secret" not in result.stdout + result.stderr
