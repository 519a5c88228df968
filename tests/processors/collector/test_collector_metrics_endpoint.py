"""The collector's /metrics over HTTP: gzip when asked for, the same text either way."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import aiohttp
import pytest
from opentelemetry.sdk.resources import Resource
from peers import scrape_samples

from spansignals.processors.collector import Endpoint, MetricsServer, PrometheusExposition
from spansignals.processors.collector.server import METRICS_CONTENT_TYPE, accepts_gzip
from spansignals.processors.families import CounterFamily, HistogramFamily
from spansignals.processors.producer import SignalMetricProducer


@pytest.fixture
async def metrics_url() -> AsyncIterator[str]:
    """A MetricsServer on a free loopback port over 300 RED-like histogram series and a counter."""
    producer = SignalMetricProducer()
    duration = HistogramFamily("test.duration", "Duration.", "s", ("span.name",), (0.1, 1.0))
    spans = CounterFamily("test.spans", "Spans.", "{span}", ("transport",))
    for i in range(300):
        duration.record((f"GET /items/{i}",), 0.5)
    spans.add(("grpc",), 7)
    producer.register(duration, spans)
    exposition = PrometheusExposition(producer, resource=Resource.create({"service.name": "endpoint-test"}))
    server = MetricsServer(exposition, Endpoint("127.0.0.1", 0), ready=lambda: True, shutdown_timeout=1.0)
    endpoint = await server.start()
    yield f"http://{endpoint}/metrics"
    await server.stop()


async def _get(url: str, accept_encoding: str | None) -> tuple[dict[str, str], bytes]:
    headers = {"Accept-Encoding": accept_encoding} if accept_encoding is not None else {}
    async with (
        aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"]) as session,
        session.get(url, headers=headers) as resp,
    ):
        assert resp.status == 200
        return dict(resp.headers), await resp.read()


async def test_gzip_when_accepted_and_plain_otherwise(metrics_url: str) -> None:
    """Accept-Encoding: gzip gets a gzip body of the same exposition; no header gets plain text."""
    plain_headers, plain = await _get(metrics_url, None)
    gzip_headers, packed = await _get(metrics_url, "gzip, deflate")
    assert "Content-Encoding" not in plain_headers
    assert gzip_headers["Content-Encoding"] == "gzip"
    assert plain_headers["Content-Type"] == gzip_headers["Content-Type"] == METRICS_CONTENT_TYPE
    assert gzip_headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(packed) == plain
    assert len(packed) * 5 < len(plain)
    text = plain.decode()
    assert scrape_samples(text, "test_spans_total")[0][1] == 7.0
    assert len(scrape_samples(text, "test_duration_seconds_count")) == 300


async def test_gzip_refused_with_q_zero(metrics_url: str) -> None:
    """gzip;q=0 (and identity alone) get the plain text."""
    for value in ("gzip;q=0, identity", "identity"):
        headers, body = await _get(metrics_url, value)
        assert "Content-Encoding" not in headers and body.startswith(b"# HELP target_info")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, *", False),
        ("*", True),
        ("*;q=0", False),
        ("x-gzip", True),
        ("br, deflate", False),
        ("gzip;q=bad", False),
    ],
)
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    """Accept-Encoding is read per RFC 9110: gzip (or *) with a non-zero q."""
    assert accepts_gzip(header) is expected
