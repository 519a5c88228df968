"""configure() in a fresh process: reuse of the app's global SDK providers, or creation of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
from sdk_fixtures import Providers

from spansignals.sdk import Telemetry

REUSE_APP = textwrap.dedent(
    """
    import httpx, threading, http.server
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from spansignals.sdk import configure

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
        def log_message(self, *a): pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tp, reader = TracerProvider(), InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    trace.set_tracer_provider(tp); metrics.set_meter_provider(mp)
    telemetry = configure()
    assert telemetry.tracer_provider is tp and telemetry.meter_provider is mp
    assert not telemetry.owns_tracer_provider and not telemetry.owns_meter_provider
    assert configure() is telemetry
    httpx.get(f"http://127.0.0.1:{server.server_address[1]}/")
    calls = [p.value for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics if m.name == "traces.span.metrics.calls" for p in m.data.data_points]
    print("CALLS", calls)
    telemetry.shutdown(timeout=5)
    """
)

CREATE_APP = textwrap.dedent(
    """
    from opentelemetry import metrics, trace
    from spansignals.sdk import RecordAllSampler, configure
    telemetry = configure()
    assert trace.get_tracer_provider() is telemetry.tracer_provider
    assert metrics.get_meter_provider() is telemetry.meter_provider
    assert isinstance(telemetry.tracer_provider.sampler, RecordAllSampler)
    print("OWNS", telemetry.owns_tracer_provider, telemetry.owns_meter_provider)
    """
)


def _run(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SPANSIGNALS_"))}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_reuses_global_sdk_providers() -> None:
    """An app that set SDK providers globally keeps them; configure() adds to them and counts once."""
    out = _run(REUSE_APP)
    assert "CALLS [1.0]" in out


def test_creates_and_sets_global_providers() -> None:
    """With no providers set, configure() creates them from OTEL_* and sets them global."""
    out = _run(CREATE_APP, OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")
    assert "OWNS True True" in out


def test_prometheus_port_in_use_never_breaks_the_app(
    configured: Callable[..., Telemetry], caplog: pytest.LogCaptureFixture
) -> None:
    """When the /metrics port is taken, configure() logs an error and the app carries on."""
    app = Providers()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        telemetry = configured(
            tracer_provider=app.tracer_provider,
            metrics_exporter="prometheus",
            prometheus_host="127.0.0.1",
            prometheus_port=port,
        )
    assert telemetry.prometheus_address is None
    assert "cannot serve /metrics" in caplog.text
