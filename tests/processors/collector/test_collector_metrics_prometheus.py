"""A real Prometheus scraping the collector at its RED cap: every series, escape and the overflow."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import pytest
from otlp_builders import SPAN_KIND_SERVER, build_request
from peers import CollectorProcess, PrometheusPeer

pytestmark = pytest.mark.integration

CAP = 2000  # red.max_series default
TRICKY = ['quote " inside', "back\\slash", "new\nline", "tab\tand é ✓ 漢字", "{braces}=,"]


def _post(collector: CollectorProcess, names: list[str]) -> None:
    body = build_request("prom-cap", [(name, SPAN_KIND_SERVER, 0) for name in names]).SerializeToString()
    request = urllib.request.Request(
        collector.traces_url, data=body, headers={"Content-Type": "application/x-protobuf"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200


def _value(result: list[dict[str, object]]) -> float:
    return float(result[0]["value"][1]) if result else -1.0  # type: ignore[index]


def test_prometheus_reads_every_series_at_the_cap(
    start_collector: Callable[..., CollectorProcess], start_prometheus: Callable[..., PrometheusPeer]
) -> None:
    """Prometheus stores the cap's 2000 series plus one overflow, the escaped names exactly, and the
    same total as spans sent; target_info carries the collector's service name."""
    collector = start_collector(config_blocks={"service": {"name": "cap-collector"}})
    names = TRICKY + [f"GET /items/{i}" for i in range(CAP + 50 - len(TRICKY))]
    _post(collector, names[:1000])
    _post(collector, names[1000:])
    prometheus = start_prometheus([collector.metrics_endpoint])

    prometheus.wait_for("count(traces_span_metrics_calls_total)", lambda r: _value(r) == CAP + 1)
    total = prometheus.wait_for("sum(traces_span_metrics_duration_seconds_count)", lambda r: bool(r))
    assert _value(total) == len(names)
    assert _value(prometheus.query("sum(traces_span_metrics_calls_total)")) == len(names)
    overflow = prometheus.query('traces_span_metrics_calls_total{otel_metric_overflow="true"}')
    assert len(overflow) == 1 and float(overflow[0]["value"][1]) == 50  # type: ignore[index]
    assert "span_name" not in overflow[0]["metric"]  # type: ignore[operator]
    stored = {
        r["metric"]["span_name"]  # type: ignore[index]
        for r in prometheus.query('traces_span_metrics_calls_total{span_name!~"GET /items/.*"}')
        if "span_name" in r["metric"]  # type: ignore[operator]
    }
    assert stored == set(TRICKY)
    buckets = prometheus.query('count(traces_span_metrics_duration_seconds_bucket{span_name="new\\nline"})')
    assert _value(buckets) == 17
    info = prometheus.query('target_info{service_name="cap-collector"}')
    assert len(info) == 1
    scraped = prometheus.query('scrape_samples_scraped{job="spansignals"}')
    assert _value(scraped) > (CAP + 1) * 20  # calls, 17 buckets, count and sum per series
    assert _value(prometheus.query('up{job="spansignals"}')) == 1.0
