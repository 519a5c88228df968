"""End to end with a real Prometheus: an app's rate-limit gauges and breaker transitions as scraped series."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from peers import PrometheusPeer, free_port

from spansignals.sdk import RequestBlocked, configure, guard

pytestmark = pytest.mark.integration


class _Provider(http.server.BaseHTTPRequestHandler):
    """OpenAI-dialect headers on every answer; ``/limited`` is a 429 with ``Retry-After: 5``."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        limited = self.path == "/limited"
        self.send_response(429 if limited else 200)
        self.send_header("x-ratelimit-limit-requests", "60")
        self.send_header("x-ratelimit-remaining-requests", "0" if limited else "42")
        self.send_header("x-ratelimit-reset-requests", "5s")
        self.send_header("x-ratelimit-limit-tokens", "150000")
        self.send_header("x-ratelimit-remaining-tokens", "149984")
        self.send_header("x-ratelimit-reset-tokens", "6m0s")
        if limited:
            self.send_header("retry-after", "5")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def provider_url() -> Iterator[str]:
    """A local provider on 127.0.0.1 and a free port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


def test_prometheus_sees_gauges_and_breaker_open_then_closed(
    start_prometheus: Callable[..., PrometheusPeer], provider_url: str
) -> None:
    """Prometheus sees limit/remaining/reset gauges, breaker 2 after a 429 burst, then 0 after the probe."""
    port = free_port()
    telemetry = configure(
        {
            "service": {"name": "rl-e2e"},
            "providers": [{"name": "llm", "hosts": ["127.0.0.1"], "dialect": "openai"}],
        },
        traces_exporter="none",
        metrics_exporter="prometheus",
        prometheus_port=port,
        set_global_providers=False,
    )
    try:
        prometheus = start_prometheus([f"127.0.0.1:{port}"], scrape_interval="1s")
        plain = httpx.Client()
        waiting = guard(httpx.Client(), mode="wait", max_wait=10)
        rejecting = guard(httpx.Client())
        assert plain.get(provider_url + "/v1/ok").status_code == 200

        sel = 'service_name="rl-e2e",provider="llm"'
        prometheus.wait_for(
            f'spansignals_ratelimit_remaining{{{sel},resource="requests"}}', lambda r: _value(r) == 42
        )
        prometheus.wait_for(
            f'spansignals_ratelimit_limit{{{sel},resource="tokens"}}', lambda r: _value(r) == 150000
        )
        prometheus.wait_for(
            f'spansignals_ratelimit_reset_seconds{{{sel},resource="tokens"}}',
            lambda r: 300 < (_value(r) or 0) <= 360,
        )
        prometheus.wait_for(f"spansignals_breaker_state{{{sel}}}", lambda r: _value(r) == 0)

        for _ in range(3):
            assert plain.get(provider_url + "/limited").status_code == 429
        with pytest.raises(RequestBlocked) as blocked:
            rejecting.get(provider_url + "/v1/ok")
        assert 0 < blocked.value.retry_after <= 5
        prometheus.wait_for(f"spansignals_breaker_state{{{sel}}}", lambda r: _value(r) == 2, timeout=4.5)
        prometheus.wait_for(
            f'spansignals_ratelimit_throttled_total{{{sel},status_code="429"}}', lambda r: _value(r) == 3
        )
        prometheus.wait_for(
            f'spansignals_ratelimit_utilization_ratio{{{sel},resource="requests"}}', lambda r: _value(r) == 1
        )

        assert waiting.get(provider_url + "/v1/ok").status_code == 200  # waits out Retry-After, is the probe
        prometheus.wait_for(f"spansignals_breaker_state{{{sel}}}", lambda r: _value(r) == 0)
        prometheus.wait_for(
            f'spansignals_guard_decisions_total{{{sel},outcome="delayed"}}', lambda r: _value(r) == 1
        )
        prometheus.wait_for(
            f'spansignals_guard_decisions_total{{{sel},outcome="rejected"}}', lambda r: _value(r) == 1
        )
        for client in (plain, waiting, rejecting):
            client.close()
    finally:
        telemetry.shutdown(timeout=5)
