"""Worker processes sharing the receiver ports (SO_REUSEPORT), each with its own /metrics."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from otlp_builders import SPAN_KIND_SERVER, build_request
from peers import PeerExited, free_ports, poll_until, scrape_samples

from spansignals.processors.collector import CollectorSettings, Endpoint
from spansignals.processors.collector.workers import check_workers, worker_settings


def test_worker_settings_share_ports_and_offset_metrics() -> None:
    """Worker i reuses the receiver ports and serves /metrics on the metrics port + i."""
    base = CollectorSettings(metrics_endpoint=Endpoint("127.0.0.1", 9464))
    second = worker_settings(base, 1)
    assert second.reuse_port and second.grpc_endpoint == base.grpc_endpoint
    assert second.metrics_endpoint == Endpoint("127.0.0.1", 9465)
    assert not base.reuse_port


def test_several_workers_need_explicit_ports() -> None:
    """Port 0 cannot be shared between workers: refused with the endpoint named."""
    settings = CollectorSettings(http_endpoint=Endpoint("127.0.0.1", 0))
    assert "http endpoint" in (check_workers(settings, 2) or "")
    assert check_workers(settings, 1) is None


def _two_free_consecutive_ports() -> int:
    for _ in range(50):
        (port,) = free_ports(1)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def _post_new_connection(port: int, body: bytes) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces",
        data=body,
        headers={"Content-Type": "application/x-protobuf", "Connection": "close"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status


def _accepted(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        v
        for labels, v in scrape_samples(text, "spansignals_receiver_spans_total")
        if labels["outcome"] == "accepted"
    )


@pytest.mark.integration
def test_two_workers_share_the_port_and_their_metrics_sum(tmp_path: Path) -> None:
    """--workers 2: both workers take connections on one port; the sum of their /metrics is exact."""
    grpc_port, http_port = free_ports(2)
    metrics_port = _two_free_consecutive_ports()
    config = {
        "collector": {
            "receivers": {
                "otlp": {
                    "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                    "http": {"endpoint": f"127.0.0.1:{http_port}"},
                }
            },
            "prometheus": {"endpoint": f"127.0.0.1:{metrics_port}"},
        },
        "alerts": {"api": {"enabled": False}},  # its fixed default port may be taken by a parallel test
    }
    path = tmp_path / "collector.yaml"
    path.write_text(json.dumps(config))
    argv = [sys.executable, "-m", "spansignals", "--log-level", "WARNING", "collector", "--config", str(path)]
    log = open(tmp_path / "collector.log", "wb")  # noqa: SIM115 - closed at the end of the test
    proc = subprocess.Popen([*argv, "--workers", "2"], stdout=log, stderr=subprocess.STDOUT)
    try:

        def both_ready() -> bool:
            if proc.poll() is not None:
                raise PeerExited(f"collector exited with {proc.returncode}: {_tail(tmp_path)}")
            for port in (metrics_port, metrics_port + 1):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                        if r.status != 200:
                            return False
                except OSError:
                    return False
            return True

        poll_until(both_ready, timeout=60, what="two workers ready")
        body = build_request("workers", [("op", SPAN_KIND_SERVER, 0)] * 3).SerializeToString()
        requests = 40
        for _ in range(requests):
            assert _post_new_connection(http_port, body) == 200
        per_worker = [_accepted(metrics_port), _accepted(metrics_port + 1)]
        assert sum(per_worker) == 3 * requests
        assert min(per_worker) > 0, f"the kernel sent every connection to one worker: {per_worker}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(5)
        log.close()
    assert code == 0, _tail(tmp_path)


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "collector.log").read_text(errors="replace")[-2000:]
