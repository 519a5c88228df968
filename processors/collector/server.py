"""The collector's own HTTP endpoint: Prometheus ``/metrics`` and health checks.

``/metrics`` is rendered by the official OTel Prometheus exporter
(``opentelemetry.exporter.prometheus.PrometheusMetricReader``) on a private ``MeterProvider`` and a
private ``prometheus_client`` registry, with the engine's pre-aggregated families merged into each
collection by :func:`~spansignals.processors.producer.attach_producer`. Names are therefore exactly
what the exporter makes of the OTel names (``traces.span.metrics.calls`` ->
``traces_span_metrics_calls_total``), as they would be for an app.

``/health/live`` answers 200 while the process serves; ``/health/ready`` answers 200 once every
receiver is listening (``ready()`` says so) and 503 before that and while stopping.

With ``auth`` (``collector.auth``), ``protect_metrics`` / ``protect_health`` require the receivers'
bearer token on ``/metrics`` / ``/health/*`` (401 otherwise).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from ..producer import SignalMetricProducer, attach_producer
from .endpoints import Endpoint, bind_tcp
from .http_protocol import HardenedAppRunner, serve_on
from .security import BearerAuth, auth_middleware

__all__ = ["METRICS_CONTENT_TYPE", "MetricsServer", "PrometheusExposition"]

_logger = logging.getLogger(__name__)

# The classic text format. prometheus_client's CONTENT_TYPE_LATEST now says version=1.0.0, which
# Prometheus 2.x predates; the body is the same 0.0.4 text either way.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PrometheusExposition:
    """Renders a producer's families (and the private provider's instruments) as Prometheus text.

    ``resource`` becomes ``target_info``; by default it is ``Resource.create()``, which reads
    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``.
    """

    def __init__(self, producer: SignalMetricProducer, *, resource: Resource | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._reader = PrometheusMetricReader(registry=self.registry)
        self.meter_provider = MeterProvider(
            resource=resource or Resource.create(), metric_readers=[self._reader]
        )
        attach_producer(self._reader, producer)

    def render(self) -> bytes:
        """The current exposition text."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        """Release the private provider."""
        try:
            self.meter_provider.shutdown()
        except Exception:  # shutting down twice or a reader error must not fail a stop
            _logger.debug("metrics provider shutdown failed", exc_info=True)


class MetricsServer:
    """Serves ``/metrics``, ``/health/live`` and ``/health/ready`` on ``endpoint``.

    ``ready`` is asked on every readiness probe.
    """

    def __init__(
        self,
        exposition: PrometheusExposition,
        endpoint: Endpoint,
        *,
        ready: Callable[[], bool],
        shutdown_timeout: float = 5.0,
        auth: BearerAuth | None = None,
        protect_metrics: bool = True,
        protect_health: bool = True,
    ) -> None:
        self._auth = auth
        self._exempt = frozenset(
            (() if protect_metrics else ("/metrics",))
            + (() if protect_health else ("/health/live", "/health/ready"))
        )
        self._exposition = exposition
        self.endpoint = endpoint
        self._ready = ready
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        """The aiohttp application (exposed so tests can drive it without a socket)."""
        middlewares = [auth_middleware(self._auth, exempt=self._exempt)] if self._auth is not None else []
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health/live", self._live)
        app.router.add_get("/health/ready", self._readiness)
        return app

    async def start(self) -> Endpoint:
        """Listen and return the bound endpoint (the real port when ``endpoint.port`` is 0)."""
        sock = bind_tcp(self.endpoint)
        runner = HardenedAppRunner(self.make_app(), access_log=None, shutdown_timeout=self._shutdown_timeout)
        port = await serve_on(runner, sock)
        self._runner = runner
        self.endpoint = self.endpoint.with_port(port)
        return self.endpoint

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            # Collection walks every family under its lock; keep it off the event loop thread
            # so receivers are not stalled by a scrape.
            body = await asyncio.get_running_loop().run_in_executor(None, self._exposition.render)
        except Exception:
            _logger.exception("spansignals collector: rendering /metrics failed")
            return web.Response(status=500, text="rendering metrics failed (logged by the collector)\n")
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def _readiness(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)
