"""Memory when the forwarding queue is full: what a refused request leaves behind.

``benchmarks/collector_queue_memory.py`` shows the effect on RSS; these tests pin the causes.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
import tracemalloc
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from fake_otlp import Delay, FakeOtlpServer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from otlp_builders import SPAN_KIND_SERVER, build_request

import spansignals
import spansignals.processors
from spansignals.processors.collector import forwarding
from spansignals.processors.collector.admission import release_free_memory
from spansignals.processors.collector.forwarding import Forwarder
from spansignals.processors.collector.queue import RECLAIM_AFTER_BYTES, Batch, MemoryQueue
from spansignals.processors.config import load_config
from spansignals.processors.config.collector import CollectorConfig

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
PACKAGES = tuple(str(Path(m.__file__).parent) for m in (spansignals, spansignals.processors))
FORWARDING = forwarding.__file__
BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "collector_queue_memory.py"


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)  # polling the forwarder's progress


def _unique_request(start: int, spans: int = 4) -> bytes:
    request = build_request("svc", [("GET /a", SPAN_KIND_SERVER, 0)] * spans)
    for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.trace_id = (start + i).to_bytes(16, "big")
    return request.SerializeToString()


def _metrics_request() -> bytes:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "m"
    metric.gauge.data_points.add().as_int = 1
    return request.SerializeToString()


@contextmanager
def _cyclic_garbage() -> Iterator[list[Any]]:
    """Everything the block leaves for the cycle collector (and nothing else): collects first,
    keeps the collector off during the block, then saves what a collection finds."""
    found: list[Any] = []
    gc.collect()
    gc.disable()
    try:
        yield found
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _held_by_cycles(garbage: list[Any]) -> list[str]:
    """The collector's frames (they hold a handler's body and parsed request) and the exceptions
    whose tracebacks would hold them."""
    held = [
        f"frame {o.f_code.co_name} ({Path(o.f_code.co_filename).name})"
        for o in garbage
        if isinstance(o, types.FrameType) and o.f_code.co_filename.startswith(PACKAGES)
    ]
    held += [f"exception {type(o).__name__}" for o in garbage if isinstance(o, BaseException)]
    return held


async def test_grpc_refusals_leave_no_cycle_holding_the_request(
    fake_otlp: FakeOtlpServer, make_collector: Any
) -> None:
    """A request refused for want of queue room (traces and the metrics pass-through) or
    malformed is answered without leaving its frames in a reference cycle: with the collector's
    rare garbage collections (gc_tuning), each such cycle kept the body and the parsed request
    alive, hundreds of MB under a flood of refused requests. Answers stay as promised:
    UNAVAILABLE (retryable) and INVALID_ARGUMENT."""
    fake_otlp.down()
    config = load_config(
        {
            "collector": {
                "exporters": {"down": {"endpoint": fake_otlp.grpc_endpoint}},
                "queue": {"max_items": 8},
            },
            "alerts": {"api": {"enabled": False}},
        }
    )
    collector = await make_collector(config)
    codes = []
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        traces, metrics = channel.unary_unary(TRACES), channel.unary_unary(METRICS)
        await traces(_unique_request(1, spans=8))  # fills the queue
        calls = [(traces, _unique_request(100 + 10 * i)) for i in range(3)]
        calls += [(metrics, _metrics_request()), (traces, b"\x0a\xff")]  # the last one malformed
        with _cyclic_garbage() as garbage:
            for call, body in calls:
                try:
                    await call(body)
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 4 + [grpc.StatusCode.INVALID_ARGUMENT]
    assert collector.pipeline.receiver_spans.value(("grpc", "refused")) == 12
    assert _held_by_cycles(garbage) == []


async def test_unauthenticated_grpc_calls_leave_no_cycle(make_collector: Any) -> None:
    """The bearer-auth refusal (UNAUTHENTICATED) leaves nothing for the cycle collector either: a
    flood of calls without the token must not keep their bodies alive until a collection."""
    collector = await make_collector(bearer_token="t0ken-for-the-cycle-test")
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        traces = channel.unary_unary(TRACES)
        with _cyclic_garbage() as garbage:
            for i in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await traces(_unique_request(10 * i))
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _held_by_cycles(garbage) == []


def _traced_bytes(snapshot: tracemalloc.Snapshot, path: str) -> int:
    """Bytes still allocated by code in ``path`` (tracemalloc's innermost frame)."""
    traces = snapshot.filter_traces([tracemalloc.Filter(True, path)])
    return sum(stat.size for stat in traces.statistics("filename"))


async def test_a_merged_send_holds_one_copy_while_in_flight_and_none_after(
    fake_otlp: FakeOtlpServer,
) -> None:
    """Queued requests merged into one send: while it awaits the downstream, the merged bytes
    are the only copy (the parts' own bytes are released), and once it is answered the consumer
    keeps nothing of it while it waits for the next batch. Before, four consumers each held
    their last send twice over: up to 8 x ``max_request_bytes`` after a full queue drained."""
    config = CollectorConfig.model_validate(
        {"exporters": {"down": {"endpoint": fake_otlp.grpc_endpoint, "max_request_bytes": 8 << 20}}}
    )
    forwarder = Forwarder.from_config(config)
    worker = forwarder.workers[0]
    fake_otlp.script(Delay(1.0))
    tracemalloc.start()
    try:
        for i in range(3):
            await forwarder.submit("traces", _unique_request(10_000 * (i + 1), spans=2000), 2000)
        queued = worker.queue.size_bytes
        assert queued > 3 * 100_000
        await forwarder.start()
        await _until(lambda: worker.in_flight == 1)
        in_flight = tracemalloc.take_snapshot()
        await _until(lambda: worker.queue.empty() and worker.in_flight == 0)
        await asyncio.sleep(0.05)  # the consumer is back waiting for a batch
        idle = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        await forwarder.stop(0.5)
    assert [seen.items for seen in fake_otlp.requests] == [6000]  # one merged send
    assert _traced_bytes(in_flight, __file__) < queued / 10  # the requests' own bytes: released
    assert queued <= _traced_bytes(in_flight, FORWARDING) < queued * 1.1  # the merged copy
    assert _traced_bytes(idle, FORWARDING) < queued / 10
    assert forwarder.families.spans.value(("down", "sent")) == 6000


async def test_a_large_queue_that_drains_releases_free_memory_once() -> None:
    """``on_drained`` runs once a queue that held RECLAIM_AFTER_BYTES or more is down to a
    sixteenth of that peak, not for smaller peaks, and at most once a second."""
    now = [0.0]
    calls: list[int] = []
    queue = MemoryQueue(max_bytes=1 << 30, max_items=1 << 30, clock=lambda: now[0])
    queue.on_drained = lambda: calls.append(queue.size_bytes)
    chunk = RECLAIM_AFTER_BYTES // 8

    async def fill(count: int) -> list[Batch]:
        for _ in range(count):
            await queue.put(Batch("traces", bytes(chunk), 1))
        return [await queue.get() for _ in range(count)]

    await queue.ack_many(await fill(7))  # a peak under the threshold: nothing to release
    assert calls == []
    batches = await fill(16)  # 2 x RECLAIM_AFTER_BYTES
    await queue.ack_many(batches[:14])
    assert calls == []  # 2 of 16 left: more than a sixteenth
    await queue.ack(batches[14])
    assert calls == [chunk]  # a sixteenth left: released once
    await queue.ack(batches[15])
    assert calls == [chunk]
    await queue.ack_many(await fill(16))  # full again and drained within the same second
    assert calls == [chunk]
    now[0] += 1.0
    await queue.ack_many(await fill(16))
    assert calls == [chunk, 0]


async def test_the_forwarder_releases_free_memory_after_its_memory_queue_drains() -> None:
    config = CollectorConfig.model_validate({"exporters": {"down": {"endpoint": "127.0.0.1:9"}}})
    (worker,) = Forwarder.from_config(config).workers
    assert isinstance(worker.queue, MemoryQueue)
    assert worker.queue.on_drained is release_free_memory


@pytest.mark.integration
def test_queue_memory_benchmark_runs_fills_the_queue_and_accounts_for_every_span() -> None:
    """A short run of benchmarks/collector_queue_memory.py: the slow sink fills the queue (clients
    are refused retryably), it drains, and acknowledged = accepted = sent + dropped."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--baseline", "1", "--full", "2", "--after", "1"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "accounting ok" in out, out
    assert "UNAVAILABLE: the collector's export queue is full" in out, out
    assert "RSS with the queue full (peak):" in out and "at the end of full" in out, out
