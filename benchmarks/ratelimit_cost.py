"""What the rate-limit pieces cost on the span path, next to a bare SDK span.

Run:  python benchmarks/ratelimit_cost.py [--rounds 15] [--n 5000] [--otlp-rounds 15] [--requests 4]
      [--baseline REV]

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
The same groups are then timed on views of that request whose attributes are plain dicts (each
value what :func:`~spansignals.processors.view.any_value_to_python` gives): what the collector's
natively decoded views (``collector/spanscan.py``) hand derivations, where reading an attribute
costs a dict lookup, so what is left is the derivation itself.
Last, the same in the pipeline: ``TracePipeline.ingest`` with RED + cost and with RED + cost +
rate limits, interleaved round by round; the difference per span should match the mix row (a
derivation whose cost grew with the mix would show here).

``--baseline REV`` (a git revision, e.g. ``HEAD~3``) loads the rate-limit modules of that revision
(``ratelimit``, ``ratelimit_headers``, ``providers``, ``breaker``, ``_ietf_ratelimit``; everything
else is this checkout's) into this process next to the current ones, and times both on the same
kind of views, alternating which goes first, round by round: the VM's speed drifts up to 1.8x
between runs, so two separate runs cannot tell a 10% change. Printed then: the baseline's medians
and the median of the per-round ratios current / baseline, for the in-app rows, every collector
group (as the pipeline derives: ``observe_batch``) and the pipeline's marginal cost.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
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
from spansignals.processors.view import (
    KIND_CLIENT,
    SpanView,
    any_value_to_python,
    view_from_otlp_span,
    view_from_readable_span,
)
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
    parser.add_argument("--baseline", help="git revision whose rate-limit modules to compare against")
    args = parser.parse_args(argv)
    n = args.n
    baseline = _processor_class_at(args.baseline) if args.baseline else None

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
    if baseline is not None:
        old = baseline()
        print(f"  against {args.baseline}, interleaved (median of {args.rounds} rounds; current / baseline):")
        for name, view in (("no rate-limit headers", plain_view), ("six OpenAI headers", headers_view)):
            times = _interleaved(
                {"baseline": lambda v=view: old.observe(v), "current": lambda v=view: ratelimit.observe(v)},
                args.rounds,
                n,
            )
            print(f"    ratelimit observe, {name:24s} {_pair(times)}")
    if args.otlp_rounds > 0:
        otlp(args.otlp_rounds, args.requests, baseline, args.baseline)
    return 0


def _interleaved(fns: dict[str, Callable[[], None]], rounds: int, n: int) -> dict[str, list[float]]:
    """µs per call of each of ``fns``, ``rounds`` samples each, the order alternating per round."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(timeit.timeit(fns[name], number=n) / n * 1e6)
    return times


def _pair(times: dict[str, list[float]]) -> str:
    """The baseline's and the current median, and the median of the per-round ratios."""
    old, new = times["baseline"], times["current"]
    ratio = statistics.median([b / a for a, b in zip(old, new, strict=True)])
    old_us, new_us = statistics.median(old), statistics.median(new)
    return f"baseline {old_us:7.3f}  current {new_us:7.3f} µs  ratio {ratio:.2f}"


_BASELINE_MODULES = ("_ietf_ratelimit", "breaker", "providers", "ratelimit_headers", "ratelimit")


def _processor_class_at(revision: str) -> type[RateLimitSpanProcessor]:
    """``RateLimitSpanProcessor`` as of git ``revision``, loaded next to the current one.

    The five rate-limit modules are read with ``git show`` and executed as modules of this
    checkout's ``spansignals.processors`` package under other names (their imports of each other
    renamed alike), so they share the engine, views and families with the current code and run in
    this process. Not importlib machinery on a second checkout: that would load a second copy of
    every module (a different ``SpanView``, other caches) and compare more than the derivation.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tag = "_baseline_"
    modules: dict[str, Any] = {}
    for name in _BASELINE_MODULES:
        source = subprocess.run(
            ["git", "-C", root, "show", f"{revision}:processors/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for other in _BASELINE_MODULES:
            source = source.replace(f"from .{other} import", f"from .{tag}{other} import")
        full = f"spansignals.processors.{tag}{name}"
        spec = importlib.util.spec_from_loader(full, loader=None)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        module.__package__ = "spansignals.processors"
        sys.modules[full] = module
        exec(compile(source, f"{revision}:processors/{name}.py", "exec"), module.__dict__)
        modules[name] = module
    cls: type[RateLimitSpanProcessor] = modules["ratelimit"].RateLimitSpanProcessor
    return cls


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


def _dict_views(template: bytes, before: SignalEngine) -> list[SpanView]:
    """The request's spans as views whose attributes are plain dicts, through ``before``: what a
    natively decoded view gives derivations (a lookup costs what it costs on any dict)."""
    views = []
    for rs in parse_protobuf_request(template).resource_spans:
        resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for span in ss.spans:
                view = SpanView(
                    span.name,
                    span.kind,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    span.status.code,
                    {kv.key: any_value_to_python(kv.value) for kv in span.attributes},
                    resource,
                    service_name=resource["service.name"],
                )
                before.process(view)
                views.append(view)
    return views


def otlp(
    rounds: int,
    requests: int,
    baseline: type[RateLimitSpanProcessor] | None = None,
    baseline_name: str | None = None,
) -> None:
    """``observe`` and ``observe_batch`` per span group on OTLP views and on plain-dict views, then
    the marginal cost in the pipeline; with ``baseline``, that revision's processor alongside."""
    template, _ = build_template(512)
    throttled = _with_429s(template, 4)  # 429s recur: 2.5% of all spans, a quarter of the SaaS calls
    engine = build_engine(load_config({}))
    before = SignalEngine([p for p in engine.processors if p.processor_name in ("red", "cost")])
    processors = {"current": RateLimitSpanProcessor()}
    if baseline is not None:
        processors["baseline"] = baseline()
    for ratelimit in processors.values():  # warm: providers, breakers, parse caches, array cache
        for view in _otlp_views(template, before):
            ratelimit.observe(view)
    groups = ("saas", "saas_unique", "saas429", "llm", "server", "mix", "reads")
    groups += ("dict_saas", "dict_saas_unique", "dict_llm", "dict_mix")
    modes = ("observe", "batch")
    times: dict[tuple[str, str, str], list[float]] = {}
    counts: dict[str, int] = {}
    print(f"\ncollector: RateLimitSpanProcessor on OTLP views, {requests} x 512 spans per round")
    print(f"  load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    countdown = [10**9]

    def requests_of(body: bytes | None, group: str | None, views_of: Any) -> list[list[SpanView]]:
        bodies = [body] * requests
        if body is None:  # never-repeating remaining counts
            bodies = [_with_unique_remaining(template, countdown[0] - i * 100) for i in range(requests)]
            countdown[0] -= requests * 100
        views = (views_of(b, before) for b in bodies)
        return [[v for v in vs if group is None or _group(v) == group] for vs in views]

    sources: dict[str, tuple[bytes | None, str | None]] = {"saas": (template, "saas")}
    sources |= {"saas_unique": (None, "saas"), "saas429": (throttled, "saas"), "llm": (template, "llm")}
    sources |= {"server": (template, "server"), "mix": (template, None), "reads": (template, "saas")}
    sources |= {f"dict_{g}": sources[g] for g in ("saas", "saas_unique", "llm", "mix")}

    def run(name: str, g: str, mode: str) -> None:
        # Fresh views (a view read once has its index and wrappers built), decoded just before,
        # as the pipeline derives a request it just decoded: with every group's views built up
        # front, the group timed first ran ~1.5x slower.
        per_request = requests_of(*sources[g], _dict_views if g.startswith("dict_") else _otlp_views)
        counts[g] = sum(len(r) for r in per_request)
        ratelimit = processors[name]
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
        times.setdefault((g, mode, name), []).append((time.process_time() - t0) / counts[g] * 1e6)

    for i in range(rounds):
        for mode in modes:
            for g in groups:
                if g == "reads" and mode == "batch":
                    continue
                names = ["current"]
                if baseline is not None and mode == "batch" and g != "reads":
                    names = ["current", "baseline"] if i % 2 == 0 else ["baseline", "current"]
                for name in names:
                    run(name, g, mode)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    labels = {
        "saas": "SaaS client span, 2 x-ratelimit-* headers",
        "saas_unique": "same, remaining never repeats",
        "saas429": "same, every 4th one a 429",
        "llm": "LLM client span (OpenAI), no headers",
        "server": "server span (not a client span)",
        "mix": "realistic mix, averaged over all spans",
        "reads": "(floor: a SaaS span's attribute reads alone)",
        "dict_saas": "dict views: SaaS client span",
        "dict_saas_unique": "dict views: same, remaining never repeats",
        "dict_llm": "dict views: LLM client span",
        "dict_mix": "dict views: realistic mix, over all spans",
    }
    heading = f"µs per span, {rounds} rounds"
    print(f"  {heading:44s} {'observe: median':>15s} {'min':>7s}  {'batch: median':>13s} {'min':>7s}")
    for g in groups:
        obs = times[(g, "observe", "current")]
        row = f"  {labels[g]:44s} {med[(g, 'observe', 'current')]:15.3f} {min(obs):7.3f}"
        batch = times.get((g, "batch", "current"))
        if batch:
            row += f"  {med[(g, 'batch', 'current')]:13.3f} {min(batch):7.3f}"
        print(f"{row}   n={counts[g] // requests}/request")
    clients = (counts["saas"] + counts["llm"]) / counts["mix"]
    for mode in modes:
        linear = sum(med[(g, mode, "current")] * counts[g] for g in ("saas", "llm", "server")) / counts["mix"]
        mix = med[("mix", mode, "current")]
        print(
            f"  {mode}: mix per client span {mix / clients:.2f} µs; predicted from the"
            f" groups {linear:.3f} µs/span (measured / predicted {mix / linear:.2f})"
        )
    dict_mix = med[("dict_mix", "batch", "current")]
    print(f"  dict views, batch: mix per client span {dict_mix / clients:.2f} µs")
    if baseline is not None:
        print(f"  against {baseline_name}, observe_batch, interleaved (ratio: per-round median):")
        for g in groups:
            if g == "reads":
                continue
            pair = {"baseline": times[(g, "batch", "baseline")], "current": times[(g, "batch", "current")]}
            print(f"    {labels[g]:44s} {_pair(pair)}")
        for g in ("mix", "dict_mix"):
            old, new = (med[(g, "batch", name)] / clients for name in ("baseline", "current"))
            print(f"    {labels[g]:44s} per client span: baseline {old:.2f} µs, current {new:.2f} µs")

    # The pipeline, with and without the derivation (and with the baseline's), interleaved.
    def pipeline(ratelimit: type[RateLimitSpanProcessor] | None) -> TracePipeline:
        engine = build_engine(load_config({}))
        kept = [p for p in engine.processors if p.processor_name in ("red", "cost")]
        return TracePipeline(SignalEngine(kept + ([ratelimit()] if ratelimit is not None else [])))

    pipelines = {"red+cost": pipeline(None), "red+cost+ratelimit": pipeline(RateLimitSpanProcessor)}
    if baseline is not None:
        pipelines["red+cost+ratelimit (baseline)"] = pipeline(baseline)
    for p in pipelines.values():
        p.ingest(parse_protobuf_request(template), "grpc", body_bytes=len(template), body=template)
    ingest_times: dict[str, list[float]] = {k: [] for k in pipelines}
    names = list(pipelines)
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            decoded = [parse_protobuf_request(template) for _ in range(requests)]
            t0 = time.process_time()
            for request in decoded:
                pipelines[name].ingest(request, "grpc", body_bytes=len(template), body=template)
            ingest_times[name].append((time.process_time() - t0) / (requests * 512) * 1e6)
    medians = (f"{k}: {statistics.median(v):.2f} µs/span" for k, v in ingest_times.items())
    print("  pipeline ingest, " + "; ".join(medians))
    for name in names[1:]:
        diffs = [b - a for a, b in zip(ingest_times["red+cost"], ingest_times[name], strict=True)]
        diff = statistics.median(diffs)
        print(
            f"  {name[len('red+cost+') :]} in the pipeline (median of per-round differences):"
            f" {diff:.3f} µs/span = {diff / clients:.2f} µs per client span"
        )
    print(f"  load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    raise SystemExit(main())
