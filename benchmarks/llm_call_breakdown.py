"""Where the time of spansignals' hooks and enrichers goes in one LLM call, measured in place.

Run:  python benchmarks/llm_call_breakdown.py [--rounds 10] [--calls 2000]

Runs the ``+hooks+enrichers`` span lifecycle of ``inapp_span_cost.py`` (an OpenAI chat call: client
span, request hook, response hook with header capture and usage read-ahead, body read) with timing
wrappers around the hooks, the enrichers and the pieces they call (the SDK's
``Span.set_attributes`` included), and prints the per-call time of each wrapped function in the
round with the lowest total. Nested functions are included in their callers' figures; each wrapper
adds ~0.2 µs to its callers. Isolated ``timeit`` figures are smaller (a warm, tiny loop); these
show the share of each piece inside a real call.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inapp_span_cost as bench
from opentelemetry.sdk import trace as sdk_trace

from spansignals.processors import genai_usage
from spansignals.sdk import httpx_hooks, ratelimit_capture, usage_enricher

_totals: dict[str, list[float]] = {}


def _wrap(owner: Any, name: str, label: str) -> None:
    inner: Callable[..., Any] = getattr(owner, name)
    _totals[label] = [0.0, 0]

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            entry = _totals[label]
            entry[0] += time.perf_counter() - start
            entry[1] += 1

    setattr(owner, name, timed)


TARGETS = (
    (httpx_hooks.HttpxHooks, "request_hook", "hooks.request_hook"),
    (httpx_hooks.HttpxHooks, "_redact_url", "  hooks._redact_url"),
    (usage_enricher.GenAiUsageEnricher, "on_request", "  usage.on_request"),
    (usage_enricher, "_request_body", "    usage._request_body"),
    (usage_enricher, "request_model_from", "    request_model_from"),
    (httpx_hooks.HttpxHooks, "response_hook", "hooks.response_hook"),
    (ratelimit_capture.RateLimitHeaderEnricher, "on_response", "  header capture.on_response"),
    (ratelimit_capture, "_captured", "    header capture._captured"),
    (usage_enricher.GenAiUsageEnricher, "on_response", "  usage.on_response"),
    (usage_enricher, "_body_headers", "    usage._body_headers"),
    (usage_enricher, "ResponseUsageReader", "    ResponseUsageReader()"),
    (genai_usage.ResponseUsageReader, "feed", "    reader.feed"),
    (genai_usage.ResponseUsageReader, "finish", "    reader.finish (JSON parse)"),
    (usage_enricher.GenAiUsageEnricher, "_price", "    usage._price"),
    (httpx_hooks.HttpxHooks, "_redact_headers", "  hooks._redact_headers"),
    (sdk_trace.Span, "set_attributes", "SDK Span.set_attributes (all calls)"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    for owner, name, label in TARGETS:
        _wrap(owner, name, label)
    bench._now = time.perf_counter  # the same clock as the wrappers, so the pieces add up
    run = bench._lifecycle_variants(bench._config(str(bench.DEFAULT_CONFIG)))["+hooks+enrichers"]
    run(max(1, args.calls // 4))
    best: tuple[float, dict[str, tuple[float, float]]] | None = None
    for _ in range(args.rounds):
        for entry in _totals.values():
            entry[0], entry[1] = 0.0, 0
        total = run(args.calls)["path"] / args.calls * 1e6
        figures = {k: (v[0] / args.calls * 1e6, v[1] / args.calls) for k, v in _totals.items()}
        if best is None or total < best[0]:
            best = (total, figures)
    assert best is not None
    print(f"one LLM call, +hooks+enrichers lifecycle, best of {args.rounds} rounds of {args.calls}:")
    for label, (micros, calls) in best[1].items():
        print(f"  {label:<40}{micros:>8.2f} µs  ({calls:g} calls)")
    print(f"  {'whole lifecycle (span, hooks, body read)':<40}{best[0]:>8.2f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
