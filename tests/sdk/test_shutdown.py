"""shutdown() and force_flush() honour their timeouts even when an exporter hangs."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from sdk_fixtures import Providers

from spansignals.sdk import Telemetry, _pipeline


class HangingExporter(SpanExporter):
    """An exporter stuck on a dead endpoint until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.entered.set()
        self.release.wait()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.wait()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.release.wait()
        return True


@pytest.fixture
def hanging() -> Iterator[HangingExporter]:
    """A hanging exporter, released at teardown so its threads end."""
    exporter = HangingExporter()
    yield exporter
    exporter.release.set()


def _timed(fn: Callable[[], bool]) -> tuple[bool, float]:
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start


def test_timeouts_with_app_provider(configured: Callable[..., Telemetry], hanging: HangingExporter) -> None:
    """On the app's own provider, force_flush and shutdown return False within their timeout."""
    app = Providers()
    app.tracer_provider.add_span_processor(BatchSpanProcessor(hanging))
    telemetry = configured(tracer_provider=app.tracer_provider, meter_provider=app.meter_provider)
    app.tracer_provider.get_tracer("t").start_span("x").end()
    result, elapsed = _timed(lambda: telemetry.force_flush(timeout=0.3))
    assert result is False and elapsed < 2.0
    result, elapsed = _timed(lambda: telemetry.shutdown(timeout=0.3))
    assert result is False and elapsed < 2.0


def test_timeouts_with_created_provider(
    configured: Callable[..., Telemetry], hanging: HangingExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a provider configure() created, a hanging OTLP exporter cannot hold shutdown past its timeout."""
    monkeypatch.setattr(_pipeline, "otlp_span_exporter", lambda *args: hanging)
    metrics = Providers()
    telemetry = configured(traces_exporter="otlp", meter_provider=metrics.meter_provider)
    assert telemetry.owns_tracer_provider
    telemetry.tracer_provider.get_tracer("t").start_span("x").end()
    assert metrics.red_calls(span_name="x") == 1
    result, elapsed = _timed(lambda: telemetry.shutdown(timeout=0.3))
    assert result is False and elapsed < 2.0


def test_shutdown_is_idempotent(configured: Callable[..., Telemetry]) -> None:
    """A second shutdown() returns the first result at once; force_flush() afterwards is a no-op."""
    metrics = Providers()
    telemetry = configured(traces_exporter="none", meter_provider=metrics.meter_provider)
    assert telemetry.shutdown(timeout=5) is True
    result, elapsed = _timed(lambda: telemetry.shutdown(timeout=5))
    assert result is True and elapsed < 0.1
    assert telemetry.force_flush(timeout=1) is True
    assert telemetry.is_shutdown


def _median_call_ms(url: str, n: int) -> float:
    import httpx

    times = []
    with httpx.Client() as client:
        client.get(url)
        for _ in range(n):
            start = time.perf_counter()
            client.get(url)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def test_dead_exporter_does_not_slow_the_app(
    configured: Callable[..., Telemetry], hanging: HangingExporter, local_server: Any
) -> None:
    """With the span exporter stuck, httpx calls stay within 2x the latency of a healthy setup."""
    stuck = Providers()
    stuck.tracer_provider.add_span_processor(
        BatchSpanProcessor(hanging, max_queue_size=64, max_export_batch_size=8, schedule_delay_millis=10)
    )
    telemetry = configured(tracer_provider=stuck.tracer_provider, meter_provider=stuck.meter_provider)
    stuck.tracer_provider.get_tracer("t").start_span("first").end()
    assert hanging.entered.wait(timeout=10)  # the exporter thread is now blocked
    blocked = _median_call_ms(local_server.url(), 100)  # far past the queue: spans dropped, never waited for
    telemetry.shutdown(timeout=0.2)

    healthy = Providers()
    configured(tracer_provider=healthy.tracer_provider, meter_provider=healthy.meter_provider)
    baseline = _median_call_ms(local_server.url(), 100)
    assert blocked <= 2 * baseline, (blocked, baseline)
