"""Load tests of the collector as a child process (RELIABILITY.md "Test families" → Load, issue #6).

Steady load, overload with a slow downstream, mixed encodings, attribute-heavy spans, a
cardinality explosion and /metrics under load. The load comes from ``tests/load_generator.py``
in its own process; the collector forwards to the scriptable fake downstream (``fake_otlp``).
Every test ends with the accounting check: spans acknowledged to clients = spans the collector
counted as accepted = sent + dropped{reason} + still queued, the fake received exactly what was
counted as sent, and the collector is still running without a traceback in its log.

Durations are env-overridable (``SPANSIGNALS_LOAD_STEADY_S``, default 60; ``SPANSIGNALS_LOAD_
METRICS_S``, default 15; ``SPANSIGNALS_LOAD_OVERLOAD_S``, default 10). Figures are printed
(``pytest -s``) as well as asserted against generous budgets for a shared 2-core machine.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psutil
import pytest
from fake_otlp import Delay, FakeOtlpServer, Ok
from google.protobuf import json_format
from otlp_builders import SPAN_KIND_SERVER, build_request
from peers import CollectorProcess, http_get, poll_until

pytestmark = pytest.mark.integration

GENERATOR = Path(__file__).resolve().parents[2] / "load_generator.py"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
STEADY_S = float(os.environ.get("SPANSIGNALS_LOAD_STEADY_S", "60"))
METRICS_LOAD_S = float(os.environ.get("SPANSIGNALS_LOAD_METRICS_S", "15"))
OVERLOAD_S = float(os.environ.get("SPANSIGNALS_LOAD_OVERLOAD_S", "10"))
RETRYABLE = {"grpc:UNAVAILABLE+RetryInfo", "http:503+Retry-After", "http:429+Retry-After"}
FAST_RETRY = {"initial_interval": "20ms", "max_interval": "200ms"}


# --- helpers ---------------------------------------------------------------------------------


def _collector(start_collector: Callable[..., CollectorProcess], fake: FakeOtlpServer, **extra: Any) -> Any:
    exporter = {"endpoint": fake.grpc_endpoint, "retry": FAST_RETRY, **extra.pop("exporter", {})}
    blocks = {"collector": {"exporters": {"down": exporter}}, **extra}
    return start_collector(config_blocks=blocks)


class LoadRun:
    """``tests/load_generator.py`` running against ``collector`` in its own process."""

    def __init__(self, collector: CollectorProcess, *, rate: float, duration: float, **options: Any) -> None:
        argv = [sys.executable, str(GENERATOR), "--grpc", collector.grpc_endpoint, "--rate", str(rate)]
        argv += ["--duration", str(duration), "--http", collector.traces_url]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_started(self) -> float:
        """Block until the generator says the load began; return that epoch."""
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line.startswith("started "):
            self.popen.wait(10)
            raise AssertionError(f"load generator failed: {line}{self.popen.stderr.read()[-3000:]}")  # type: ignore[union-attr]
        return float(line.split()[1])

    def result(self, timeout: float = 600) -> dict[str, Any]:
        """The generator's JSON tallies once it exits."""
        out, err = self.popen.communicate(timeout=timeout)
        assert self.popen.returncode == 0, err[-3000:]
        return dict(json.loads(out.strip().splitlines()[-1]))


def _processes(collector: CollectorProcess) -> list[psutil.Process]:
    root = psutil.Process(collector.process.pid)
    return [root, *root.children(recursive=True)]


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


Samples = dict[str, list[tuple[dict[str, str], float]]]


def _parse(text: str) -> Samples:
    """Every sample of a /metrics exposition by name, parsed once (a capped histogram is ~10 MB)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return samples


def _total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for sample_labels, value in samples.get(name, ())
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


def _accounting(
    collector: CollectorProcess, fake: FakeOtlpServer, acked: int, timeout: float = 60.0
) -> dict[str, Any]:
    """acked = receiver accepted = sent + dropped{reason} + still queued; the fake got what was sent;
    the collector still runs and logged no traceback."""

    def read() -> dict[str, Any]:
        text = _parse(collector.metrics_text())
        return {
            "accepted": _total(text, "spansignals_receiver_spans_total", outcome="accepted"),
            "sent": _total(text, "spansignals_exporter_spans_total", outcome="sent"),
            "dropped": _total(text, "spansignals_exporter_spans_total", outcome="dropped"),
            "queued": _total(text, "spansignals_exporter_queue_spans"),
            "dropped_by_reason": {
                labels["reason"]: value
                for labels, value in text.get("spansignals_exporter_dropped_spans_total", ())
            },
        }

    def settled() -> dict[str, Any] | None:
        figures = read()
        done = figures["queued"] == 0 and figures["sent"] + figures["dropped"] >= acked
        return figures if done and fake.delivered_spans() + fake.duplicates() >= figures["sent"] else None

    try:
        figures = poll_until(settled, timeout=timeout, interval=0.2, what="the exporter queue to drain")
    except TimeoutError:
        figures = read()  # the assertions below say what is missing
    figures["delivered"] = fake.delivered_spans()
    figures["duplicates"] = fake.duplicates()
    print(f"  accounting: acked {acked:,} -> {figures}")
    assert figures["accepted"] == acked, figures
    assert figures["sent"] + figures["dropped"] + figures["queued"] == acked, figures
    assert sum(figures["dropped_by_reason"].values()) == figures["dropped"], figures
    assert figures["delivered"] + figures["duplicates"] == figures["sent"], figures
    assert figures["delivered"] == acked - figures["dropped"], figures  # unexplained loss 0
    assert collector.process.running() and "Traceback" not in collector.logs(), collector.logs()[-3000:]
    return figures


def _unique_request(first_id: int, names: list[str]) -> Any:
    """A request of one span per name, ids unique from ``first_id`` on."""
    request = build_request("load", [(name, SPAN_KIND_SERVER, 0) for name in names])
    for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.trace_id = (first_id + i).to_bytes(16, "big")
        span.span_id = (first_id + i).to_bytes(8, "big")
    return request


def _otlp_json(request: Any) -> bytes:
    """OTLP/JSON of a protobuf request: camelCase keys, hex trace and span ids (not base64)."""
    document = json_format.MessageToDict(request)
    for rs, rs_msg in zip(document["resourceSpans"], request.resource_spans, strict=True):
        for ss, ss_msg in zip(rs["scopeSpans"], rs_msg.scope_spans, strict=True):
            for span, msg in zip(ss["spans"], ss_msg.spans, strict=True):
                span["traceId"], span["spanId"] = msg.trace_id.hex(), msg.span_id.hex()
    return json.dumps(document).encode()


# --- tests -----------------------------------------------------------------------------------


def test_steady_load_no_loss_within_budget(
    start_collector: Callable[..., CollectorProcess], fake_otlp: FakeOtlpServer
) -> None:
    """5k spans/s for STEADY_S (60 s) loses nothing; p99 <= 1 s, CPU <= 60% of a core, RSS <= 150 MB."""
    collector = _collector(start_collector, fake_otlp)
    processes = _processes(collector)
    run = LoadRun(collector, rate=5000, duration=STEADY_S, concurrency=4)
    run.wait_started()
    cpu0, wall0 = _cpu_seconds(processes), time.monotonic()
    result = run.result()
    cpu_share = (_cpu_seconds(processes) - cpu0) / (time.monotonic() - wall0)
    rss_mb = sum(p.memory_info().rss for p in processes) / 1e6
    rate = result["acked_spans"] / (result["finished_at"] - result["started_at"])
    print(
        f"\nsteady load {STEADY_S:g} s: {rate:,.0f} spans/s acked, p50 {result['p50_ms']:.1f} ms,"
        f" p99 {result['p99_ms']:.1f} ms, collector CPU {cpu_share:.0%} of a core, RSS {rss_mb:.1f} MB,"
        f" answers {result['answers']}"
    )
    assert set(result["answers"]) == {"grpc:OK"}, result  # no refusal at all at 5k spans/s
    assert rate >= 4500, result
    _accounting(collector, fake_otlp, result["acked_spans"])
    assert result["p99_ms"] <= 1000, result
    assert cpu_share <= 0.60, cpu_share
    assert rss_mb <= 150, rss_mb


def test_overload_refuses_retryably_and_recovers(
    start_collector: Callable[..., CollectorProcess], fake_otlp: FakeOtlpServer
) -> None:
    """At ~4x a slow downstream's capacity: only retryable refusals; accepted again <= 10 s after."""
    # Capacity: one batch of one 512-span request in flight, 0.1 s each -> ~5k spans/s.
    fake_otlp.mode = Delay(0.1)
    exporter = {"max_request_bytes": 0, "queue": {"max_items": 8192, "consumers": 1, "retry_after": "1s"}}
    collector = _collector(start_collector, fake_otlp, exporter=exporter)
    run = LoadRun(collector, rate=20_000, duration=OVERLOAD_S, concurrency=32, http_share=0.5)
    result = run.result()
    load_dropped = time.monotonic()
    answers = result["answers"]
    refusals = {kind: n for kind, n in answers.items() if kind not in ("grpc:OK", "http:200")}
    print(
        f"\noverload {OVERLOAD_S:g} s at 20k spans/s offered (capacity ~5k): acked"
        f" {result['acked_spans']:,} spans, answers {answers}, details {result['details']}"
    )
    offered = sum(answers.values()) * 512
    assert offered >= 2.5 * result["acked_spans"], (offered, result["acked_spans"])  # really overloaded
    assert refusals, "the overload never filled the queue: the test did not overload anything"
    assert set(refusals) <= RETRYABLE, result["details"]
    assert answers.get("grpc:UNAVAILABLE+RetryInfo") and answers.get("http:503+Retry-After"), answers

    # Load drops to one request at a time; the slow downstream drains the queue and we are let in.
    probe_id = result["last_id"] + 1_000_000
    probes = probe_refusals = 0
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        export = channel.unary_unary(TRACES)

        def accepted_again() -> bool:
            nonlocal probe_id, probes, probe_refusals
            request = _unique_request(probe_id << 20, ["GET /probe"] * 512)  # a full-size request
            probe_id += 1
            try:
                export(request.SerializeToString(), timeout=5)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc  # still only retryable
                probe_refusals += 1
                return False
            probes += 512
            return True

        poll_until(accepted_again, timeout=10, interval=0.1, what="the collector to accept again")
        recovered_s = time.monotonic() - load_dropped
        status, _ = http_get(f"http://{collector.metrics_endpoint}/health/ready")
    print(
        f"  accepted again {recovered_s:.2f} s after the load dropped ({probe_refusals} probes refused);"
        f" readiness {status}"
    )
    assert recovered_s <= 10, recovered_s
    assert status == 200  # ready as soon as it accepts again, though the queue is still draining
    fake_otlp.mode = Ok()  # the downstream recovers too: drain fast for the accounting
    refused_requests = sum(refusals.values()) + probe_refusals
    refused_spans = _total(
        _parse(collector.metrics_text()), "spansignals_receiver_spans_total", outcome="refused"
    )
    assert refused_spans == refused_requests * 512, (refused_spans, refusals)  # counted, not lost
    _accounting(collector, fake_otlp, result["acked_spans"] + probes)


async def test_mixed_encodings_exact_counts(
    start_collector: Callable[..., CollectorProcess], fake_otlp: FakeOtlpServer
) -> None:
    """gRPC, HTTP protobuf, gzip protobuf, JSON and gzip JSON at a steady rate: exact counts on /metrics."""
    collector = _collector(start_collector, fake_otlp)
    encodings = ["grpc", "protobuf", "protobuf+gzip", "json", "json+gzip"]
    rounds, spans_per_request, interval = 40, 50, 0.04  # 200 requests at 25/s -> 8 s, 10k spans
    sent = {"grpc": 0, "http": 0}
    async with (
        grpc.aio.insecure_channel(collector.grpc_endpoint) as channel,
        aiohttp.ClientSession() as session,
    ):
        export = channel.unary_unary(TRACES)
        next_at = time.monotonic()
        for n in range(rounds * len(encodings)):
            encoding = encodings[n % len(encodings)]
            request = _unique_request(1 + n * spans_per_request, [f"op {n % 7}"] * spans_per_request)
            if encoding == "grpc":
                await export(request.SerializeToString(), timeout=10)
                sent["grpc"] += spans_per_request
            else:
                body = _otlp_json(request) if encoding.startswith("json") else request.SerializeToString()
                kind = "application/json" if encoding.startswith("json") else "application/x-protobuf"
                headers = {"Content-Type": kind}
                if encoding.endswith("gzip"):
                    body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
                async with session.post(collector.traces_url, data=body, headers=headers) as resp:
                    assert resp.status == 200, (encoding, resp.status, await resp.text())
                sent["http"] += spans_per_request
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # pacing the sender
    total = sum(sent.values())
    text = _parse(collector.metrics_text())
    by_transport = {
        t: _total(text, "spansignals_receiver_spans_total", transport=t, outcome="accepted") for t in sent
    }
    calls = _total(text, "traces_span_metrics_calls_total")
    print(f"\nmixed encodings: sent {sent}, receiver accepted {by_transport}, span metrics calls {calls:.0f}")
    assert by_transport == {t: float(n) for t, n in sent.items()}
    assert calls == total
    assert _total(text, "spansignals_receiver_spans_total", outcome="rejected") == 0
    _accounting(collector, fake_otlp, total)


def _attribute_heavy(request: Any, attributes: int) -> None:
    """Give every span ``attributes`` attributes of every value type (strings up to 2 KiB)."""
    for span in request.resource_spans[0].scope_spans[0].spans:
        for i in range(attributes):
            kv = span.attributes.add()
            kv.key = f"app.attr.{i}"
            kind = i % 5
            if kind == 0:
                kv.value.string_value = "v" * (16 << (i % 8))
            elif kind == 1:
                kv.value.int_value = i * 1_000_003
            elif kind == 2:
                kv.value.double_value = i / 7
            elif kind == 3:
                kv.value.array_value.values.add().string_value = f"item {i}"
            else:
                inner = kv.value.kvlist_value.values.add()
                inner.key, inner.value.bool_value = "nested", True


async def test_attribute_heavy_spans_at_steady_rate(
    start_collector: Callable[..., CollectorProcess], fake_otlp: FakeOtlpServer
) -> None:
    """Spans of 200 attributes (long strings, arrays, maps) over gRPC and HTTP: none rejected or lost."""
    collector = _collector(start_collector, fake_otlp)
    requests, spans_per_request, interval = 40, 100, 0.1  # 4k spans, ~5 MB of attributes each second
    async with (
        grpc.aio.insecure_channel(collector.grpc_endpoint) as channel,
        aiohttp.ClientSession() as session,
    ):
        export = channel.unary_unary(TRACES)
        next_at = time.monotonic()
        for n in range(requests):
            request = _unique_request(1 + n * spans_per_request, [f"op {n % 3}"] * spans_per_request)
            _attribute_heavy(request, 200)
            body = request.SerializeToString()
            if n % 2:
                headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
                async with session.post(
                    collector.traces_url, data=gzip.compress(body), headers=headers
                ) as resp:
                    assert resp.status == 200, (resp.status, await resp.text())
            else:
                await export(body, timeout=10)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # pacing the sender
    total = requests * spans_per_request
    text = _parse(collector.metrics_text())
    print(f"\nattribute-heavy: {total:,} spans of 200 attributes, {len(body):,} bytes per request")
    assert _total(text, "spansignals_receiver_spans_total", outcome="accepted") == total
    assert _total(text, "spansignals_receiver_spans_total", outcome="rejected") == 0
    assert _total(text, "traces_span_metrics_calls_total") == total
    _accounting(collector, fake_otlp, total)


def test_cardinality_explosion_is_capped_and_conserved(
    start_collector: Callable[..., CollectorProcess], fake_otlp: FakeOtlpServer
) -> None:
    """50k distinct span names: at most cap + 1 series (one overflow series), sums equal the spans sent."""
    cap, names_total, per_request = 2000, 50_000, 1000
    collector = _collector(start_collector, fake_otlp, red={"max_series": cap})
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        export = channel.unary_unary(TRACES)
        for start in range(0, names_total, per_request):
            names = [f"GET /users/{i}" for i in range(start, start + per_request)]
            export(_unique_request(1 + start, names).SerializeToString(), timeout=30)
    text = _parse(collector.metrics_text())
    for name in ("traces_span_metrics_calls_total", "traces_span_metrics_duration_seconds_count"):
        series = text.get(name, [])
        overflow = [labels for labels, _ in series if labels.get("otel_metric_overflow") == "true"]
        total = sum(value for _, value in series)
        print(
            f"\ncardinality: {name}: {len(series)} series (cap {cap}),"
            f" overflow {len(overflow)}, sum {total:.0f}"
        )
        assert len(series) <= cap + 1, len(series)
        assert len(overflow) == 1, overflow
        assert total == names_total
    _accounting(collector, fake_otlp, names_total)


def test_metrics_endpoint_fast_and_monotonic_under_load(
    start_collector: Callable[..., CollectorProcess], fake_otlp: FakeOtlpServer
) -> None:
    """Scraping /metrics during 10k spans/s load stays fast (p99 < 1 s) and its counters never go back."""
    collector = _collector(start_collector, fake_otlp)
    run = LoadRun(collector, rate=10_000, duration=METRICS_LOAD_S, concurrency=4, http_share=0.25)
    run.wait_started()
    counters = [
        ("spansignals_receiver_spans_total", {"outcome": "accepted"}),
        ("spansignals_exporter_spans_total", {"outcome": "sent"}),
        ("traces_span_metrics_calls_total", {}),
    ]
    scrapes: list[tuple[float, list[float]]] = []
    while run.popen.poll() is None:
        began = time.perf_counter()
        raw = collector.metrics_text()
        elapsed = time.perf_counter() - began
        text = _parse(raw)
        scrapes.append((elapsed, [_total(text, name, **labels) for name, labels in counters]))
    result = run.result()
    latencies = sorted(elapsed for elapsed, _ in scrapes)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(
        f"\n/metrics under load: {len(scrapes)} scrapes in {METRICS_LOAD_S:g} s, p50"
        f" {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms,"
        f" max {latencies[-1] * 1000:.1f} ms;"
        f" load acked {result['acked_spans']:,} spans, answers {result['answers']}"
    )
    assert len(scrapes) >= 10, len(scrapes)
    assert p99 < 1.0, p99
    for (name, _), column in zip(counters, zip(*(values for _, values in scrapes), strict=True), strict=True):
        assert all(b >= a for a, b in itertools.pairwise(column)), f"{name} went backwards: {column}"
        assert column[-1] > column[0], f"{name} did not move during the load"
    assert set(result["answers"]) <= {"grpc:OK", "http:200"}, result
    _accounting(collector, fake_otlp, result["acked_spans"])
