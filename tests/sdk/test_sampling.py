"""Sampling exactness: derived signals count every span, exporters get only sampled ones."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    TraceIdRatioBased,
)
from sdk_fixtures import LocalServer, Providers

from spansignals.sdk import RecordAllSampler, Telemetry


def test_ratio_zero_still_counts_every_span(
    configured: Callable[..., Telemetry], local_server: LocalServer
) -> None:
    """With a 0.0 ratio sampler wrapped in RecordAllSampler, RED counts all spans and none is exported."""
    app = Providers(sampler=RecordAllSampler(ParentBased(TraceIdRatioBased(0.0))))
    configured(tracer_provider=app.tracer_provider, meter_provider=app.meter_provider)
    tracer = app.tracer_provider.get_tracer("test")
    with httpx.Client() as client:
        for _ in range(20):
            with tracer.start_as_current_span("handle-order"):
                client.get(local_server.url())
    assert app.spans() == []
    assert app.red_calls(span_name="handle-order", span_kind="SPAN_KIND_INTERNAL") == 20
    assert app.red_calls(span_name="GET", span_kind="SPAN_KIND_CLIENT") == 20


def test_unsampled_spans_do_not_propagate_sampled(local_server: LocalServer) -> None:
    """RECORD_ONLY keeps the sampled flag off, so downstream services see the delegate's decision."""
    app = Providers(sampler=RecordAllSampler(TraceIdRatioBased(0.0)))
    span = app.tracer_provider.get_tracer("test").start_span("x")
    assert span.is_recording()
    assert not span.get_span_context().trace_flags.sampled
    span.end()


def test_sampled_decisions_pass_through() -> None:
    """Decisions other than DROP, their attributes and trace state are the delegate's own."""
    sampler = RecordAllSampler(ALWAYS_ON)
    result = sampler.should_sample(None, 0x1234, "x")
    assert result.decision is Decision.RECORD_AND_SAMPLE
    dropped = RecordAllSampler(TraceIdRatioBased(0.0)).should_sample(None, 0x1234, "x")
    assert dropped.decision is Decision.RECORD_ONLY
    assert "TraceIdRatioBased" in RecordAllSampler(TraceIdRatioBased(0.0)).get_description()


def test_wrapping_twice_does_not_nest() -> None:
    """RecordAllSampler(RecordAllSampler(s)) delegates to s directly; a non-sampler is a ValueError."""
    inner = TraceIdRatioBased(0.5)
    assert RecordAllSampler(RecordAllSampler(inner)).delegate is inner
    with pytest.raises(ValueError, match="delegate"):
        RecordAllSampler("always_off")  # type: ignore[arg-type]


def test_created_provider_honours_env_sampler(
    configured: Callable[..., Telemetry], providers: Providers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider configure() creates wraps the OTEL_TRACES_SAMPLER choice and still counts every span."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.0")
    telemetry = configured(traces_exporter="none", meter_provider=providers.meter_provider)
    sampler = telemetry.tracer_provider.sampler
    assert isinstance(sampler, RecordAllSampler) and isinstance(sampler.delegate, TraceIdRatioBased)
    tracer = telemetry.tracer_provider.get_tracer("test")
    for _ in range(7):
        tracer.start_span("work").end()
    assert providers.red_calls(span_name="work") == 7
