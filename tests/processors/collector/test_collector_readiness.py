"""Readiness means "send me traffic": ``/health/ready`` is 200 whenever the receivers would take a
request, and 503 while they refuse one (queue without room, memory limit) or before start /
while stopping. A real collector, a real (fake) downstream, real HTTP.

The case that used to fail: right after the collector accepted again (the queue drained one
batch and the next request filled it exactly), readiness answered 503 because it looked at "is the
queue full" instead of "would the receivers accept"; and a downstream failing for longer than
``unready_after`` made the collector unready while it kept accepting into a queue with room.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import grpc
from fake_otlp import Delay, FakeOtlpServer
from otlp_builders import SPAN_KIND_SERVER, build_request

from spansignals.processors.collector import Collector
from spansignals.processors.config import load_config

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS = 4


def _config(fake: FakeOtlpServer, queue: dict[str, Any], **collector: Any) -> Any:
    exporter = {
        "endpoint": fake.grpc_endpoint,
        "retry": {"initial_interval": "20ms", "max_interval": "100ms"},
        "max_request_bytes": 0,  # one request per send: the queue drains request by request
        "queue": {"consumers": 1, "retry_after": "1s", **queue},
    }
    block = {"exporters": {"down": exporter}, **collector}
    return load_config({"collector": block, "alerts": {"api": {"enabled": False}}})


class _Client:
    """Exports over gRPC and probes readiness over HTTP, like a client and a kubelet."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.next_id = 1
        self.acked = 0

    async def export(self) -> grpc.StatusCode:
        request = build_request("svc", [("GET /a", SPAN_KIND_SERVER, 0)] * SPANS)
        for span in request.resource_spans[0].scope_spans[0].spans:
            span.trace_id = self.next_id.to_bytes(16, "big")
            self.next_id += 1
        async with grpc.aio.insecure_channel(str(self.collector.grpc_endpoint)) as channel:
            try:
                await channel.unary_unary(TRACES)(request.SerializeToString(), timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        self.acked += SPANS
        return grpc.StatusCode.OK

    async def ready(self) -> int:
        url = f"http://{self.collector.metrics_endpoint}/health/ready"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return resp.status


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def _queued(collector: Collector) -> int:
    assert collector.forwarder is not None
    return collector.forwarder.workers[0].queue.items


async def test_ready_right_after_accepting_again_while_the_queue_drains(
    fake_otlp: FakeOtlpServer, make_collector: Any
) -> None:
    """A slow downstream and a queue of exactly two requests: each time the queue drains one
    request the next is accepted and readiness is 200 at once, even though that request filled
    the queue to the brim; while a request is refused readiness is 503."""
    fake_otlp.mode = Delay(0.3)
    collector = await make_collector(_config(fake_otlp, {"max_items": 2 * SPANS}))
    client = _Client(collector)
    assert await client.export() == grpc.StatusCode.OK
    assert await client.export() == grpc.StatusCode.OK  # the queue now holds exactly its bound
    assert await client.ready() == 200  # it accepted that request: ready
    assert await client.export() == grpc.StatusCode.UNAVAILABLE
    assert await client.ready() == 503  # refusing
    for _ in range(3):  # overload, then recovery, request by request as the downstream drains
        await _until(lambda: _queued(collector) <= SPANS)
        assert await client.ready() == 200  # a request fits again: "send me traffic"
        assert await client.export() == grpc.StatusCode.OK
        assert await client.ready() == 200  # accepted just now, queue full to the brim: still ready
        assert await client.export() == grpc.StatusCode.UNAVAILABLE
        assert await client.ready() == 503
    await _until(lambda: _queued(collector) == 0)
    assert await client.ready() == 200
    assert fake_otlp.delivered_spans() == client.acked


async def test_a_failing_downstream_with_room_in_the_queue_keeps_the_collector_ready(
    fake_otlp: FakeOtlpServer, make_collector: Any
) -> None:
    """Downstream down for longer than unready_after, queue with room: the collector accepts, so
    it is ready (an unready pod behind a Service would get no traffic to buffer at all); the
    streak is logged. Back up: everything acknowledged is delivered."""
    fake_otlp.down()
    config = _config(fake_otlp, {"max_items": 1000}, unready_after="100ms")
    collector = await make_collector(config)
    client = _Client(collector)
    assert await client.export() == grpc.StatusCode.OK
    await _until(lambda: collector.exporter_families.spans.value(("down", "failed")) >= 2 * SPANS)
    await asyncio.sleep(0.2)  # well past unready_after without a success
    assert await client.ready() == 200
    assert await client.export() == grpc.StatusCode.OK
    fake_otlp.up()
    await _until(lambda: _queued(collector) == 0)
    assert fake_otlp.delivered_spans() == client.acked == 2 * SPANS
    assert await client.ready() == 200


async def test_over_the_memory_limit_the_collector_is_unready(
    fake_otlp: FakeOtlpServer, make_collector: Any
) -> None:
    """Over the RSS limit every request is refused, so readiness is 503; /health/live stays 200.
    Under it again, ready without any request having to come first."""
    config = _config(fake_otlp, {"max_items": 1000})
    collector = await make_collector(config, memory_limit_bytes=1024 * 1024)  # RSS is always above
    client = _Client(collector)
    assert await client.ready() == 503
    assert await client.export() == grpc.StatusCode.UNAVAILABLE
    url = f"http://{collector.metrics_endpoint}/health/live"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
    collector.admission.memory_limit_bytes = 1 << 40  # the limit is far away now
    await _until(lambda: collector.ready)  # RSS is re-read at most every 0.2 s
    assert await client.ready() == 200
    assert await client.export() == grpc.StatusCode.OK
