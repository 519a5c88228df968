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
from dataclasses import dataclass, field
from types import TracebackType

from opentelemetry.sdk.resources import Resource

from ..engine import SignalEngine
from ..producer import SignalMetricProducer
from .admission import DEFAULT_MAX_INFLIGHT_BYTES, DEFAULT_MEMORY_LIMIT_BYTES, AdmissionControl
from .decoding import DEFAULT_MAX_REQUEST_BYTES
from .endpoints import Endpoint, ListenError, parse_endpoint
from .pipeline import TracePipeline
from .receiver import DEFAULT_MAX_HEADER_BYTES, DEFAULT_READ_TIMEOUT_S, OtlpGrpcReceiver, OtlpHttpReceiver
from .security import BearerAuth, ServerTls
from .server import MetricsServer, PrometheusExposition
from .validation import SpanLimits

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
    span_limits: SpanLimits = field(default_factory=SpanLimits)
    max_inflight_bytes: int | None = DEFAULT_MAX_INFLIGHT_BYTES
    memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT_BYTES
    retry_after_s: float = 1.0
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    bearer_token: str | None = field(default=None, repr=False)
    protect_metrics: bool = False
    protect_health: bool = False
    grpc_tls: ServerTls | None = None
    http_tls: ServerTls | None = None
    redact: bool = False
    reuse_port: bool = False
    workers: int = 1

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
            **_hardening_settings(collector),
        )


def _server_tls(receiver: object | None) -> ServerTls | None:
    tls = getattr(receiver, "tls", None)
    if tls is None:
        return None
    return ServerTls(tls.cert_file, tls.key_file, tls.client_ca_file)


def _hardening_settings(collector: object) -> dict[str, object]:
    """The ``limits``, ``auth``, ``redaction``, ``workers`` and receiver ``tls`` keys as settings."""
    limits = collector.limits  # type: ignore[attr-defined]
    auth = collector.auth  # type: ignore[attr-defined]
    otlp = collector.receivers.otlp  # type: ignore[attr-defined]
    return {
        "span_limits": SpanLimits(limits.max_attributes, limits.max_attribute_value_bytes),
        "max_inflight_bytes": limits.max_inflight_bytes,
        "memory_limit_bytes": limits.memory_limit_mib * 1024 * 1024 or None,
        "retry_after_s": limits.retry_after,
        "read_timeout_s": limits.read_timeout,
        "max_header_bytes": limits.max_header_bytes,
        "bearer_token": auth.bearer_token.get_secret_value() if auth is not None else None,
        "protect_metrics": bool(auth and auth.protect_metrics),
        "protect_health": bool(auth and auth.protect_health),
        "grpc_tls": _server_tls(otlp.grpc),
        "http_tls": _server_tls(otlp.http),
        "redact": collector.redaction.enabled,  # type: ignore[attr-defined]
        "workers": collector.workers,  # type: ignore[attr-defined]
    }


class Collector:
    """OTLP trace receivers feeding ``engine``, plus ``/metrics`` and health, on the running loop."""

    def __init__(self, engine: SignalEngine, settings: CollectorSettings | None = None) -> None:
        self.settings = settings or CollectorSettings()
        self.engine = engine
        settings = self.settings
        self.pipeline = TracePipeline(engine, limits=settings.span_limits, redact=settings.redact)
        self.admission = AdmissionControl(
            max_inflight_bytes=settings.max_inflight_bytes,
            memory_limit_bytes=settings.memory_limit_bytes,
            retry_after_s=settings.retry_after_s,
        )
        self.auth = BearerAuth(settings.bearer_token) if settings.bearer_token else None
        self.producer = SignalMetricProducer()
        self.producer.register(
            *engine.metric_families(), *self.pipeline.metric_families(), self.admission.refusals
        )
        self.exposition = PrometheusExposition(
            self.producer, resource=Resource.create({"service.name": self.settings.service_name})
        )
        common = {
            "max_request_bytes": settings.max_request_bytes,
            "admission": self.admission,
            "auth": self.auth,
            "reuse_port": settings.reuse_port,
            "max_header_bytes": settings.max_header_bytes,
            "read_timeout_s": settings.read_timeout_s,
        }
        self.grpc_receiver = (
            OtlpGrpcReceiver(self.pipeline, settings.grpc_endpoint, tls=settings.grpc_tls, **common)  # type: ignore[arg-type]
            if settings.grpc_endpoint is not None
            else None
        )
        self.http_receiver = (
            OtlpHttpReceiver(
                self.pipeline,
                settings.http_endpoint,
                shutdown_timeout=settings.shutdown_timeout_s,
                tls=settings.http_tls,
                **common,  # type: ignore[arg-type]
            )
            if settings.http_endpoint is not None
            else None
        )
        self.metrics_server = MetricsServer(
            self.exposition,
            settings.metrics_endpoint,
            ready=lambda: self._ready,
            shutdown_timeout=settings.shutdown_timeout_s,
            auth=self.auth if settings.protect_metrics or settings.protect_health else None,
            protect_metrics=settings.protect_metrics,
            protect_health=settings.protect_health,
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
