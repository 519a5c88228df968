"""Memory when the forwarding queue is full: what a refused request leaves behind.

``benchmarks/collector_queue_memory.py`` shows the effect on RSS; these tests pin the causes.
"""

from __future__ import annotations

import gc
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from fake_otlp import FakeOtlpServer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from otlp_builders import SPAN_KIND_SERVER, build_request

import spansignals
from spansignals.processors.config import load_config

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
PACKAGE = str(Path(spansignals.__file__).resolve().parent)


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
        if isinstance(o, types.FrameType) and o.f_code.co_filename.startswith(PACKAGE)
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
