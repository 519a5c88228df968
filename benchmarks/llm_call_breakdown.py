"""Where the time of spansignals' hooks and enrichers goes in one LLM call, measured in place.

Run:  python benchmarks/llm_call_breakdown.py [--rounds 10] [--calls 2000] [--variant NAME]

Runs a span lifecycle of ``inapp_span_cost.py`` (an OpenAI chat call: client span, request hook,
response hook with header capture and usage read-ahead, body read; by default ``+spansignals
sync``, every derivation inside ``span.end()`` so all of spansignals' work is on the timed thread)
with timing wrappers around the hooks, the enrichers, the cost derivation and the pieces they call
(the SDK's ``Span.set_attributes`` included), and prints the per-call time of each wrapped function
in the round with the lowest total; then the plain lifecycle (no spansignals) and the difference:
what spansignals adds per LLM call (goal: <= 70 µs; the wrappers' own time included). Nested
functions are included in their callers' figures; each wrapper adds ~0.2 µs to its callers
(more with the default clock, the timing thread's CPU time, whose reads cost a system call;
``--clock wall`` uses ``perf_counter``, which a busy shared machine inflates with preemption).
Isolated ``timeit`` figures are smaller (a warm, tiny loop); these show the share of each piece
inside a real call.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inapp_span_cost as bench
from opentelemetry.sdk import trace as sdk_trace

from spansignals.processors import cost, genai_usage, pricing
from spansignals.sdk import httpx_hooks, ratelimit_capture, usage_enricher

_totals: dict[str, list[float]] = {}
_clock: Callable[[], float] = time.thread_time


def _wrap(owner: Any, name: str, label: str) -> None:
    inner: Callable[..., Any] | None = getattr(owner, name, None)
    if inner is None:
        return  # a piece this version of the code does not have
    _totals[label] = [0.0, 0]

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = _clock()
        try:
            return inner(*args, **kwargs)
        finally:
            entry = _totals[label]
            entry[0] += _clock() - start
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
    (cost.CostSpanProcessor, "price_call", "      cost.price_call"),
    (httpx_hooks.HttpxHooks, "_redact_headers", "  hooks._redact_headers"),
    (sdk_trace.Span, "set_attributes", "SDK Span.set_attributes (all calls)"),
    (cost.CostSpanProcessor, "observe", "cost derivation (CostSpanProcessor.observe)"),
    (pricing.PriceCatalog, "plan_for", "price lookups: PriceCatalog.plan_for"),
    (pricing.PriceCatalog, "plan_at", "price lookups: PriceCatalog.plan_at"),
    (pricing.PricePlan, "cost", "price arithmetic: PricePlan.cost"),
)


def _best(run: Callable[[int], dict[str, float]], calls: int) -> float:
    return run(calls)["path"] / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--variant", default="+spansignals sync", help="an inapp_span_cost lifecycle variant")
    parser.add_argument("--clock", choices=("thread", "wall"), default="thread")
    args = parser.parse_args(argv)
    global _clock
    _clock = time.thread_time if args.clock == "thread" else time.perf_counter
    for owner, name, label in TARGETS:
        _wrap(owner, name, label)
    bench._now = _clock  # the same clock as the wrappers, so the pieces add up
    variants = bench._lifecycle_variants(bench._config(str(bench.DEFAULT_CONFIG)))
    run, plain = variants[args.variant], variants["lifecycle-plain"]
    run(max(1, args.calls // 4))
    plain(max(1, args.calls // 4))
    best: tuple[float, dict[str, tuple[float, float]]] | None = None
    best_plain = float("inf")
    for _ in range(args.rounds):
        for entry in _totals.values():
            entry[0], entry[1] = 0.0, 0
        total = _best(run, args.calls)
        figures = {k: (v[0] / args.calls * 1e6, v[1] / args.calls) for k, v in _totals.items()}
        if best is None or total < best[0]:
            best = (total, figures)
        best_plain = min(best_plain, _best(plain, args.calls))
    assert best is not None
    load = "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"one LLM call, {args.variant}, best of {args.rounds}x{args.calls}, {args.clock} clock ({load}):")
    for label, (micros, calls) in best[1].items():
        if calls:
            print(f"  {label:<44}{micros:>8.2f} µs  ({calls:g} calls)")
    print(f"  {'whole lifecycle (span, hooks, body read)':<44}{best[0]:>8.2f} µs")
    print(f"  {'lifecycle-plain (no spansignals)':<44}{best_plain:>8.2f} µs")
    print(
        f"  {'=> added per LLM call':<44}{best[0] - best_plain:>8.2f} µs  (goal <= 70 µs; wrappers included)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
