"""What the rate-limit pieces cost on the span path, next to a bare SDK span.

Run:  python benchmarks/ratelimit_cost.py [--rounds 15] [--n 5000]

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
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from opentelemetry.instrumentation.httpx import ResponseInfo
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from spansignals.processors.ratelimit import RateLimitSpanProcessor
from spansignals.processors.red import RedSpanProcessor
from spansignals.processors.view import view_from_readable_span
from spansignals.sdk.ratelimit_capture import RateLimitHeaderEnricher

ATTRIBUTES = {
    "http.request.method": "POST",
    "url.full": "https://api.openai.com/v1/chat/completions",
    "server.address": "api.openai.com",
    "server.port": 443,
    "http.response.status_code": 200,
    "spansignals.provider": "openai",
    "gen_ai.provider.name": "openai",
    "network.protocol.version": "1.1",
}
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
