"""Span-path cost with the alerting engine running against dead and hanging notifiers.

Run:  python benchmarks/alerts_dead_notifier.py [--rounds 15] [--spans 5000]

Two variants, timed in interleaved rounds of ``--spans`` spans (a client span with 8 attributes
through an SDK ``TracerProvider`` + ``EngineSpanProcessor`` with the factory's derivations):

- ``engine``: no alerting engine;
- ``+alerts(dead,hanging)``: an alerting engine started on its worker thread, evaluating every
  50 ms, with a rule that is always firing and routed (group_wait 0, group_interval 1s) to two
  signed webhooks: one that accepts the connection and never answers (delivery timeout 30 s),
  one on a port where nothing listens; and a signal event emitted on the span path every 100
  spans, so the evaluator wakes continually (worst case for GIL contention).

Reports the median per-span cost of each, their ratio, the slowest single span with alerting
on, the CPU the alerting worker thread used (the only thing that could compete with the app),
and the notification outcomes: proof that a dead or slow notifier never slows the app. On a
shared, loaded machine the ratio is noisy; the worker CPU share is the stable figure.
"""

from __future__ import annotations

import argparse
import http.server
import socket
import statistics
import threading
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from spansignals.processors.alerts import build_alert_engine
from spansignals.processors.config import load_config
from spansignals.processors.engine import EngineSpanProcessor
from spansignals.processors.events import SignalEvent
from spansignals.processors.factory import build_engine

ATTRS = {f"attr.{i}": f"value-{i}" for i in range(6)} | {
    "server.address": "api.openai.com",
    "http.status": 200,
}


class _Hang(http.server.BaseHTTPRequestHandler):
    release = threading.Event()

    def do_POST(self) -> None:
        self.release.wait(60)

    def log_message(self, *args: object) -> None:
        pass


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _config(hang_port: int, dead_port: int) -> dict:
    return {
        "service": {"name": "bench"},
        "alerts": {
            "evaluation_interval": "50ms",
            "ssrf_allowlist": ["127.0.0.1"],
            "delivery": {"timeout": "30s", "queue_size": 100},
            "rules": [
                {
                    "name": "AlwaysFiring",
                    "signal": "traces_span_metrics_calls_total",
                    "condition": "> 0",
                    "severity": "critical",
                }
            ],
            "receivers": [
                {"name": "hanging", "webhook": {"url": f"http://127.0.0.1:{hang_port}/hook", "secret": "s"}},
                {"name": "dead", "webhook": {"url": f"http://127.0.0.1:{dead_port}/hook"}},
            ],
            "routes": [
                {
                    "match": {},
                    "receiver": "hanging",
                    "group_wait": "0s",
                    "group_interval": "1s",
                    "repeat_interval": "1s",
                    "continue": True,
                },
                {
                    "match": {},
                    "receiver": "dead",
                    "group_wait": "0s",
                    "group_interval": "1s",
                    "repeat_interval": "1s",
                },
            ],
        },
    }


def run(rounds: int = 15, spans: int = 5000) -> dict[str, float]:
    """Measure and return the figures (seconds per span, ratio, slowest span, outcomes)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hang)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = load_config(_config(server.server_address[1], _dead_port()))

    engine_plain = build_engine(config)
    tp_plain = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    tp_plain.add_span_processor(EngineSpanProcessor(engine_plain))

    engine_alerts = build_engine(config)
    tp_alerts = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    tp_alerts.add_span_processor(EngineSpanProcessor(engine_alerts))
    alerting = build_alert_engine(config, engine_alerts)
    worker_cpu = [0.0, 0, 0.0]  # CPU seconds, ticks, longest tick (wall seconds)
    tick = alerting.tick

    def timed_tick(now: float | None = None) -> object:  # CPU the alerting worker spends
        t0, w0 = time.thread_time(), time.perf_counter()
        try:
            return tick(now)
        finally:
            worker_cpu[0] += time.thread_time() - t0
            worker_cpu[1] += 1
            worker_cpu[2] = max(worker_cpu[2], time.perf_counter() - w0)

    alerting.tick = timed_tick  # type: ignore[method-assign]
    alerting.start()
    wall0 = time.perf_counter()

    def batch(tp: TracerProvider, events: bool) -> tuple[float, float]:
        tracer = tp.get_tracer("bench")
        worst = 0.0
        start = time.perf_counter()
        for i in range(spans):
            t0 = time.perf_counter()
            with tracer.start_as_current_span("chat", kind=SpanKind.CLIENT, attributes=ATTRS):
                pass
            if events and i % 100 == 0:
                engine_alerts.events.emit(SignalEvent("budget", "b", "critical", time.time(), 2.0))
            worst = max(worst, time.perf_counter() - t0)
        return (time.perf_counter() - start) / spans, worst

    plain, alerts = [], []
    worst = {False: 0.0, True: 0.0}
    try:
        batch(tp_plain, False)
        batch(tp_alerts, True)  # warm-up; the alert fires and the notifiers start hanging
        for r in range(rounds):
            order = [(tp_plain, False, plain), (tp_alerts, True, alerts)]
            if r % 2:
                order.reverse()
            for tp, events, out in order:
                per_span, w = batch(tp, events)
                out.append(per_span)
                worst[events] = max(worst[events], w)
    finally:
        wall = time.perf_counter() - wall0
        outcomes = {f"{r}/{o}": v for (r, o), v in alerting.notifications.snapshot()}
        _Hang.release.set()
        alerting.stop(timeout=1)
        server.shutdown()
    med_plain, med_alerts = statistics.median(plain), statistics.median(alerts)
    return {
        "engine_us": med_plain * 1e6,
        "alerts_us": med_alerts * 1e6,
        "ratio": med_alerts / med_plain,
        "paired_ratio": statistics.median(a / p for a, p in zip(alerts, plain, strict=True)),
        "worst_span_ms": worst[True] * 1e3,
        "worst_plain_span_ms": worst[False] * 1e3,
        "worker_cpu_ms": worker_cpu[0] * 1e3,
        "worker_ticks": worker_cpu[1],
        "longest_tick_ms": worker_cpu[2] * 1e3,
        "wall_s": wall,
        **outcomes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--spans", type=int, default=5000)
    args = parser.parse_args()
    r = run(args.rounds, args.spans)
    share = 100 * r["worker_cpu_ms"] / 1e3 / r["wall_s"]
    print(f"per span, engine only:                {r['engine_us']:.1f} us (median of {args.rounds} rounds)")
    print(f"per span, + alerting (dead, hanging): {r['alerts_us']:.1f} us")
    print(
        f"ratio of medians:                     {r['ratio']:.3f}x"
        f" (median per-round ratio {r['paired_ratio']:.3f}x)"
    )
    print(
        f"slowest single span:                  {r['worst_span_ms']:.2f} ms with alerting,"
        f" {r['worst_plain_span_ms']:.2f} ms without (scheduler noise)"
    )
    print(
        f"alerting worker CPU:                  {r['worker_cpu_ms']:.1f} ms in {r['worker_ticks']} ticks"
        f" (longest tick {r['longest_tick_ms']:.2f} ms)"
    )
    print(f"                                      over {r['wall_s']:.1f} s ({share:.2f}% of a core)")
    print("notification outcomes:", {k: v for k, v in r.items() if "/" in k})


if __name__ == "__main__":
    main()
