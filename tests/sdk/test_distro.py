"""Zero code: ``opentelemetry-instrument python app.py`` with spansignals' distro and configurator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from peers import free_port, http_get, poll_until, scrape_samples

APP = Path(__file__).parent / "apps" / "zero_code_app.py"


@pytest.mark.integration
def test_opentelemetry_instrument_exposes_red_series() -> None:
    """An uninstrumented app run by opentelemetry-instrument serves the RED series of its httpx calls."""
    port = free_port()
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    assert instrument.exists(), "opentelemetry-instrument is installed with opentelemetry-instrumentation"
    env = {
        **os.environ,
        "OTEL_PYTHON_DISTRO": "spansignals",
        "OTEL_PYTHON_CONFIGURATOR": "spansignals",
        "OTEL_SERVICE_NAME": "zero-code",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
    }
    env.pop("SPANSIGNALS_CONFIG", None)
    proc = subprocess.Popen(
        [str(instrument), sys.executable, str(APP)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line.split() == ["READY", "True"], line + (
            proc.stderr.read() if proc.poll() is not None else ""
        )

        def client_calls() -> float | None:
            _, body = http_get(f"http://127.0.0.1:{port}/metrics")
            samples = scrape_samples(body.decode(), "traces_span_metrics_calls_total")
            total = sum(v for labels, v in samples if labels.get("span_kind") == "SPAN_KIND_CLIENT")
            return total or None

        assert poll_until(client_calls, timeout=20, what="RED series on /metrics") == 3
        _, body = http_get(f"http://127.0.0.1:{port}/metrics")
        (labels, _), *_ = scrape_samples(body.decode(), "traces_span_metrics_calls_total")
        assert labels["service_name"] == "zero-code"
        assert "CANARY" not in body.decode()
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
