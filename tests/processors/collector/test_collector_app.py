"""The collector service: /metrics and health, start-up banner, exit codes, graceful stop."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from otlp_builders import SPAN_KIND_SERVER, STATUS_CODE_ERROR, build_request
from peers import CollectorProcess, poll_until, scrape_samples

from spansignals.processors.collector import Collector, CollectorSettings, Endpoint, run
from spansignals.processors.config import SpansignalsConfig, load_config
from spansignals.processors.factory import build_engine


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_metrics_shows_red_and_receiver_series(collector: Collector) -> None:
    """/metrics renders spanmetrics-named RED series and the receiver counter with exact values."""
    body = build_request(
        "metrics-svc", [("GET /a", SPAN_KIND_SERVER, STATUS_CODE_ERROR)] * 7
    ).SerializeToString()
    async with aiohttp.ClientSession() as session:
        url = f"http://{collector.http_endpoint}/v1/traces"
        async with session.post(url, data=body, headers={"Content-Type": "application/x-protobuf"}) as resp:
            assert resp.status == 200
    status, content_type, text = await _get(f"http://{collector.metrics_endpoint}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    calls = scrape_samples(text, "traces_span_metrics_calls_total")
    assert [
        (labels["service_name"], labels["span_name"], labels["span_kind"], labels["status_code"], value)
        for labels, value in calls
    ] == [("metrics-svc", "GET /a", "SPAN_KIND_SERVER", "STATUS_CODE_ERROR", 7.0)]
    assert scrape_samples(text, "traces_span_metrics_duration_seconds_count")[0][1] == 7.0
    received = {
        (lb["transport"], lb["outcome"]): v
        for lb, v in scrape_samples(text, "spansignals_receiver_spans_total")
    }
    assert received == {("http", "accepted"): 7.0}


async def test_health_endpoints(collector: Collector) -> None:
    """/health/live and /health/ready answer 200 once the receivers listen."""
    assert collector.ready
    for path in ("/health/live", "/health/ready"):
        status, _, _ = await _get(f"http://{collector.metrics_endpoint}{path}")
        assert status == 200


def test_invalid_config_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid config file makes run() print the field and return exit code 2."""
    path = tmp_path / "bad.yaml"
    path.write_text("collector:\n  receivers:\n    otlp:\n      grpc: {endpoint: nowhere}\n")
    assert run(str(path)) == 2
    assert "collector.receivers.otlp.grpc.endpoint" in capsys.readouterr().err


def test_taken_port_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """When an endpoint is taken, run() says which and returns exit code 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "taken.yaml"
        path.write_text(json.dumps({"collector": {"prometheus": {"endpoint": f"127.0.0.1:{port}"}}}))
        assert run(str(path)) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def _banner(child: CollectorProcess) -> str | None:
    logs = child.logs()
    return logs if "Prometheus metrics" in logs else None


@pytest.mark.integration
def test_child_says_what_it_listens_on_and_stops_cleanly(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    """The process prints its endpoints and that spans are dropped, and exits 0 on SIGTERM."""
    child = start_collector()
    logs = poll_until(lambda: _banner(child), timeout=10, what="the start-up banner")
    assert child.grpc_endpoint in logs and child.traces_url in logs and child.metrics_url in logs
    assert "spans are dropped after derivation" in logs
    assert child.stop() == 0


@pytest.mark.integration
def test_banner_names_the_exporters_and_alerts_api(start_collector: Callable[..., CollectorProcess]) -> None:
    """With collector.exporters set, the banner names each downstream, its queue and the alerts API."""
    child = start_collector(
        config_blocks={
            "collector": {"exporters": {"otlp": {"endpoint": "http://127.0.0.1:1", "protocol": "grpc"}}}
        }
    )
    banner = poll_until(lambda: _banner(child), timeout=10, what="the banner")
    assert "forwarding to otlp (GrpcSender, memory queue)" in banner
    assert "Alerts API         http://127.0.0.1:" in banner
    assert child.stop() == 0


def test_settings_from_config_blocks() -> None:
    """The collector block maps to settings: endpoints, null turns a receiver off, exporters noted."""
    config = load_config(
        {
            "collector": {
                "receivers": {"otlp": {"grpc": None, "http": {"endpoint": "127.0.0.1:14318"}}},
                "prometheus": {"endpoint": "127.0.0.1:19464"},
                "exporters": {"otlp": {"endpoint": "http://127.0.0.1:14317"}},
            }
        }
    )
    settings = CollectorSettings.from_config(config)
    assert settings.grpc_endpoint is None
    assert settings.http_endpoint == Endpoint("127.0.0.1", 14318)
    assert settings.metrics_endpoint == Endpoint("127.0.0.1", 19464)
    assert _forwards(config)


def test_default_settings_are_the_embedded_config() -> None:
    """With no config, the endpoints are DESIGN.md's embedded default."""
    settings = CollectorSettings.from_config(load_config({}))
    assert (str(settings.grpc_endpoint), str(settings.http_endpoint), str(settings.metrics_endpoint)) == (
        "127.0.0.1:4317",
        "127.0.0.1:4318",
        "127.0.0.1:9464",
    )
    assert not _forwards(load_config({}))


def test_settings_defaults_agree_with_the_config_defaults() -> None:
    """CollectorSettings() (what tests and embedders build directly) says what it is documented
    to: the embedded configuration's values."""
    assert CollectorSettings() == CollectorSettings.from_config(load_config({}))


def _forwards(config: SpansignalsConfig) -> bool:
    """Whether a Collector built from ``config`` forwards spans (``collector.exporters`` set)."""
    collector = Collector(build_engine(config), CollectorSettings.from_config(config), config=config)
    collector.engine.shutdown()
    return collector.forwarding is not None
