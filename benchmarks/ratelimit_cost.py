"""What the rate-limit pieces cost on the span path, next to a bare SDK span.

Run:  python benchmarks/ratelimit_cost.py [--rounds 15] [--n 5000] [--otlp-rounds 15] [--requests 4]

Times, each as the best of ``--rounds`` rounds of ``--n`` calls (the best round is the least
disturbed by other load on the machine):

- a bare SDK client span started and ended (the reference, 8 attributes);
- ``RedSpanProcessor.observe`` on its view (the cheapest derivation, for scale);
- ``RateLimitSpanProcessor.observe`` on a provider client span without rate-limit headers, and on
  one with OpenAI's six ``x-ratelimit-*`` headers captured (parse, store, breaker update);
- the header-capture enricher's ``on_response`` for a response carrying those six headers (scan
  the raw headers, set six list-of-string attributes on a live span).

Ratios to the bare span are printed. The rate-limit work runs only on HTTP client spans to known
providers; every other span costs one integer comparison.

Then the collector side (``--otlp-rounds``, 0 to skip): ``observe`` on OTLP views of the 512-span
request of ``collector_throughput.py`` (85% server spans, 10% Stripe client spans with two
``x-ratelimit-*`` string-array headers, 5% OpenAI chat spans; the template's remaining counts
take 10 values, so a row has them never repeat), each view first through the RED
and cost derivations, as the pipeline hands it over (RED reads no attribute and cost only searches
a SaaS span's encoding for ``usage.``, so building a SaaS span's attribute index falls to the rate
limits; cost indexes the LLM spans). Per round, each span group of ``--requests`` requests,
decoded just before (as the pipeline derives a request it just decoded), is timed with
``time.process_time`` (CPU time: other load on the machine counts only through shared caches and
cores), span by span (``observe``) and as the pipeline derives, one ``observe_batch`` per request.
Printed are the median and minimum over rounds, in µs per span, for the SaaS client spans (also
with every 4th one a 429), the LLM client spans, the server spans and the whole mix (also per
client span, next to what the groups predict),
and, for scale, what reading a SaaS span's attributes alone costs (the index, the HTTP method,
the provider keys, the status and the two header values: the floor of the derivation on OTLP).
Last, the same in the pipeline: ``TracePipeline.ingest`` with RED + cost and with RED + cost +
rate limits, interleaved round by round; the difference per span should match the mix row (a
derivation whose cost grew with the mix would show here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from opentelemetry.instrumentation.httpx import ResponseInfo
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from spansignals.processors.collector.decoding import parse_protobuf_request
from spansignals.processors.collector.pipeline import TracePipeline
from spansignals.processors.config import load_config
from spansignals.processors.engine import SignalEngine
from spansignals.processors.factory import build_engine
from spansignals.processors.ratelimit import RateLimitSpanProcessor
from spansignals.processors.red import RedSpanProcessor
from spansignals.processors.view import KIND_CLIENT, SpanView, view_from_otlp_span, view_from_readable_span
from spansignals.sdk.ratelimit_capture import RateLimitHeaderEnricher

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from collector_throughput import build_template  # sibling scripts, not a package
from inapp_span_cost import LLM_CLIENT_ATTRIBUTES as ATTRIBUTES  # the 8-attribute reference span

OPENAI_HEADERS = {
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-limit-tokens": "200000",
    "x-ratelimit-remaining-tokens": "199983",
    "x-ratelimit-reset-tokens": "5ms",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--otlp-rounds", type=int, default=15, help="collector rounds (0: skip)")
    parser.add_argument("--requests", type=int, default=4, help="512-span requests per collector round")
    args = parser.parse_args(argv)
    n = args.n

    tracer = TracerProvider().get_tracer("bench")

    def ended(attributes: dict[str, Any]) -> Any:
        span = tracer.start_span("POST", kind=SpanKind.CLIENT, attributes=attributes)
        span.end()
        return view_from_readable_span(span)

    plain_view = ended(ATTRIBUTES)
    header_attrs = {"http.response.header." + k: (v,) for k, v in OPENAI_HEADERS.items()}
    headers_view = ended({**ATTRIBUTES, **header_attrs})
    ratelimit, red, enricher = RateLimitSpanProcessor(), RedSpanProcessor(), RateLimitHeaderEnricher()
    response = ResponseInfo(
        200,
        httpx.Headers({**OPENAI_HEADERS, "content-type": "application/json", "content-length": "300"}),
        None,
        {},
    )
    live: list[Any] = []

    def fresh_spans() -> None:
        live[:] = [tracer.start_span("POST", kind=SpanKind.CLIENT) for _ in range(n)]

    def capture() -> None:
        enricher.on_response(live.pop(), None, response, object(), None)

    def best(fn: Callable[[], None], setup: Callable[[], None] | None = None) -> float:
        samples = []
        for _ in range(args.rounds):
            if setup is not None:
                setup()
            samples.append(timeit.timeit(fn, number=n) / n * 1e6)
        return min(samples)

    def bare() -> None:
        tracer.start_span("POST", kind=SpanKind.CLIENT, attributes=ATTRIBUTES).end()

    base = best(bare)
    rows = [
        ("bare SDK client span (reference)", base),
        ("RED observe", best(lambda: red.observe(plain_view))),
        ("ratelimit observe, no rate-limit headers", best(lambda: ratelimit.observe(plain_view))),
        ("ratelimit observe, six OpenAI headers", best(lambda: ratelimit.observe(headers_view))),
        ("header capture (six list attributes)", best(capture, fresh_spans)),
    ]
    print(f"best of {args.rounds} rounds x {n} calls")
    for name, us in rows:
        print(f"  {name:44s} {us:7.2f} us   {us / base:5.2f}x bare span")
    if args.otlp_rounds > 0:
        otlp(args.otlp_rounds, args.requests)
    return 0


# --- collector side: OTLP views ------------------------------------------------------------------


def _group(view: SpanView) -> str:
    if view.kind != KIND_CLIENT:
        return "server"
    return "llm" if view.name.startswith("chat") else "saas"


def _otlp_views(template: bytes, before: SignalEngine) -> list[SpanView]:
    """The request's spans as the pipeline hands them to the rate limits: through ``before``."""
    views = []
    for rs in parse_protobuf_request(template).resource_spans:
        resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for span in ss.spans:
                view = view_from_otlp_span(span, resource, resource["service.name"])
                before.process(view)
                views.append(view)
    return views


_PROVIDER_KEYS = ("spansignals.provider", "gen_ai.provider.name", "gen_ai.system", "server.address")
_SAAS_HEADERS = ("http.response.header.x-ratelimit-limit", "http.response.header.x-ratelimit-remaining")


def _read_only(view: SpanView) -> None:
    """The attribute reads the derivation cannot do without on a SaaS span, and nothing else."""
    attrs = view.attributes
    _ = "http.request.method" in attrs
    for key in _PROVIDER_KEYS:
        attrs.get(key)
    attrs.get("http.response.status_code")
    for key in _SAAS_HEADERS:
        attrs.get(key)


def _with_429s(template: bytes, every: int) -> bytes:
    """``template`` with every ``every``-th SaaS client span answered 429 (no Retry-After)."""
    request = parse_protobuf_request(template)
    seen = 0
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if span.kind != KIND_CLIENT or span.name != "POST":
                    continue
                seen += 1
                if seen % every == 0:
                    for kv in span.attributes:
                        if kv.key == "http.response.status_code":
                            kv.value.int_value = 429
    return request.SerializeToString()


def _with_unique_remaining(template: bytes, start: int) -> bytes:
    """``template`` with every SaaS span's remaining count a value not used before (from ``start``
    down), as a provider counting down reports it: no cache keyed by values gets a second use."""
    request = parse_protobuf_request(template)
    n = start
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if span.kind != KIND_CLIENT or span.name != "POST":
                    continue
                for kv in span.attributes:
                    if kv.key == "http.response.header.x-ratelimit-remaining":
                        kv.value.array_value.values[0].string_value = str(n)
                        n -= 1
    return request.SerializeToString()


def otlp(rounds: int, requests: int) -> None:
    """``observe`` and ``observe_batch`` per span group on OTLP views, then the marginal cost in
    the pipeline."""
    template, _ = build_template(512)
    throttled = _with_429s(template, 4)  # 429s recur: 2.5% of all spans, a quarter of the SaaS calls
    engine = build_engine(load_config({}))
    before = SignalEngine([p for p in engine.processors if p.processor_name in ("red", "cost")])
    ratelimit = RateLimitSpanProcessor()
    for view in _otlp_views(template, before):  # warm: providers, breakers, parse cache, array cache
        ratelimit.observe(view)
    groups = ("saas", "saas_unique", "saas429", "llm", "server", "mix", "reads")
    modes = ("observe", "batch")
    times: dict[tuple[str, str], list[float]] = {(g, m): [] for g in groups for m in modes}
    counts: dict[str, int] = {}
    print(f"\ncollector: RateLimitSpanProcessor on OTLP views, {requests} x 512 spans per round")
    print(f"  load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    countdown = [10**9]

    def requests_of(body: bytes | None, group: str | None) -> list[list[SpanView]]:
        bodies = [body] * requests
        if body is None:  # never-repeating remaining counts
            bodies = [_with_unique_remaining(template, countdown[0] - i * 100) for i in range(requests)]
            countdown[0] -= requests * 100
        views = (_otlp_views(b, before) for b in bodies)
        return [[v for v in vs if group is None or _group(v) == group] for vs in views]

    sources: dict[str, tuple[bytes | None, str | None]] = {"saas": (template, "saas")}
    sources |= {"saas_unique": (None, "saas"), "saas429": (throttled, "saas"), "llm": (template, "llm")}
    sources |= {"server": (template, "server"), "mix": (template, None), "reads": (template, "saas")}
    for _ in range(rounds):
        for mode in modes:
            for g in groups:
                if g == "reads" and mode == "batch":
                    continue
                # Fresh views (a view read once has its index and wrappers built), decoded just
                # before, as the pipeline derives a request it just decoded: with every group's
                # views built up front, the group timed first ran ~1.5x slower.
                per_request = requests_of(*sources[g])
                counts[g] = sum(len(r) for r in per_request)
                t0 = time.process_time()
                if g == "reads":
                    for views in per_request:
                        for view in views:
                            _read_only(view)
                elif mode == "observe":
                    observe = ratelimit.observe
                    for views in per_request:
                        for view in views:
                            observe(view)
                else:  # as the pipeline derives: one batch per request
                    for views in per_request:
                        ratelimit.observe_batch(views)
                times[(g, mode)].append((time.process_time() - t0) / counts[g] * 1e6)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    labels = {
        "saas": "SaaS client span, 2 x-ratelimit-* headers",
        "saas_unique": "same, remaining never repeats",
        "saas429": "same, every 4th one a 429",
        "llm": "LLM client span (OpenAI), no headers",
        "server": "server span (not a client span)",
        "mix": "realistic mix, averaged over all spans",
        "reads": "(floor: a SaaS span's attribute reads alone)",
    }
    heading = f"µs per span, {rounds} rounds"
    print(f"  {heading:44s} {'observe: median':>15s} {'min':>7s}  {'batch: median':>13s} {'min':>7s}")
    for g in groups:
        row = f"  {labels[g]:44s} {med[(g, 'observe')]:15.3f} {min(times[(g, 'observe')]):7.3f}"
        if times[(g, "batch")]:
            row += f"  {med[(g, 'batch')]:13.3f} {min(times[(g, 'batch')]):7.3f}"
        print(f"{row}   n={counts[g] // requests}/request")
    clients = (counts["saas"] + counts["llm"]) / counts["mix"]
    for mode in modes:
        linear = sum(med[(g, mode)] * counts[g] for g in ("saas", "llm", "server")) / counts["mix"]
        print(
            f"  {mode}: mix per client span {med[('mix', mode)] / clients:.2f} µs; predicted from the groups "
            f"{linear:.3f} µs/span (measured / predicted {med[('mix', mode)] / linear:.2f})"
        )

    # The pipeline, with and without the derivation, interleaved.
    def pipeline(with_ratelimit: bool) -> TracePipeline:
        engine = build_engine(load_config({}))
        wanted = {"red", "cost", "ratelimit"} if with_ratelimit else {"red", "cost"}
        return TracePipeline(SignalEngine([p for p in engine.processors if p.processor_name in wanted]))

    pipelines = {"red+cost": pipeline(False), "red+cost+ratelimit": pipeline(True)}
    for p in pipelines.values():
        p.ingest(parse_protobuf_request(template), "grpc", body_bytes=len(template))
    ingest_times: dict[str, list[float]] = {k: [] for k in pipelines}
    for i in range(rounds):
        order = list(pipelines) if i % 2 == 0 else list(reversed(pipelines))
        for name in order:
            decoded = [parse_protobuf_request(template) for _ in range(requests)]
            t0 = time.process_time()
            for request in decoded:
                pipelines[name].ingest(request, "grpc", body_bytes=len(template))
            ingest_times[name].append((time.process_time() - t0) / (requests * 512) * 1e6)
    base, full = (statistics.median(ingest_times[k]) for k in pipelines)
    diffs = [b - a for a, b in zip(*ingest_times.values(), strict=True)]
    print(f"  pipeline ingest, red+cost: {base:.2f} µs/span; red+cost+ratelimit: {full:.2f} µs/span")
    diff = statistics.median(diffs)
    print(
        f"  rate limits in the pipeline (median of per-round differences): {diff:.3f} µs/span"
        f" = {diff / clients:.2f} µs per client span"
    )
    print(f"  load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    raise SystemExit(main())
