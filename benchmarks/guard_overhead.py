"""What ``guard()`` costs per request when nothing is limited.

Run:  python benchmarks/guard_overhead.py [--rounds 15] [--calls 300] [--checks 200000]

1. The check alone: the guard's request hook (host -> provider lookup, quota and breaker check,
   one counter update) called ``--checks`` times on a prepared ``httpx.Request`` for a provider
   whose breaker exists and is closed; once with ``processor=`` given and once finding the active
   ``configure()``'s processor (the usual app path).
2. Per request through ``httpx.Client`` with ``httpx.MockTransport`` (no network: the client's own
   cost is the whole denominator), unguarded vs guarded, ``--rounds`` interleaved rounds of
   ``--calls`` requests in shuffled order.
3. The same against a local HTTP/1.1 keep-alive server on 127.0.0.1 (a real round trip).

Medians and best rounds, the differences in microseconds and the ratios guarded/unguarded are
printed. On a busy machine the spread between rounds of the *same* client is larger than the
check itself; compare part 1 with the stdev printed for parts 2 and 3.
Goal (DESIGN.md): no measurable latency when nothing is limited.
"""

from __future__ import annotations

import argparse
import gc
import http.server
import random
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from spansignals.processors.config import load_config
from spansignals.processors.providers import ProviderTable
from spansignals.processors.ratelimit import RateLimitSpanProcessor
from spansignals.processors.view import KIND_CLIENT, STATUS_UNSET, SpanView
from spansignals.sdk import configure, guard
from spansignals.sdk.guard import _Guard

CONFIG = {"providers": [{"name": "bench-llm", "hosts": ["127.0.0.1"], "dialect": "openai"}]}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes: without this, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def _warm(processor: RateLimitSpanProcessor) -> None:
    """One successful provider span, so the breaker exists (closed) as in a running app."""
    attrs = {"http.request.method": "GET", "server.address": "127.0.0.1", "http.response.status_code": 200}
    processor.observe(SpanView("GET", KIND_CLIENT, 0, 1, STATUS_UNSET, attrs, {"service.name": "bench"}))


def _per_check_us(check: Callable[[Any], None], request: httpx.Request, n: int) -> float:
    for _ in range(1000):
        check(request)
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(n):
            check(request)
        return (time.perf_counter() - start) / n * 1e6
    finally:
        gc.enable()


def _interleaved(variants: dict[str, Callable[[int], None]], n: int, rounds: int) -> dict[str, list[float]]:
    """Per-call microseconds of each variant, one sample per round, variants shuffled per round."""
    for run in variants.values():
        run(max(10, n // 10))  # warm-up: connections, caches
    results: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            gc.collect()
            start = time.perf_counter()
            variants[name](n)
            results[name].append((time.perf_counter() - start) / n * 1e6)
    return results


def _report(title: str, results: dict[str, list[float]]) -> None:
    base = statistics.median(results["unguarded"])
    guarded = statistics.median(results["guarded"])
    spread = statistics.pstdev(results["unguarded"])
    print(f"\n{title}")
    best_base, best_guarded = min(results["unguarded"]), min(results["guarded"])
    print(f"  unguarded  median {base:9.2f} us/request, best round {best_base:9.2f}  (stdev {spread:.2f} us)")
    print(f"  guarded    median {guarded:9.2f} us/request, best round {best_guarded:9.2f}")
    print(
        f"  difference median {guarded - base:+9.2f} us (ratio {guarded / base:.3f}x),"
        f" best rounds {best_guarded - best_base:+.2f} us (ratio {best_guarded / best_base:.3f}x)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--checks", type=int, default=200_000)
    args = parser.parse_args(argv)

    print(f"python {sys.version.split()[0]}, httpx {httpx.__version__}")
    cfg = load_config(CONFIG)
    processor = RateLimitSpanProcessor(
        cfg.ratelimits, providers=ProviderTable.from_config(cfg.providers), service_name="bench"
    )
    _warm(processor)
    request = httpx.Request("GET", "http://127.0.0.1:9/v1/chat/completions")
    fixed = _Guard(processor, None, None, time.monotonic, time.sleep, None)  # type: ignore[arg-type]
    print("\n1. the check alone (provider known, breaker closed, nothing limited)")
    print(f"  processor= given        {_per_check_us(fixed.check, request, args.checks):6.2f} us/check")

    telemetry = configure(
        CONFIG,
        traces_exporter="none",
        metrics_exporter="none",
        instrument_httpx=False,
        set_global_providers=False,
    )
    try:
        active = telemetry.engine.get("ratelimit")
        _warm(active)
        via_configure = _Guard(None, None, None, time.monotonic, time.sleep, None)  # type: ignore[arg-type]
        us = _per_check_us(via_configure.check, request, args.checks)
        print(f"  via active configure()  {us:6.2f} us/check")

        def loop(client: httpx.Client, url: str) -> Callable[[int], None]:
            def run(n: int) -> None:
                for _ in range(n):
                    client.get(url)

            return run

        mock = httpx.MockTransport(lambda r: httpx.Response(200, content=b"{}"))
        plain, guarded = httpx.Client(transport=mock), guard(httpx.Client(transport=mock))
        url = "http://127.0.0.1:9/v1/chat/completions"
        _report(
            "2. per request, httpx.Client + MockTransport (no network)",
            _interleaved(
                {"unguarded": loop(plain, url), "guarded": loop(guarded, url)}, args.calls, args.rounds
            ),
        )

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
        plain_net, guarded_net = httpx.Client(), guard(httpx.Client())
        _report(
            "3. per request, httpx.Client against a local keep-alive server",
            _interleaved(
                {"unguarded": loop(plain_net, url), "guarded": loop(guarded_net, url)},
                args.calls,
                args.rounds,
            ),
        )
        decisions = {labels[2]: v for labels, v in active.guard_decisions.snapshot()}
        print(f"\nguard decisions counted: {decisions}")
        for client in (plain, guarded, plain_net, guarded_net):
            client.close()
        server.shutdown()
    finally:
        telemetry.shutdown(timeout=5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
