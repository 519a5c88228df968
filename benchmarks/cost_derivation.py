"""CPU time of the cost derivation per span on OTLP views, by span type (collector throughput, #6).

Run:  python benchmarks/cost_derivation.py [--rounds 30] [--config FILE]

Each round parses the 512-span request of ``collector_throughput.py`` afresh (as the collector's
pipeline does per request), builds the views the pipeline builds (untimed), and times
``CostSpanProcessor.observe`` alone over each span type: ``llm`` (client spans with ``gen_ai.*``
usage, ~5%), ``server`` (no usage, ~85%), ``saas`` (HTTP client spans to Stripe, ~10%) and
``mix`` (the whole request, in request order). Times are ``time.process_time`` (CPU of this
process, so a busy neighbour on a shared machine matters less than with wall time); the median and
the minimum over rounds are printed in µs per span, with an empty loop's cost for reference.
The garbage collector is off while a round is timed (as ``timeit`` does).

The cost derivation is the first derivation to read an LLM span's attributes in the collector's
order (``red`` reads none), so its figure for ``llm`` includes building the attribute index
(:class:`~spansignals.processors.view.OtlpAttributes`); that share is measured on its own too
(``index only``: ``len(attributes)`` on fresh views), and ``llm (dict attributes)`` is the same
LLM spans with their attributes in a dict (as in the app): the derivation's own logic, without
upb's cost of reading values.

Two configurations: ``default`` (no config: genai-prices, no budgets, no per-request prices) and
``example`` (``examples/config/spansignals.yaml``: a ``pricing.apis`` entry and budgets), since
per-request API prices send spans without usage down a second path.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import collector_throughput as ct

from spansignals.processors.collector.decoding import parse_protobuf_request
from spansignals.processors.config import load_config
from spansignals.processors.factory import build_engine
from spansignals.processors.view import OtlpAttributes, SpanView, view_from_otlp_span

try:  # the request-wide hint the pipeline gives might_contain, where this version has it
    from spansignals.processors.collector.span_offsets import EncodedSpans
except ImportError:
    EncodedSpans = None

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "config" / "spansignals.yaml"

KINDS: dict[str, Callable[[Any], bool]] = {
    "llm": lambda s: s.name.startswith("chat"),
    "server": lambda s: s.kind == 2,
    "saas": lambda s: s.kind == 3 and s.name == "POST",
    "mix": lambda s: True,
}


def _views(body: bytes) -> dict[str, list[SpanView]]:
    """Fresh views of one parsed request by span type, built as the pipeline builds them (each
    span's attributes not yet indexed). Where the collector has it, each type's views share one
    request hint (:class:`~spansignals.processors.collector.span_offsets.EncodedSpans`): warmed
    for the three types, so their figures are per span; fresh for ``mix``, so the request-wide
    search is in its figure, spread over the request's spans as in the pipeline."""
    request = parse_protobuf_request(body)
    total = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    out: dict[str, list[SpanView]] = {}
    for kind, wanted in KINDS.items():
        hint = EncodedSpans(body, total) if EncodedSpans is not None else None
        if hint is not None and kind != "mix":
            hint.might_contain(0, b"usage.")
        views = out[kind] = []
        position = 0
        for rs in request.resource_spans:
            resource = OtlpAttributes(rs.resource.attributes)
            service = resource.get("service.name")
            for ss in rs.scope_spans:
                for span in ss.spans:
                    if wanted(span):
                        views.append(
                            view_from_otlp_span(span, resource, service, hint, position)
                            if hint is not None
                            else view_from_otlp_span(span, resource, service)
                        )
                    position += 1
    return out


def _cost_processor(config: Path | None) -> Any:
    if config is not None:
        # the example's alert receivers read their webhook from the environment
        os.environ.setdefault("SLACK_WEBHOOK_URL", "https://hooks.slack.example/services/bench")
    engine = build_engine(load_config(str(config) if config is not None else {}))
    cost = engine.get("cost")
    if cost is None:
        raise SystemExit("the configuration has no cost derivation")
    cost.catalog.preload(background=False)
    return cost


def measure(cost: Any, body: bytes, rounds: int) -> dict[str, list[float]]:
    """Per-round µs per span of ``cost.observe`` (and of an empty loop, and of indexing) by kind."""
    observe = cost.observe
    figures: dict[str, list[float]] = {}
    for kind in KINDS:
        figures[kind] = []
        figures[f"{kind} (empty loop)"] = []
    figures["llm (index only)"] = []
    figures["llm (dict attributes)"] = []
    as_dicts = [
        SpanView(v.name, v.kind, v.start_ns, v.end_ns, v.status_code, dict(v.attributes.items()), v.resource)
        for v in _views(body)["llm"]
    ]
    for view in _views(body)["mix"]:  # warm: prices loaded, plans compiled, series created
        observe(view)
    clock = time.process_time
    for _ in range(rounds):
        gc.collect()  # before parsing: a collection walks every object and leaves the caches cold
        gc.disable()  # as timeit does: a collection landing in one round says nothing of observe
        by_kind = _views(body)
        for kind, views in by_kind.items():
            n = len(views)
            t0 = clock()
            for view in views:
                observe(view)
            t1 = clock()
            for _view in views:
                pass
            t2 = clock()
            figures[kind].append((t1 - t0) / n * 1e6)
            figures[f"{kind} (empty loop)"].append((t2 - t1) / n * 1e6)
        fresh = _views(body)["llm"]
        t0 = clock()
        for view in fresh:
            len(view.attributes)  # builds the index, as the first attribute lookup does
        figures["llm (index only)"].append((clock() - t0) / len(fresh) * 1e6)
        t0 = clock()
        for view in as_dicts:
            observe(view)
        figures["llm (dict attributes)"].append((clock() - t0) / len(as_dicts) * 1e6)
        gc.enable()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the 'example' configuration")
    args = parser.parse_args(argv)
    body, _ = ct.build_template(512)
    counts = {kind: len(v) for kind, v in _views(body).items()}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"python {sys.version.split()[0]}, load average at start: {load}")
    print(f"request: 512 spans; llm {counts['llm']}, server {counts['server']}, saas {counts['saas']}")
    for name, config in (("default", None), ("example", args.config)):
        cost = _cost_processor(config)
        figures = measure(cost, body, args.rounds)
        print(f"\ncost derivation, config {name}: observe, µs per span, {args.rounds} rounds")
        print(f"  {'spans':<24}{'median':>9}{'min':>9}")
        for label, values in figures.items():
            print(f"  {label:<24}{statistics.median(values):>9.2f}{min(values):>9.2f}")
        mix = statistics.median(figures["mix"])
        print(f"  => cost derivation at the median: {1e6 / mix:,.0f} spans/s of the mix on one core (alone)")
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
