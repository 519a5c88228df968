"""The collector service: receivers, engine and ``/metrics`` on one asyncio loop.

:func:`run` is what ``spansignals collector [--config FILE]`` calls: load the configuration (the
embedded default of DESIGN.md when there is none), build the engine, listen, say on stderr what it
listens on and that spans are dropped after derivation (forwarding arrives with issue #6), and
stop gracefully on SIGINT/SIGTERM. Exit codes: 0 after a clean stop, 1 when an endpoint cannot be
bound, 2 for an invalid configuration.

:class:`Collector` is the same service as an object, for tests and embedding: ``await start()``,
read the bound endpoints, ``await stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from types import TracebackType

from opentelemetry.sdk.resources import Resource

from ..engine import SignalEngine
from ..producer import SignalMetricProducer
from .decoding import DEFAULT_MAX_REQUEST_BYTES
from .endpoints import Endpoint, ListenError, parse_endpoint
from .pipeline import TracePipeline
from .receiver import OtlpGrpcReceiver, OtlpHttpReceiver
from .server import MetricsServer, PrometheusExposition

__all__ = ["Collector", "CollectorSettings", "run"]

_logger = logging.getLogger(__name__)

EXIT_OK, EXIT_LISTEN_FAILED, EXIT_CONFIG = 0, 1, 2
DEFAULT_SERVICE_NAME = "spansignals-collector"
DEFAULT_GRPC_ENDPOINT = Endpoint("127.0.0.1", 4317)
DEFAULT_HTTP_ENDPOINT = Endpoint("127.0.0.1", 4318)
DEFAULT_METRICS_ENDPOINT = Endpoint("127.0.0.1", 9464)


@dataclass(frozen=True)
class CollectorSettings:
    """What the service listens on. ``None`` turns a receiver off; port 0 picks a free port.

    Defaults are the embedded configuration of DESIGN.md.
    """

    grpc_endpoint: Endpoint | None = DEFAULT_GRPC_ENDPOINT
    http_endpoint: Endpoint | None = DEFAULT_HTTP_ENDPOINT
    metrics_endpoint: Endpoint = DEFAULT_METRICS_ENDPOINT
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    downstream_configured: bool = False
    shutdown_timeout_s: float = 5.0
    service_name: str = DEFAULT_SERVICE_NAME

    @classmethod
    def from_config(cls, config: object) -> CollectorSettings:
        """Settings from a loaded ``SpansignalsConfig`` (its ``collector`` and ``service`` blocks)."""
        collector = config.collector  # type: ignore[attr-defined]
        otlp = collector.receivers.otlp
        service = getattr(config, "service", None)
        name = getattr(service, "name", None) or os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
        return cls(
            grpc_endpoint=parse_endpoint(otlp.grpc.endpoint) if otlp.grpc is not None else None,
            http_endpoint=parse_endpoint(otlp.http.endpoint) if otlp.http is not None else None,
            metrics_endpoint=parse_endpoint(collector.prometheus.endpoint),
            max_request_bytes=collector.max_request_bytes,
            downstream_configured=bool(collector.exporters),
            service_name=name,
        )


class Collector:
    """OTLP trace receivers feeding ``engine``, plus ``/metrics`` and health, on the running loop."""

    def __init__(self, engine: SignalEngine, settings: CollectorSettings | None = None) -> None:
        self.settings = settings or CollectorSettings()
        self.engine = engine
        self.pipeline = TracePipeline(engine)
        self.producer = SignalMetricProducer()
        self.producer.register(*engine.metric_families(), *self.pipeline.metric_families())
        self.exposition = PrometheusExposition(
            self.producer, resource=Resource.create({"service.name": self.settings.service_name})
        )
        limit = self.settings.max_request_bytes
        self.grpc_receiver = (
            OtlpGrpcReceiver(self.pipeline, self.settings.grpc_endpoint, max_request_bytes=limit)
            if self.settings.grpc_endpoint is not None
            else None
        )
        self.http_receiver = (
            OtlpHttpReceiver(
                self.pipeline,
                self.settings.http_endpoint,
                max_request_bytes=limit,
                shutdown_timeout=self.settings.shutdown_timeout_s,
            )
            if self.settings.http_endpoint is not None
            else None
        )
        self.metrics_server = MetricsServer(
            self.exposition,
            self.settings.metrics_endpoint,
            ready=lambda: self._ready,
            shutdown_timeout=self.settings.shutdown_timeout_s,
        )
        self._ready = False
        self._started = False

    @property
    def grpc_endpoint(self) -> Endpoint | None:
        """Bound gRPC endpoint (after :meth:`start`), ``None`` when that receiver is off."""
        return self.grpc_receiver.endpoint if self.grpc_receiver is not None else None

    @property
    def http_endpoint(self) -> Endpoint | None:
        """Bound OTLP/HTTP endpoint (after :meth:`start`), ``None`` when that receiver is off."""
        return self.http_receiver.endpoint if self.http_receiver is not None else None

    @property
    def metrics_endpoint(self) -> Endpoint:
        """Bound ``/metrics`` and health endpoint (after :meth:`start`)."""
        return self.metrics_server.endpoint

    @property
    def ready(self) -> bool:
        """True once every receiver listens, until :meth:`stop` begins."""
        return self._ready

    async def start(self) -> None:
        """Listen on every endpoint; raises :class:`ListenError` (after undoing) if one fails."""
        self._started = True
        try:
            await self.metrics_server.start()
            if self.grpc_receiver is not None:
                await self.grpc_receiver.start()
            if self.http_receiver is not None:
                await self.http_receiver.start()
        except BaseException:
            await self.stop()
            raise
        self._ready = True
        _logger.debug("spansignals collector ready: %s", self.describe())

    async def stop(self) -> None:
        """Refuse new work, let in-flight requests finish (``shutdown_timeout_s``), release all."""
        self._ready = False
        if not self._started:
            return
        self._started = False
        grace = self.settings.shutdown_timeout_s
        if self.grpc_receiver is not None:
            await self.grpc_receiver.stop(grace)
        if self.http_receiver is not None:
            await self.http_receiver.stop()
        await self.metrics_server.stop()
        self.exposition.shutdown()
        self.engine.shutdown()

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def describe(self) -> str:
        """One line per endpoint, for the start banner."""
        lines = []
        if self.grpc_endpoint is not None:
            lines.append(f"OTLP gRPC traces   {self.grpc_endpoint}")
        if self.http_endpoint is not None:
            lines.append(f"OTLP/HTTP traces   http://{self.http_endpoint}/v1/traces (protobuf, JSON, gzip)")
        m = self.metrics_endpoint
        lines.append(f"Prometheus metrics http://{m}/metrics  (health: /health/live, /health/ready)")
        return "\n".join(lines)


def run(config_path: str | None) -> int:
    """Run the collector until SIGINT/SIGTERM; returns the process exit code.

    ``config_path`` ``None`` means ``SPANSIGNALS_CONFIG`` if set, else the embedded default.
    """
    from ..config import ConfigError, load_config
    from ..factory import build_engine

    try:
        config = load_config(config_path)
        settings = CollectorSettings.from_config(config)
        engine = build_engine(config)
    except ConfigError as exc:
        print(f"spansignals collector: invalid configuration\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:
        print(f"spansignals collector: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(_serve(Collector(engine, settings)))


async def _serve(collector: Collector) -> int:
    try:
        await collector.start()
    except ListenError as exc:
        print(f"spansignals collector: {exc}", file=sys.stderr)
        return EXIT_LISTEN_FAILED
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread / platform
            loop.add_signal_handler(signum, stop.set)
    if collector.settings.downstream_configured:
        downstream = (
            "downstream: collector.exporters is configured but forwarding is not active yet in this"
            " version; spans are dropped after derivation"
        )
    else:
        downstream = "downstream: none set; spans are dropped after derivation"
    print(
        f"spansignals collector listening on\n{_indent(collector.describe())}\n{downstream}",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        print("spansignals collector: stopping", file=sys.stderr, flush=True)
        await collector.stop()
    return EXIT_OK


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
