"""Stalls: a downstream that stops answering must not hold acknowledgements, and the stalls the
collector can suffer are visible in its self-telemetry (send timeouts, event-loop lag, time spent
per request).

Background: the throughput benchmark twice showed a p99 of ~10 s (the exporters' default attempt
timeout) with low CPU. These tests pin down what that could and could not be.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import grpc
import pytest
from fake_otlp import Delay, FakeOtlpServer, Ok
from otlp_builders import SPAN_KIND_SERVER, build_request

from spansignals.processors.collector import Collector
from spansignals.processors.config import load_config

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS = 8


def _request(first_id: int) -> bytes:
    request = build_request("svc", [("GET /a", SPAN_KIND_SERVER, 0)] * SPANS)
    for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.trace_id = (first_id + i).to_bytes(16, "big")
    return request.SerializeToString()


async def _until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_sink_that_stalls_past_the_timeout_does_not_hold_acknowledgements(
    fake_otlp: FakeOtlpServer, make_collector: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Every other send stalls for 3 s against a 1 s attempt timeout, with merging and four
    consumers as by default: 40 requests from 8 concurrent clients are each acknowledged in well
    under the timeout (an acknowledgement that waited for a send would take >= 1 s), every stall
    is counted and logged as a timeout, and everything acknowledged is delivered."""
    fake_otlp.script(*[Delay(3.0), Ok()] * 6)
    exporter = {
        "endpoint": fake_otlp.grpc_endpoint,
        "timeout": "1s",
        "retry": {"initial_interval": "50ms", "max_interval": "100ms"},
    }
    config = load_config(
        {"collector": {"exporters": {"sink": exporter}}, "alerts": {"api": {"enabled": False}}}
    )
    collector = await make_collector(config)
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        export = channel.unary_unary(TRACES)

        async def client(index: int) -> None:
            for n in range(5):
                started = time.perf_counter()
                await export(_request((index * 5 + n) * SPANS + 1), timeout=10)
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.1)  # spread over the stalls

        await asyncio.gather(*(client(i) for i in range(8)))
    assert len(latencies) == 40
    assert max(latencies) < 0.9, sorted(latencies)[-5:]
    await _until(lambda: fake_otlp.delivered_spans() == 40 * SPANS)
    families = collector.exporter_families
    await _until(lambda: collector.forwarder is not None and collector.forwarder.workers[0].queue.empty())
    timeouts = families.timeouts.value(("sink",))
    assert timeouts >= 1
    assert caplog.text.count("exporter sink: no answer within") == timeouts
    totals = dict(families.spans.snapshot())
    assert totals[("sink", "sent")] == 40 * SPANS  # acked = sent (+ nothing dropped, nothing queued)


async def test_a_blocked_event_loop_is_counted_and_logged(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    """Blocking the collector's loop for 1.3 s shows as one stall of ~1.3 s (logged) and in the
    lag histogram; short sleeps in between are not stalls."""
    caplog.set_level(logging.WARNING)
    await asyncio.sleep(0.6)  # a few normal ticks
    time.sleep(1.3)  # what a blocking call on the loop does to everything on it
    await asyncio.sleep(0.6)
    monitor = collector.loop_monitor
    assert monitor.stalls.value(()) == 1
    assert "event loop was blocked for 1." in caplog.text
    ((_, (_, count, _, _, longest)),) = monitor.lag.snapshot()
    assert count >= 4 and 1.0 <= longest < 2.0
    url = f"http://{collector.metrics_endpoint}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        text = await resp.text()
    assert "spansignals_collector_loop_stalls_total" in text
    assert "spansignals_collector_loop_lag_seconds_bucket" in text


async def test_time_spent_per_request_is_recorded_per_transport(collector: Collector) -> None:
    """One gRPC and two HTTP trace requests: one and two samples in the request-duration histogram."""
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        await channel.unary_unary(TRACES)(_request(1))
    url = f"http://{collector.http_endpoint}/v1/traces"
    headers = {"Content-Type": "application/x-protobuf"}
    async with aiohttp.ClientSession() as session:
        for first in (100, 200):
            async with session.post(url, data=_request(first), headers=headers) as resp:
                assert resp.status == 200
    counts = {labels: count for labels, (_, count, _, _, _) in collector.request_duration.snapshot()}
    assert counts == {("grpc",): 1, ("http",): 2}
