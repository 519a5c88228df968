"""spansignals report: SLA compliance from a real Prometheus (backfilled history) and a real collector."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from peers import CollectorProcess, PrometheusPeer, missing_peer, poll_until

from spansignals.cli import main
from spansignals.processors._report_format import render
from spansignals.processors.report import BurnWindow, ComplianceReport, SloCompliance

CONFIG = {
    "service": {"name": "checkout-api"},
    "slos": [
        {
            "name": "checkout-availability",
            "match": {"service": "checkout-api", "span_kind": "server"},
            "objective": 0.999,
        },
        {
            "name": "openai-latency",
            "match": {"provider": "openai"},
            "objective": 0.99,
            "latency_threshold": "2s",
        },
    ],
    "budgets": [{"name": "llm-monthly", "limit_usd": 1000}],
}
STEP = 300.0
INSTANCES = ("collector-1:9464", "collector-2:9464")


def _history(now: float) -> tuple[str, dict[str, list[tuple[float, float]]], float]:
    """OpenMetrics text for 8 days of two collectors, the per-series samples, and the spike hour's start."""
    end = now - 10
    times = [end - STEP * k for k in range(int(8 * 86400 / STEP), -1, -1)]
    spike_hour = math.floor((now - 3 * 86400) / 3600) * 3600
    series: dict[str, list[tuple[float, float]]] = {}
    lines: list[str] = []

    def family(
        name: str, kind: str, per_instance: Callable[[int, int, float], float], labels: str, cumulative: bool
    ) -> None:
        lines.append(f"# TYPE {name} {kind}")
        sample = f"{name}_total" if kind == "counter" else name
        for n, instance in enumerate(INSTANCES):
            key = f'{sample}{{{labels}instance="{instance}",job="spansignals",otel_scope_name="spansignals"}}'
            value, points = 0.0, []
            for i, t in enumerate(times):
                value = value + per_instance(n, i, t) if cumulative else per_instance(n, i, t)
                points.append((t, value))
                lines.append(f"{key} {value:g} {t:.3f}")
            series[key] = points

    slo = 'service_name="checkout-api",slo="checkout-availability",'
    family("spansignals_slo_events", "counter", lambda n, i, t: 1000, slo, True)
    family(
        "spansignals_slo_bad_events",
        "counter",
        lambda n, i, t: 50 if spike_hour < t <= spike_hour + 3600 else (1 if i % 4 == 0 else 0),
        slo,
        True,
    )
    family(
        "spansignals_slo_excluded_events",
        "counter",
        lambda n, i, t: 0,
        slo + 'maintenance="weekly-deploy",',
        True,
    )
    family(
        "spansignals_slo_objective_ratio",
        "gauge",
        lambda n, i, t: 0.999,
        'slo="checkout-availability",',
        False,
    )
    family(
        "spansignals_budget_limit_usd",
        "gauge",
        lambda n, i, t: 1000,
        'budget="llm-monthly",period="month",',
        False,
    )
    family(
        "spansignals_budget_spent_usd",
        "gauge",
        lambda n, i, t: (300, 150)[n],
        'budget="llm-monthly",period="month",',
        False,
    )
    family(
        "spansignals_budget_projected_usd",
        "gauge",
        lambda n, i, t: (600, 300)[n],
        'budget="llm-monthly",period="month",',
        False,
    )
    family(
        "spansignals_cost_usd",
        "counter",
        lambda n, i, t: 0.5,
        'model="gpt-4o",operation="chat",provider="openai",',
        True,
    )
    lines.append("# EOF")
    return "\n".join(lines) + "\n", series, spike_hour


def _delta(points: list[tuple[float, float]], start: float, end: float) -> float:
    inside = [v for t, v in points if start <= t <= end]
    return inside[-1] - inside[0]


@pytest.fixture
def backfilled_prometheus(tmp_path: Path):
    """A real Prometheus whose TSDB holds 8 days of history written by promtool's backfiller."""
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_peer("promtool is not installed (apt-get install prometheus)")
    now = time.time()
    text, series, spike_hour = _history(now)
    (tmp_path / "history.om").write_text(text)
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", "history.om", str(workdir / "data")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    peer = PrometheusPeer(workdir, [], extra_args=["--storage.tsdb.retention.time=60d"])
    try:
        poll_until(
            lambda: peer.query("count(spansignals_slo_events_total)"), timeout=30, what="backfilled data"
        )
        yield peer, series, spike_hour
    finally:
        peer.stop()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["report", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.integration
def test_report_from_prometheus_computes_compliance_budget_worst_windows_and_spend(
    backfilled_prometheus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Against a real Prometheus: compliance and budget left equal the history's math over 7d, the injected
    50x hour is the worst window, spend is summed over collectors, and a missing SLO says why."""
    peer, series, spike_hour = backfilled_prometheus
    (tmp_path / "spansignals.yaml").write_text(yaml.safe_dump(CONFIG))
    code, out, err = _run(
        capsys,
        "--prometheus",
        peer.url,
        "--config",
        str(tmp_path / "spansignals.yaml"),
        "--period",
        "7d",
        "--format",
        "json",
    )
    assert code == 0, err
    report = json.loads(out)
    at = report["generated_at"]
    slos = {s["name"]: s for s in report["slos"]}
    checkout = slos["checkout-availability"]
    events = sum(
        _delta(p, at - 7 * 86400, at)
        for k, p in series.items()
        if k.startswith("spansignals_slo_events_total")
    )
    bad = sum(
        _delta(p, at - 7 * 86400, at) for k, p in series.items() if k.startswith("spansignals_slo_bad_events")
    )
    assert checkout["compliance"] == pytest.approx(1 - bad / events, rel=1e-9)
    assert checkout["error_budget_remaining"] == pytest.approx(1 - (bad / events) / 0.001, rel=1e-9)
    assert checkout["events"] == pytest.approx(events, rel=0.01)  # increase() extrapolates to the range edges
    assert checkout["met"] is (1 - bad / events >= 0.999)
    worst = checkout["worst_windows"][0]
    assert (worst["start"], worst["end"]) == (spike_hour, spike_hour + 3600)
    assert worst["burn_rate"] == pytest.approx(50.0, rel=1e-9)
    assert checkout["notes"] == []
    latency = slos["openai-latency"]
    assert latency["compliance"] is None
    assert "no spansignals_slo_events_total" in latency["notes"][0]
    (budget,) = report["budgets"]
    assert (budget["limit_usd"], budget["spent_usd"], budget["projected_usd"]) == (1000, 450, 900)
    assert budget["utilization"] == pytest.approx(0.45)
    assert report["cost_by_provider_usd"]["openai"] == pytest.approx(2 * 0.5 * 7 * 86400 / STEP, rel=0.01)

    code, text, _ = _run(
        capsys, "--prometheus", peer.url, "--config", str(tmp_path / "spansignals.yaml"), "--period", "7d"
    )
    assert code == 0
    assert "checkout-availability" in text and "worst burn" in text and "50.00x" in text
    assert "openai-latency: no spansignals_slo_events_total" in text
    code, md, _ = _run(capsys, "--prometheus", peer.url, "--period", "30d", "--format", "markdown")
    assert code == 0
    assert md.startswith("# SLA compliance report")
    assert "| checkout-availability |" in md
    assert "data covers only the last 8.0 days of the 30d period" in md  # objective from the gauge, no config


def _send(endpoint: str, spans: list[tuple[str, bool]]) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout-api"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    tracer = provider.get_tracer("tests")
    for name, error in spans:
        with tracer.start_as_current_span(name, kind=SpanKind.SERVER) as span:
            if error:
                span.set_status(Status(StatusCode.ERROR))
    provider.shutdown()


@pytest.mark.integration
def test_report_from_a_running_collector(
    start_collector: Callable[..., CollectorProcess], capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    """Against a real collector's /metrics: events since start, compliance, and in-process budget and burn."""
    collector = start_collector(config_blocks={"service": CONFIG["service"], "slos": CONFIG["slos"]})
    _send(collector.traces_url, [("GET /cart", i < 3) for i in range(1000)])
    poll_until(
        lambda: collector.samples("spansignals_slo_events_total"), timeout=20, what="SLO events on /metrics"
    )
    code, out, err = _run(capsys, "--collector", f"http://{collector.metrics_endpoint}", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    slos = {s["name"]: s for s in report["slos"]}
    checkout = slos["checkout-availability"]
    assert (checkout["events"], checkout["bad_events"]) == (1000, 3)
    assert checkout["compliance"] == pytest.approx(0.997)
    assert checkout["met"] is False
    assert checkout["error_budget_remaining"] == pytest.approx(1 - 3.0)  # the process's own rolling period
    assert checkout["worst_windows"][0]["burn_rate"] == pytest.approx(3.0)
    assert slos["openai-latency"]["notes"] == [
        "no events since the process started (no span matched, or the SLO is not configured there)"
    ]
    assert "since the process started" in report["notes"][0]


def test_unreachable_sources_and_bad_arguments_say_why(capsys: pytest.CaptureFixture[str]):
    """An unreachable source exits 1 naming it; a bad period exits 2; nothing is printed as data."""
    from peers import free_port

    port = free_port()
    code, out, err = _run(capsys, "--prometheus", f"http://127.0.0.1:{port}")
    assert (code, out) == (1, "")
    assert f"cannot reach Prometheus at http://127.0.0.1:{port}" in err
    code, out, err = _run(capsys, "--collector", f"http://127.0.0.1:{port}")
    assert (code, out) == (1, "")
    assert f"cannot read http://127.0.0.1:{port}/metrics" in err
    code, _, err = _run(capsys, "--prometheus", "http://127.0.0.1:1", "--period", "soon")
    assert code == 2 and "--period" in err


def test_renderings_show_verdicts_windows_and_notes():
    """Text, Markdown and JSON carry the same verdicts, worst windows and reasons."""
    report = ComplianceReport(source="prometheus http://p", period="30d", generated_at=1_800_000_000.0)
    report.slos = [
        SloCompliance(
            name="a",
            sli="availability",
            objective=0.999,
            events=10_000,
            bad_events=5,
            compliance=0.9995,
            met=True,
            error_budget_remaining=0.5,
            worst_windows=[BurnWindow(burn_rate=12.5, start=1_799_996_400.0, end=1_800_000_000.0)],
        ),
        SloCompliance(name="b", objective=0.99, notes=["no data because reasons"]),
    ]
    text = render(report, "text")
    assert "a    availability  99.9%      99.95%      MET      50%          10,000  5    -" in text
    assert "a worst burn: 2027-01-15 07:00 UTC .. 08:00 UTC: 12.50x" in text
    assert "b: no data because reasons" in text
    assert "no data" in text.splitlines()[5]
    md = render(report, "markdown")
    assert "| a | availability | 99.9% | 99.95% | MET | 50% | 10,000 | 5 | - |" in md
    assert json.loads(render(report, "json"))["slos"][1]["notes"] == ["no data because reasons"]
