"""A real Prometheus scrapes the app's /metrics and PromQL returns the app's httpx call counts."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from peers import PrometheusPeer, free_port
from sdk_fixtures import LOCAL_PROVIDERS, LocalServer, Providers

from spansignals.sdk import Telemetry


@pytest.mark.integration
def test_prometheus_scrapes_app_red_series(
    configured: Callable[..., Telemetry],
    local_server: LocalServer,
    start_prometheus: Callable[..., PrometheusPeer],
) -> None:
    """configure() with the prometheus exporter; Prometheus's PromQL sums match the calls made."""
    port = free_port()
    app = Providers()
    configured(
        LOCAL_PROVIDERS,
        tracer_provider=app.tracer_provider,
        metrics_exporter="prometheus",
        prometheus_host="127.0.0.1",
        prometheus_port=port,
    )
    with httpx.Client() as client:
        for _ in range(6):
            client.get(local_server.url())
        for _ in range(2):
            client.get(local_server.url("/status/502"))
    prometheus = start_prometheus([f"127.0.0.1:{port}"])
    selector = '{span_kind="SPAN_KIND_CLIENT",service_name="test-app"}'
    query = f"sum by (status_code) (traces_span_metrics_calls_total{selector})"
    result = prometheus.wait_for(query, lambda r: len(r) == 2)
    counts = {r["metric"]["status_code"]: float(r["value"][1]) for r in result}
    assert counts == {"STATUS_CODE_UNSET": 6.0, "STATUS_CODE_ERROR": 2.0}
    buckets = prometheus.query(
        'sum(traces_span_metrics_duration_seconds_count{span_kind="SPAN_KIND_CLIENT"})'
    )
    assert float(buckets[0]["value"][1]) == 8.0
