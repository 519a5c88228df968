"""collector-config/prometheus: shipped rules are current, the config is valid, and a real Prometheus
loads it and evaluates the SLO rules over a real collector's series."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from peers import CollectorProcess, ManagedProcess, free_port, http_get, missing_peer, poll_until

from spansignals.processors.config import load_config
from spansignals.processors.report import report_from_prometheus
from spansignals.processors.rules import render_rules

ROOT = Path(__file__).resolve().parents[1]
PROM_DIR = ROOT / "collector-config" / "prometheus"
EXAMPLE = ROOT / "examples" / "config" / "spansignals.yaml"
EXAMPLE_ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.example/placeholder"}


def test_shipped_rules_are_the_generated_rules_of_the_example_config():
    """spansignals-rules.yml is what `spansignals rules` prints for the example config (else regenerate)."""
    config = load_config(EXAMPLE, env=EXAMPLE_ENV)
    expected = render_rules(config, header=["config: examples/config/spansignals.yaml"])
    shipped = (PROM_DIR / "spansignals-rules.yml").read_text()
    assert shipped == expected, (
        "collector-config/prometheus/spansignals-rules.yml is out of date; run: "
        "SLACK_WEBHOOK_URL=https://x spansignals rules --config examples/config/spansignals.yaml "
        "> collector-config/prometheus/spansignals-rules.yml"
    )


def test_shipped_prometheus_config_passes_promtool():
    """promtool check config accepts prometheus.yml and the rule file it loads."""
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_peer("promtool is not installed (apt-get install prometheus)")
    result = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        cwd=PROM_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def _send(endpoint: str, spans: list[tuple[str, bool]]) -> None:
    """Server spans of checkout-api (name, is_error) over OTLP/HTTP with the official exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout-api"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    tracer = provider.get_tracer("tests")
    for name, error in spans:
        with tracer.start_as_current_span(name, kind=SpanKind.SERVER) as span:
            if error:
                span.set_status(Status(StatusCode.ERROR))
    provider.shutdown()


def _query(url: str, promql: str) -> list[dict]:
    from urllib.parse import urlencode

    status, body = http_get(f"{url}/api/v1/query?{urlencode({'query': promql})}")
    payload = json.loads(body)
    assert status == 200 and payload["status"] == "success", payload
    return payload["data"]["result"]


@pytest.mark.integration
def test_real_prometheus_loads_the_shipped_config_and_evaluates_slo_rules(
    tmp_path: Path, start_collector: Callable[..., CollectorProcess]
):
    """Prometheus 2.42 runs the shipped config (target and intervals pointed at a test collector): every
    rule group is healthy and the SLO ratios, burn rate and budget come out of the collector's counters."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        missing_peer("prometheus is not installed (apt-get install prometheus)")
    example = yaml.safe_load(EXAMPLE.read_text())
    collector = start_collector(config_blocks={"service": example["service"], "slos": example["slos"]})

    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9464"]
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [collector.metrics_endpoint]
    config["rule_files"] = [str(PROM_DIR / f) for f in config["rule_files"]]
    config.pop("alerting")  # no Alertmanager here
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={url}/",
        ],
        tmp_path / "prometheus.log",
    )
    try:
        poll_until(
            lambda: http_get(f"{url}/-/ready", timeout=1)[0] == 200, timeout=30, what="Prometheus ready"
        )
        # Both counters start well above 0: rate() does not extrapolate a series below zero, so a bad
        # counter first scraped at 0 would be extrapolated differently from the events counter.
        _send(collector.traces_url, [("GET /cart", i % 2 == 0) for i in range(20)])
        poll_until(
            lambda: _query(url, 'spansignals_slo_events_total{slo="checkout-availability"}'),
            timeout=45,
            what="Prometheus to scrape the first SLO event",
        )
        _send(collector.traces_url, [("GET /cart", i < 2) for i in range(8)])  # 2 bad of 8 more events
        # Scrapes may land mid-send; once all 9 events are scraped the ratio is exactly 2 of 8 new events.
        ratio = poll_until(
            lambda: [
                r
                for r in _query(url, 'slo:sli_error:ratio_rate5m{slo="checkout-availability"}')
                if float(r["value"][1]) == pytest.approx(2 / 8)
            ],
            timeout=45,
            what="the 5m error ratio to be recorded as 2/8",
        )
        assert ratio[0]["metric"]["sloth_id"] == "checkout-availability"
        assert ratio[0]["metric"]["sloth_service"] == "checkout-api"
        # The group's later rules are committed one by one after the ratio's: poll, do not read once.
        poll_until(
            lambda: [
                r
                for r in _query(url, 'slo:current_burn_rate:ratio{slo="checkout-availability"}')
                if float(r["value"][1]) == pytest.approx(0.25 / 0.001, rel=1e-6)
            ],
            timeout=30,
            what="the current burn rate to be recorded as 250",
        )
        poll_until(  # errors overspend a 0.1% budget
            lambda: [
                r
                for r in _query(url, 'slo:period_error_budget_remaining:ratio{slo="checkout-availability"}')
                if float(r["value"][1]) < 0
            ],
            timeout=30,
            what="the error budget remaining to be recorded below 0",
        )
        _, body = http_get(f"{url}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        assert {g["name"] for g in groups} >= {
            "spansignals-slo-checkout-availability",
            "spansignals-slo-openai-latency",
            "spansignals-ratelimits",
        }
        unhealthy = [
            (r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"
        ]
        assert unhealthy == []
        firing = poll_until(
            lambda: [
                a
                for a in json.loads(http_get(f"{url}/api/v1/alerts")[1])["data"]["alerts"]
                if a["labels"].get("burn_rate_threshold") == "14.4"
            ],
            timeout=30,
            what="the 14.4x page to become active",
        )
        assert firing[0]["labels"]["severity"] == "critical"
        # The same data end to end through `spansignals report`: 2 bad of the 8 events Prometheus saw arrive.
        report = report_from_prometheus(url, load_config({"slos": example["slos"]}), 3600.0)
        checkout = {s.name: s for s in report.slos}["checkout-availability"]
        assert checkout.compliance == pytest.approx(0.75)
        assert checkout.met is False
        assert checkout.error_budget_remaining == pytest.approx(1 - 0.25 / 0.001, rel=1e-6)
    finally:
        process.stop()
