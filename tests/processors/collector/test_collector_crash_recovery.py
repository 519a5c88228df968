"""SIGKILL and restart with the persistent queue: everything acknowledged is delivered after the
restart, with duplicates bounded by the one batch that was in flight (RELIABILITY.md #8)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from fake_otlp import Delay, FakeOtlpServer, Ok
from otlp_builders import SPAN_KIND_SERVER, build_request
from peers import CollectorProcess, poll_until

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_REQUEST = 50

pytestmark = pytest.mark.integration


def _blocks(fake: FakeOtlpServer, queue_dir: Path) -> dict[str, Any]:
    return {
        "collector": {
            "exporters": {
                "sink": {
                    "endpoint": fake.grpc_endpoint,
                    "timeout": "5s",
                    "retry": {"initial_interval": "50ms", "max_interval": "200ms"},
                }
            },
            "queue": {"kind": "persistent", "path": str(queue_dir)},
        }
    }


def _send(child: CollectorProcess, requests: int, start: int = 0) -> int:
    """Send ``requests`` unique requests over gRPC; return the spans acknowledged."""
    acked = 0
    with grpc.insecure_channel(child.grpc_endpoint) as channel:
        export = channel.unary_unary(TRACES)
        for r in range(requests):
            request = build_request("svc", [("GET /", SPAN_KIND_SERVER, 0)] * SPANS_PER_REQUEST)
            for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
                span.trace_id = (start + r * SPANS_PER_REQUEST + i + 1).to_bytes(16, "big")
            export(request.SerializeToString(), timeout=10)
            acked += SPANS_PER_REQUEST
    return acked


@pytest.mark.parametrize("downstream", ["down", "slow"])
def test_sigkill_and_restart_delivers_everything_acknowledged(
    fake_otlp: FakeOtlpServer,
    start_collector: Callable[..., CollectorProcess],
    tmp_path: Path,
    downstream: str,
) -> None:
    """Acked while the downstream is down (or slow, with a batch in flight), SIGKILL, restart:
    every acked span arrives; duplicates at most one request's spans."""
    queue_dir = tmp_path / "queue"
    if downstream == "down":
        fake_otlp.down()
        first = start_collector(config_blocks=_blocks(fake_otlp, queue_dir))
        acked = _send(first, 20)
    else:
        # One request delivered, then a send that is still in flight (5 s) when the collector is
        # killed, with the rest queued behind it. Timed by the fake's answers, not by how soon
        # the kill follows: sends merge what is queued, so with a short delay a late kill (a
        # loaded machine) found everything delivered and nothing left to recover.
        fake_otlp.script(Delay(0.3))
        fake_otlp.mode = Delay(5)
        first = start_collector(config_blocks=_blocks(fake_otlp, queue_dir))
        acked = _send(first, 1)
        poll_until(lambda: fake_otlp.delivered_spans() >= SPANS_PER_REQUEST, timeout=10, what="a delivery")
        acked += _send(first, 19, start=SPANS_PER_REQUEST)
    first.process.stop(sig=signal.SIGKILL)
    assert first.process.popen.returncode == -signal.SIGKILL

    delivered_before = fake_otlp.delivered_spans()
    fake_otlp.mode = Ok()
    fake_otlp.up()
    second = start_collector(config_blocks=_blocks(fake_otlp, queue_dir))
    poll_until(lambda: fake_otlp.delivered_spans() == acked, timeout=30, what="every acked span delivered")
    # At most the one send that was in flight (queued requests are merged into one send).
    assert fake_otlp.duplicates() <= max(seen.items for seen in fake_otlp.requests)
    assert "from a previous run" in second.logs()

    # The restarted collector's own accounting: what it recovered was sent, nothing is left.
    def sent_and_queue() -> tuple[float, float] | None:
        sent = sum(
            v
            for labels, v in second.samples("spansignals_exporter_spans_total")
            if labels["outcome"] == "sent"
        )
        queue = sum(v for _, v in second.samples("spansignals_exporter_queue_spans"))
        return (sent, queue) if queue == 0 else None

    sent, _ = poll_until(sent_and_queue, timeout=10, what="an empty queue")
    if downstream == "down":
        assert sent == acked
    else:  # run 2 sent what run 1 had not delivered, plus at most the batch in flight again
        largest_send = max(seen.items for seen in fake_otlp.requests)
        assert acked - delivered_before <= sent <= acked - delivered_before + 2 * largest_send
    assert second.stop() == 0
