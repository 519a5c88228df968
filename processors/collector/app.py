"""The collector service: receivers, engine and ``/metrics`` on one asyncio loop.

:func:`run` is what ``spansignals collector [--config FILE]`` calls: load the configuration (the
embedded default of DESIGN.md when there is none), build the engine, listen, say on stderr what it
listens on, where it forwards (``collector.exporters``) and where the alerts management API is,
and stop gracefully on SIGINT/SIGTERM (receivers close, exporters drain within the shutdown
timeout). Exit codes: 0 after a clean stop, 1 when an endpoint cannot be bound, 2 for an invalid
configuration.

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
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

from opentelemetry.sdk.resources import Resource

from ..engine import SignalEngine
from ..producer import SignalMetricProducer
from .admission import DEFAULT_MAX_INFLIGHT_BYTES, DEFAULT_MEMORY_LIMIT_BYTES, AdmissionControl
from .decoding import DEFAULT_MAX_REQUEST_BYTES
from .endpoints import Endpoint, ListenError, ensure_open_files, parse_endpoint
from .forwarding import ExporterFamilies, Forwarder, TraceForwarding
from .gc_tuning import tune_gc
from .loop_monitor import LoopLagMonitor
from .metrics_export import OtlpMetricsPush
from .pipeline import TracePipeline
from .receiver import (
    DEFAULT_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_READ_TIMEOUT_S,
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    ReceiverSettings,
    request_duration_family,
)
from .security import BearerAuth, ServerTls
from .server import MetricsServer, PrometheusExposition
from .signals import SignalPassThrough
from .spanscan import NATIVE as SCANNER_BUILT
from .spanscan import WIRECHECK as WIRECHECK_BUILT
from .validation import SpanLimits

__all__ = ["Collector", "CollectorSettings", "run"]

_logger = logging.getLogger(__name__)

EXIT_OK, EXIT_LISTEN_FAILED, EXIT_CONFIG = 0, 1, 2
DEFAULT_SERVICE_NAME = "spansignals-collector"
DEFAULT_GRPC_ENDPOINT = Endpoint("127.0.0.1", 4317)
DEFAULT_HTTP_ENDPOINT = Endpoint("127.0.0.1", 4318)
DEFAULT_METRICS_ENDPOINT = Endpoint("127.0.0.1", 9464)
_SPARE_FILES = 512  # besides the receivers' connections: queue files, downstream and /metrics sockets


@dataclass(frozen=True)
class CollectorSettings:
    """What the service listens on. ``None`` turns a receiver off; port 0 picks a free port.

    Defaults are the embedded configuration of DESIGN.md.
    """

    grpc_endpoint: Endpoint | None = DEFAULT_GRPC_ENDPOINT
    http_endpoint: Endpoint | None = DEFAULT_HTTP_ENDPOINT
    metrics_endpoint: Endpoint = DEFAULT_METRICS_ENDPOINT
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    shutdown_timeout_s: float = 5.0
    service_name: str = DEFAULT_SERVICE_NAME
    span_limits: SpanLimits = field(default_factory=SpanLimits)
    max_inflight_bytes: int | None = DEFAULT_MAX_INFLIGHT_BYTES
    memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT_BYTES
    retry_after_s: float = 1.0
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_connections: int | None = DEFAULT_MAX_CONNECTIONS
    max_concurrent_streams: int | None = DEFAULT_MAX_CONCURRENT_STREAMS
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
            shutdown_timeout_s=collector.shutdown_timeout,
            service_name=name,
            **_hardening_settings(collector),
        )


def _server_tls(receiver: object | None) -> ServerTls | None:
    tls = getattr(receiver, "tls", None)
    if tls is None:
        return None
    return ServerTls(tls.cert_file, tls.key_file, tls.client_ca_file)


def _hardening_settings(collector: object) -> dict[str, Any]:
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
        "max_connections": limits.max_connections or None,
        "max_concurrent_streams": limits.max_concurrent_streams or None,
        "bearer_token": auth.bearer_token.get_secret_value() if auth is not None else None,
        "protect_metrics": bool(auth and auth.protect_metrics),
        "protect_health": bool(auth and auth.protect_health),
        "grpc_tls": _server_tls(otlp.grpc),
        "http_tls": _server_tls(otlp.http),
        "redact": collector.redaction.enabled,  # type: ignore[attr-defined]
        "workers": collector.workers,  # type: ignore[attr-defined]
    }


class Collector:
    """OTLP receivers (traces feed ``engine``; metrics and logs pass through), forwarding to the
    ``config.collector.exporters``, the alerting engine, ``/metrics`` and health, on the running loop.

    Without ``config`` (tests of the front door) nothing is forwarded and no alerting runs.
    """

    def __init__(
        self, engine: SignalEngine, settings: CollectorSettings | None = None, *, config: object | None = None
    ) -> None:
        self.settings = settings or CollectorSettings()
        self.engine = engine
        self.config = config
        settings = self.settings
        self.pipeline = TracePipeline(engine, limits=settings.span_limits, redact=settings.redact)
        collector_config = getattr(config, "collector", None)
        self._exporters_config = collector_config if getattr(collector_config, "exporters", None) else None
        self.exporter_families = ExporterFamilies()
        self.forwarder: Forwarder | None = None
        self.alerting: object | None = None
        self.metrics_push: OtlpMetricsPush | None = None
        self.signals = SignalPassThrough(self._submit_signal if self._exporters_config is not None else None)
        # The trace receivers see the pipeline through the forwarding gate when forwarding is on.
        self.forwarding = TraceForwarding(self.pipeline) if self._exporters_config is not None else None
        receiver_pipeline = self.forwarding or self.pipeline
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
        self.producer.register(*self.exporter_families.metric_families(), *self.signals.metric_families())
        self.loop_monitor = LoopLagMonitor()
        self.request_duration = request_duration_family()
        self.producer.register(*self.loop_monitor.metric_families(), self.request_duration)
        self.producer.add_before_produce(engine.flush)
        self.exposition = PrometheusExposition(
            self.producer, resource=Resource.create({"service.name": self.settings.service_name})
        )
        self.receiver_settings = ReceiverSettings(
            max_request_bytes=settings.max_request_bytes,
            admission=self.admission,
            auth=self.auth,
            reuse_port=settings.reuse_port,
            max_header_bytes=settings.max_header_bytes,
            read_timeout_s=settings.read_timeout_s,
            shutdown_timeout_s=settings.shutdown_timeout_s,
            max_connections=settings.max_connections,
            max_concurrent_streams=settings.max_concurrent_streams,
            request_duration=self.request_duration,
        )
        self.grpc_receiver = (
            OtlpGrpcReceiver(
                receiver_pipeline,  # type: ignore[arg-type]
                settings.grpc_endpoint,
                self.receiver_settings,
                tls=settings.grpc_tls,
                extra_handlers=self.signals.grpc_handlers(),
            )
            if settings.grpc_endpoint is not None
            else None
        )
        self.http_receiver = (
            OtlpHttpReceiver(
                receiver_pipeline,  # type: ignore[arg-type]
                settings.http_endpoint,
                self.receiver_settings,
                tls=settings.http_tls,
                extra_routes=self.signals.http_routes(),
            )
            if settings.http_endpoint is not None
            else None
        )
        if self.http_receiver is not None:
            self.signals.read_body = self.http_receiver.read_body
        self.metrics_server = MetricsServer(
            self.exposition,
            settings.metrics_endpoint,
            ready=lambda: self.ready,
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
        """Readiness, meaning "send me traffic": true once every receiver listens, until
        :meth:`stop` begins, while the receivers would take a request: under the memory limit and
        not refusing for want of queue room (see :meth:`Forwarder.ready`). A failing downstream
        alone does not make the collector unready while its queue has room."""
        return (
            self._ready and self.admission.accepting() and (self.forwarder is None or self.forwarder.ready())
        )

    async def _submit_signal(self, signal: str, payload: bytes, items: int) -> None:
        if self.forwarder is not None:
            await self.forwarder.submit(signal, payload, items)

    async def _start_forwarding(self) -> None:
        """Open the queues (a persistent one recovers what a previous run acknowledged) and hook
        the forwarder between the trace receivers and their pipeline."""
        collector = self._exporters_config
        if collector is None:
            return
        self.forwarder = Forwarder.from_config(collector, families=self.exporter_families)
        await self.forwarder.start()
        gate = self.forwarding
        assert gate is not None
        gate.forwarder = self.forwarder
        for receiver in (self.grpc_receiver, self.http_receiver):
            if receiver is not None:
                receiver.forward = gate.hook(receiver.transport)

    def _start_alerting_and_push(self) -> None:
        config = self.config
        if config is None:
            return
        from ..alerts import start_alerting
        from .workers import worker_index

        # With --workers, only worker 0 serves the management API on its port (by default).
        api_by_default = worker_index() in (None, 0)
        try:
            self.alerting = start_alerting(
                config, self.engine, producer=self.producer, api_by_default=api_by_default
            )
        except OSError as exc:
            raise ListenError(f"cannot start the alerts management API: {exc.strerror or exc}") from None
        push = getattr(getattr(config, "collector", None), "metrics_export", None)
        if push is not None:
            self.metrics_push = OtlpMetricsPush(
                self.producer, push, resource=Resource.create({"service.name": self.settings.service_name})
            )

    async def start(self) -> None:
        """Listen on every endpoint; raises :class:`ListenError` (after undoing) if one fails."""
        self._started = True
        if self.settings.max_connections is not None:
            receivers = sum(r is not None for r in (self.grpc_receiver, self.http_receiver))
            ensure_open_files(receivers * self.settings.max_connections + _SPARE_FILES)
        try:
            await self._start_forwarding()
            self._start_alerting_and_push()
            await self.metrics_server.start()
            if self.grpc_receiver is not None:
                await self.grpc_receiver.start()
            if self.http_receiver is not None:
                await self.http_receiver.start()
        except BaseException:
            await self.stop()
            raise
        self.loop_monitor.start()
        self._ready = True
        _logger.debug("spansignals collector ready: %s", self.describe())

    async def stop(self) -> None:
        """Refuse new work, let in-flight requests finish (``shutdown_timeout_s``), release all."""
        self._ready = False
        if not self._started:
            return
        self._started = False
        await self.loop_monitor.stop()
        grace = self.settings.shutdown_timeout_s
        if self.grpc_receiver is not None:
            await self.grpc_receiver.stop(grace)
        if self.http_receiver is not None:
            await self.http_receiver.stop()
        if self.forwarder is not None:
            await self.forwarder.stop(self.settings.shutdown_timeout_s)
        if self.metrics_push is not None:
            await asyncio.to_thread(self.metrics_push.shutdown)
        await self.metrics_server.stop()
        if self.alerting is not None:
            await asyncio.to_thread(self.alerting.stop)  # type: ignore[attr-defined]
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
        settings = self.settings
        auth = ", bearer token required" if self.auth is not None else ""
        if self.grpc_endpoint is not None:
            grpc_note = _tls_note(settings.grpc_tls) + auth
            lines.append(f"OTLP gRPC          {self.grpc_endpoint} (traces, metrics, logs{grpc_note})")
        if self.http_endpoint is not None:
            scheme = "https" if settings.http_tls is not None else "http"
            lines.append(
                f"OTLP/HTTP          {scheme}://{self.http_endpoint}/v1/traces, /v1/metrics, /v1/logs"
                f" (protobuf, JSON, gzip{_tls_note(settings.http_tls)}{auth})"
            )
        m = self.metrics_endpoint
        lines.append(f"Prometheus metrics http://{m}/metrics  (health: /health/live, /health/ready)")
        api = getattr(self.alerting, "api", None)
        if api is not None:
            lines.append(f"Alerts API         {api.url}/api/v1/alerts")
        if self.metrics_push is not None:
            lines.append(f"OTLP metrics push  {self.metrics_push.endpoint}")
        return "\n".join(lines)


def _tls_note(tls: ServerTls | None) -> str:
    if tls is None:
        return ""
    return ", mTLS" if tls.mutual else ", TLS"


def run(config_path: str | None, workers: int | None = None) -> int:
    """Run the collector until SIGINT/SIGTERM; returns the process exit code.

    ``config_path`` ``None`` means ``SPANSIGNALS_CONFIG`` if set, else the embedded default.
    ``workers`` (default: ``collector.workers``) > 1 runs that many worker processes sharing the
    ports (see :mod:`.workers`); this process then only supervises them.
    """
    from ..config import ConfigError, load_config
    from ..factory import build_engine
    from .workers import check_workers, run_workers, worker_index, worker_settings

    try:
        config = load_config(config_path)
        settings = CollectorSettings.from_config(config)
        if workers is not None:
            settings = replace(settings, workers=workers)
        problem = check_workers(settings, settings.workers)
        if problem is not None:
            raise ValueError(problem)
        index = worker_index()
        if index is None and settings.workers > 1:
            level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
            return run_workers(config_path, settings.workers, log_level=str(level))
        if index is not None:
            settings = worker_settings(settings, index)
        engine = build_engine(config)
    except ConfigError as exc:
        print(f"spansignals collector: invalid configuration\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:
        print(f"spansignals collector: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(_serve(Collector(engine, settings, config=config)))


async def _serve(collector: Collector) -> int:
    try:
        await collector.start()
    except ListenError as exc:
        print(f"spansignals collector: {exc}", file=sys.stderr)
        return EXIT_LISTEN_FAILED
    tune_gc()  # startup is over: see gc_tuning (~19% of the CPU went to collections)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread / platform
            loop.add_signal_handler(signum, stop.set)
    if collector.forwarder is not None:
        downstream = collector.forwarder.describe()
    else:
        downstream = "downstream: none set (collector.exporters); spans are dropped after derivation"
    if not SCANNER_BUILT:
        span_path = "span path: Python only (the native scanner was not built: no C compiler at install?)"
    elif WIRECHECK_BUILT:
        span_path = "span path: native scanner, requests checked without a protobuf parse"
    else:
        span_path = "span path: native scanner, requests parsed by upb first (the wire check was not built)"
    print(
        f"spansignals collector listening on\n{_indent(collector.describe())}\n{downstream}\n{span_path}",
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
