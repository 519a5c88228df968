"""The throughput benchmark stays runnable and its accounting holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "collector_throughput.py"


def _run_benchmark(*args: str, timeout: float) -> str:
    """Run a short benchmark (1 s measured after 0.5 s, no rotel target); its stdout."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--duration", "1", "--warmup", "0.5", "--no-rotel", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.integration
def test_benchmark_runs_and_accounts_for_every_span() -> None:
    """A one-second run prints spans/s and the collector accepted exactly what was acknowledged."""
    out = _run_benchmark("--concurrency", "4", timeout=120)
    assert "spansignals collector" in out
    assert "accounting ok" in out, out
    assert "MISMATCH" not in out, out
    assert "event-loop stalls (a tick >= 1 s late): " in out, out
    assert "span path: native scanner" in out, out


@pytest.mark.integration
def test_benchmark_workers_run_accounts_for_every_span() -> None:
    """With --workers 2 the benchmark also measures two worker processes and prints the scaling factor."""
    out = _run_benchmark(
        "--no-forward", "--no-breakdown", "--concurrency", "8", "--workers", "2", timeout=180
    )
    assert "spansignals x2 workers at 8 in flight: accounting ok" in out, out
    assert "scaling 2 workers / 1 worker" in out


def test_template_patching_gives_every_span_a_unique_id() -> None:
    """Patching the request counter into the template leaves no span with the same id in two requests."""
    import importlib.util

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spec = importlib.util.spec_from_file_location("collector_throughput", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    template, offsets = module.build_template(512)
    ids = set()
    for counter in (1, 2):
        body = bytearray(template)
        for offset in offsets:
            body[offset : offset + 8] = counter.to_bytes(8, "big")
        request = ExportTraceServiceRequest.FromString(bytes(body))
        ids.update(
            (s.trace_id, s.span_id)
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        )
    assert len(ids) == 2 * 512
