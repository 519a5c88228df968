"""SLO processor costs: per span on the hot path, per evaluation (each scrape), memory per SLO.

Run:  python benchmarks/slo_cost.py [--rounds 9] [--spans 20000]

Per span: ``SloSpanProcessor.observe`` with the example config's two SLOs
(``examples/config/spansignals.yaml``) on three views (an OpenAI client span matching the
provider-selected latency SLO, a server span matching the availability SLO, a database client
span matching neither), next to ``RedSpanProcessor.observe`` on the same views for scale. Min and
median over rounds. Per evaluation: ``evaluate()`` of 10 SLOs holding 3 days of events (what
every scrape of the gauges costs). Memory: tracemalloc of 10 SLOs with a 30-day period.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spansignals.processors.config import load_config
from spansignals.processors.config.slos import SloConfig
from spansignals.processors.providers import ProviderTable
from spansignals.processors.red import RedSpanProcessor
from spansignals.processors.slo import SloSpanProcessor
from spansignals.processors.view import SpanView

ROOT = Path(__file__).resolve().parents[1]


def _time(fn: Callable[[Any], None], view: SpanView, spans: int, rounds: int) -> tuple[float, float]:
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(spans):
            fn(view)
        results.append((time.perf_counter() - start) / spans * 1e6)
    return min(results), statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--spans", type=int, default=20_000)
    args = parser.parse_args()

    config = load_config(
        ROOT / "examples/config/spansignals.yaml", env={"SLACK_WEBHOOK_URL": "https://x.example"}
    )
    slo = SloSpanProcessor(
        config.slos,
        maintenance=config.alerts.maintenance,
        providers=ProviderTable.from_config(config.providers),
    )
    red = RedSpanProcessor()
    now = time.time_ns()
    llm = {
        "http.request.method": "POST",
        "server.address": "api.openai.com",
        "url.full": "https://api.openai.com/v1/chat/completions",
        "http.response.status_code": 200,
        "gen_ai.request.model": "gpt-4o",
        "spansignals.provider": "openai",
    }
    views = {
        "openai client span (latency SLO)": SpanView(
            "POST", 3, now - 10**8, now, 0, llm, {"service.name": "checkout-api"}
        ),
        "server span (availability SLO)": SpanView(
            "GET /cart", 2, now - 10**8, now, 0, {"http.route": "/cart"}, {"service.name": "checkout-api"}
        ),
        "db client span (no SLO)": SpanView(
            "SELECT", 3, now - 10**8, now, 0, {"db.system": "postgresql"}, {"service.name": "checkout-api"}
        ),
    }
    print(f"per span, µs (min / median of {args.rounds} rounds of {args.spans})")
    for label, view in views.items():
        s_min, s_med = _time(slo.observe, view, args.spans, args.rounds)
        r_min, r_med = _time(red.observe, view, args.spans, args.rounds)
        print(f"  {label:36s} slo {s_min:5.2f} / {s_med:5.2f}    red {r_min:5.2f} / {r_med:5.2f}")

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    many = SloSpanProcessor([SloConfig(name=f"slo-{i}", objective=0.999) for i in range(10)])
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per_slo = sum(d.size_diff for d in after.compare_to(before, "filename")) / 10 / 1024
    start_s = time.time() - 3 * 86400
    for i in range(50_000):
        many.observe(
            SpanView(
                "GET /",
                2,
                0,
                int((start_s + i * 5) * 1e9),
                2 if i % 100 == 0 else 0,
                {},
                {"service.name": "svc"},
            )
        )
    timings = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        many.evaluate()
        timings.append((time.perf_counter() - start) * 1e3)
    print(
        f"evaluate() of 10 SLOs with 3 days of events: {min(timings):.2f} ms min, "
        f"{statistics.median(timings):.2f} ms median"
    )
    print(f"memory per SLO (30d period, rings allocated up front): {per_slo:.0f} KB")


if __name__ == "__main__":
    main()
