"""A hanging or dead notifier never slows the span path or the alerting worker."""

from __future__ import annotations

import time

from alerting_fakes import FakeHttpServer
from opentelemetry.sdk.trace import TracerProvider
from peers import free_port, poll_until

from spansignals.processors.alerts import build_alert_engine
from spansignals.processors.config import load_config
from spansignals.processors.engine import EngineSpanProcessor
from spansignals.processors.events import SignalEvent
from spansignals.processors.factory import build_engine


def test_hanging_and_dead_notifiers_do_not_block_spans_or_evaluation():
    """With one webhook hanging (30 s timeout) and one dead, spans and ticks stay fast; queues bound."""
    hang = FakeHttpServer(default=(200, {}, b""))
    hang.script = [(200, {}, b"", -1.0)] * 1000  # every request hangs until released
    try:
        config = load_config(
            {
                "alerts": {
                    "evaluation_interval": "100ms",
                    "ssrf_allowlist": ["127.0.0.1"],
                    "delivery": {"timeout": "30s", "queue_size": 5},
                    "rules": [
                        {"name": "Always", "signal": "traces_span_metrics_calls_total", "condition": "> 0"}
                    ],
                    "receivers": [
                        {"name": "hanging", "webhook": {"url": hang.url + "/hook"}},
                        {"name": "dead", "webhook": {"url": f"http://127.0.0.1:{free_port()}/hook"}},
                    ],
                    "routes": [
                        {
                            "receiver": "hanging",
                            "group_wait": "0s",
                            "group_interval": "1s",
                            "repeat_interval": "1s",
                            "continue": True,
                        },
                        {
                            "receiver": "dead",
                            "group_wait": "0s",
                            "group_interval": "1s",
                            "repeat_interval": "1s",
                        },
                    ],
                }
            }
        )
        signals = build_engine(config)
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(EngineSpanProcessor(signals))
        tracer = tracer_provider.get_tracer("t")
        alerting = build_alert_engine(config, signals)
        alerting.start()
        with tracer.start_as_current_span("warm-up"):
            pass
        poll_until(lambda: hang.requests, timeout=10, what="the first notification to hang at the webhook")
        worst = 0.0
        now = time.time()
        for i in range(2000):
            t0 = time.perf_counter()
            with tracer.start_as_current_span("op"):
                pass
            if i % 50 == 0:
                signals.events.emit(SignalEvent("budget", "b", "critical", now, 2.0))
            worst = max(worst, time.perf_counter() - t0)
        ticks = []
        for k in range(30):  # ticks keep handing out notifications to the stuck receivers
            t0 = time.perf_counter()
            alerting.tick(now + 2 * (k + 1))
            ticks.append(time.perf_counter() - t0)
        assert worst < 2.0, f"a span took {worst:.3f}s while a notifier hung"
        assert max(ticks) < 2.0  # blocking on the notifier would take its 30 s timeout
        assert alerting.notifications.value(("hanging", "dropped")) >= 1  # bounded queue, counted
        assert alerting.notifications.value(("hanging", "sent")) == 0
        started = time.perf_counter()
        alerting.stop(timeout=0.5)
        assert time.perf_counter() - started < 5
        print(f"\nslowest span with a hanging notifier: {worst * 1e3:.2f} ms; tick {max(ticks) * 1e3:.2f} ms")
    finally:
        hang.close()
