"""Real peers for integration tests: Prometheus, rotel, and the spansignals collector as a child.

Every peer listens on free loopback ports (never the defaults, never 0.0.0.0), is polled until it
is ready (never slept for), and is stopped by its PID. A peer that is not installed skips the test
with the reason — except when ``CI=true`` or ``SPANSIGNALS_REQUIRE_PEERS=1``, where the same
situation fails, so a CI machine that lost a peer cannot pass by skipping.

Use the fixtures in ``tests/conftest.py`` (``start_prometheus``, ``start_rotel``,
``start_collector``): they stop whatever they started at teardown. See ../shared/PEERS.md for how
each peer behaves (Prometheus' first scrape comes ~5 s after start; rotel needs both receiver
endpoints overridden).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

__all__ = [
    "REQUIRE_PEERS_ENV",
    "CollectorProcess",
    "ManagedProcess",
    "PeerExited",
    "PrometheusPeer",
    "RotelAgent",
    "find_prometheus",
    "find_rotel_agent",
    "free_port",
    "free_ports",
    "http_get",
    "missing_peer",
    "peers_required",
    "poll_until",
    "scrape_samples",
]

REQUIRE_PEERS_ENV = "SPANSIGNALS_REQUIRE_PEERS"
LOOPBACK = "127.0.0.1"

T = TypeVar("T")


# --- policy ------------------------------------------------------------------------------------


def peers_required() -> bool:
    """True in CI (``CI=true``) or with ``SPANSIGNALS_REQUIRE_PEERS=1``: missing peers fail."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(REQUIRE_PEERS_ENV) == "1"


def missing_peer(reason: str) -> NoReturn:
    """Skip the current test because a peer is missing, or fail when peers are required."""
    if peers_required():
        pytest.fail(f"required peer missing ({REQUIRE_PEERS_ENV}/CI set): {reason}", pytrace=False)
    pytest.skip(reason)


class PeerExited(RuntimeError):
    """A peer process exited while we waited for it; :func:`poll_until` gives up at once."""


# --- ports, polling, HTTP ----------------------------------------------------------------------


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct free TCP ports on ``host`` (all held open until all are chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port(host: str = LOOPBACK) -> int:
    """One free TCP port on ``host``."""
    return free_ports(1, host)[0]


def poll_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something truthy and return it; raise ``TimeoutError``
    after ``timeout`` seconds naming ``what`` and the last value or exception seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except PeerExited:
            raise
        except Exception as exc:  # the peer may not be up yet
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)  # a poll interval, not a wait for time to pass


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """``(status, body)`` of a GET; HTTP errors are returned, connection errors raise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """``(labels, value)`` of every sample called ``name`` in Prometheus exposition ``text``."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out.append((dict(sample.labels), float(sample.value)))
    return out


# --- processes ---------------------------------------------------------------------------------


class ManagedProcess:
    """A child process whose output goes to a log file; stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        cpus: Iterable[int] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        cpu_set = set(cpus) if cpus is not None else None
        preexec = (lambda: os.sched_setaffinity(0, cpu_set)) if cpu_set else None
        with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                preexec_fn=preexec,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def logs(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def check_running(self, name: str) -> None:
        """Raise :class:`PeerExited` with the process output when it has exited."""
        if not self.running():
            raise PeerExited(f"{name} exited with {self.popen.returncode}:\n{self.logs()[-4000:]}")

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` to the PID, wait up to ``timeout``, then SIGKILL; return the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


# --- Prometheus --------------------------------------------------------------------------------


def find_prometheus() -> str | None:
    """Path of the ``prometheus`` binary (Debian package), if installed."""
    return shutil.which("prometheus")


class PrometheusPeer:
    """A Prometheus 2.x server scraping ``targets`` (``host:port``) every ``scrape_interval``."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        *,
        scrape_interval: str = "1s",
        rule_files: Sequence[Path] = (),
        extra_args: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        binary = binary or find_prometheus()
        if binary is None:
            missing_peer("prometheus is not installed (apt-get install prometheus, see PEERS.md)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": "spansignals", "static_configs": [{"targets": list(targets)}]},
            ],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.process = ManagedProcess(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                f"--web.external-url={self.url}/",
                *extra_args,
            ],
            workdir / "prometheus.log",
        )
        try:
            poll_until(self._ready, timeout=30, what="Prometheus /-/ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        self.process.check_running("prometheus")
        return http_get(f"{self.url}/-/ready", timeout=1)[0] == 200

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The ``result`` list of an instant query (raises on an API error)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        status, body = http_get(url)
        payload = json.loads(body)
        if status != 200 or payload.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {status} {payload}")
        return list(payload["data"]["result"])

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool],
        *,
        timeout: float = 45.0,
    ) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``predicate(result)`` holds; return that result.

        The first scrape comes ~5 s after start (service discovery batching), hence the default.
        """
        return poll_until(
            lambda: result if predicate(result := self.query(promql)) else None,
            timeout=timeout,
            interval=0.25,
            what=f"PromQL {promql!r} to satisfy the predicate",
        )

    def stop(self) -> int:
        return self.process.stop()


# --- rotel -------------------------------------------------------------------------------------


def find_rotel_agent() -> str | None:
    """Path of the ``rotel-agent`` binary shipped in the ``rotel`` wheel, if installed."""
    try:
        import rotel
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent")
    return path if os.access(path, os.X_OK) else None


class RotelAgent:
    """rotel (Rust OTLP collector) receiving on free ports.

    ``exporter_endpoint`` ``None`` uses ``--exporter blackhole``; otherwise it forwards traces over
    OTLP (``protocol`` grpc or http) to that URL with short test-friendly retry backoffs.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        exporter_endpoint: str | None = None,
        protocol: str = "grpc",
        extra_args: Sequence[str] = (),
        cpus: Iterable[int] | None = None,
        binary: str | None = None,
    ) -> None:
        binary = binary or find_rotel_agent()
        if binary is None:
            missing_peer("rotel is not installed (pip install rotel==0.0.1a15, see PEERS.md)")
        workdir.mkdir(parents=True, exist_ok=True)
        grpc_port, http_port = free_ports(2)
        self.grpc_endpoint = f"{LOOPBACK}:{grpc_port}"
        self.http_endpoint = f"{LOOPBACK}:{http_port}"
        argv = [
            binary,
            "start",
            "--otlp-grpc-endpoint",
            self.grpc_endpoint,
            "--otlp-http-endpoint",
            self.http_endpoint,
        ]
        if exporter_endpoint is None:
            argv += ["--exporter", "blackhole"]
        else:
            argv += [
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                exporter_endpoint,
                "--otlp-exporter-protocol",
                protocol,
                "--batch-timeout",
                "100ms",
                "--otlp-exporter-retry-initial-backoff",
                "500ms",
                "--otlp-exporter-retry-max-backoff",
                "1s",
            ]
        argv += list(extra_args)
        self.process = ManagedProcess(argv, workdir / "rotel.log", cpus=cpus)
        try:
            poll_until(self._listening, timeout=15, what="rotel receivers to listen")
        except BaseException:
            self.stop()
            raise

    def _listening(self) -> bool:
        self.process.check_running("rotel-agent")
        for endpoint in (self.grpc_endpoint, self.http_endpoint):
            host, port = endpoint.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=0.5):
                pass
        return True

    def stop(self) -> int:
        return self.process.stop()


# --- the spansignals collector as a child process ----------------------------------------------


class CollectorProcess:
    """``spansignals collector --config FILE`` on free loopback ports, ready when started.

    ``config_blocks`` are extra top-level YAML blocks (a mapping, written as JSON) merged into the
    generated config; its ``collector`` endpoints are always the free ports chosen here.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        config_blocks: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        cpus: Iterable[int] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        grpc_port, http_port, metrics_port, alerts_port = free_ports(4)
        self.grpc_endpoint = f"{LOOPBACK}:{grpc_port}"
        self.http_endpoint = f"{LOOPBACK}:{http_port}"
        self.metrics_endpoint = f"{LOOPBACK}:{metrics_port}"
        self.traces_url = f"http://{self.http_endpoint}/v1/traces"
        self.metrics_url = f"http://{self.metrics_endpoint}/metrics"
        config: dict[str, Any] = dict(config_blocks or {})
        collector = dict(config.get("collector", {}))
        collector["receivers"] = {
            "otlp": {"grpc": {"endpoint": self.grpc_endpoint}, "http": {"endpoint": self.http_endpoint}}
        }
        collector["prometheus"] = {"endpoint": self.metrics_endpoint}
        config["collector"] = collector
        # The alerts management API is on by default in the collector: never on its default port.
        alerts = dict(config.get("alerts", {}))
        alerts["api"] = {"endpoint": f"{LOOPBACK}:{alerts_port}", **alerts.get("api", {})}
        config["alerts"] = alerts
        self.config_path = workdir / "spansignals.yaml"
        self.config_path.write_text(json.dumps(config, indent=2))
        child_env = dict(os.environ if env is None else env)
        child_env.pop("SPANSIGNALS_CONFIG", None)
        self.process = ManagedProcess(
            [sys.executable, "-m", "spansignals", "collector", "--config", str(self.config_path)],
            workdir / "collector.log",
            env=child_env,
            cpus=cpus,
        )
        try:
            poll_until(self._ready, timeout=ready_timeout, what="collector /health/ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        self.process.check_running("spansignals collector")
        return http_get(f"http://{self.metrics_endpoint}/health/ready", timeout=1)[0] == 200

    def metrics_text(self) -> str:
        """The current ``/metrics`` exposition."""
        status, body = http_get(self.metrics_url)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return body.decode()

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """``(labels, value)`` of every ``name`` sample on ``/metrics``."""
        return scrape_samples(self.metrics_text(), name)

    def logs(self) -> str:
        return self.process.logs()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (graceful stop) and return the exit code."""
        return self.process.stop(timeout)
