"""The collector's own HTTP endpoint: Prometheus ``/metrics`` and health checks.

``/metrics`` is written straight from the engine's pre-aggregated families by
:class:`~spansignals.processors.exposition.PrometheusTextWriter`: the same series (names, labels,
``otel_scope_*``, ``target_info``) the official OTel Prometheus exporter produced from them, at a
fraction of the cost (the exporter converted every series into OTel data points and
``prometheus_client`` samples on every scrape: ~1 s per scrape at the default cap of 2000 RED
series; see :mod:`~spansignals.processors.exposition` and ``benchmarks/metrics_scrape.py``).
The exposition is rendered on a worker thread, so receivers on the event loop keep running during
a scrape, and gzip-compressed there when the scraper sends ``Accept-Encoding: gzip``
(Prometheus does).

``/health/live`` answers 200 while the process serves; ``/health/ready`` answers what the
collector's ``ready()`` says, meaning "send me traffic": 200 while every receiver listens and would
take a request, 503 before start, while stopping, over the memory limit, and from a refusal for
want of queue room until a request of that size fits again (see ``Collector.ready``).

With ``auth`` (``collector.auth``), ``protect_metrics`` / ``protect_health`` require the receivers'
bearer token on ``/metrics`` / ``/health/*`` (401 otherwise).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import Callable

from aiohttp import web
from opentelemetry.sdk.resources import Resource

from ..exposition import PrometheusTextWriter
from ..producer import SignalMetricProducer
from .endpoints import Endpoint, bind_tcp
from .http_protocol import HardenedAppRunner, serve_on
from .security import BearerAuth, auth_middleware

__all__ = ["METRICS_CONTENT_TYPE", "MetricsServer", "PrometheusExposition", "accepts_gzip"]

_logger = logging.getLogger(__name__)

# The classic text format. prometheus_client's CONTENT_TYPE_LATEST now says version=1.0.0, which
# Prometheus 2.x predates; the body is the same 0.0.4 text either way.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

GZIP_LEVEL = 1
"""Exposition text is label text repeated line after line: at the default cap (9.6 MB) level 1
shrinks it ~47x in ~20 ms of CPU, level 9 ~63x in ~135 ms (``benchmarks/metrics_scrape.py``
times level 1; level 9 measured the same way with ``gzip.compress`` on its text)."""


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip`` or ``*`` with a q above 0)."""
    if not accept_encoding:
        return False
    allowed: dict[str, bool] = {}
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        allowed[coding] = quality > 0
    return allowed.get("gzip", allowed.get("x-gzip", allowed.get("*", False)))


class PrometheusExposition:
    """Renders a producer's families as Prometheus text.

    ``resource`` becomes ``target_info``; by default it is ``Resource.create()``, which reads
    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``.
    """

    def __init__(self, producer: SignalMetricProducer, *, resource: Resource | None = None) -> None:
        resource = resource or Resource.create()
        self._writer = PrometheusTextWriter(
            lambda: producer.families,
            scope=(producer.scope.name, producer.scope.version or ""),
            resource_attributes=resource.attributes,
            before=producer.prepare,
        )

    def render(self) -> bytes:
        """The current exposition text."""
        return self._writer.render()

    def render_gzip(self) -> bytes:
        """The current exposition text, gzip-compressed."""
        return gzip.compress(self._writer.render(), compresslevel=GZIP_LEVEL, mtime=0)


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
        compress = accepts_gzip(request.headers.get("Accept-Encoding"))
        render = self._exposition.render_gzip if compress else self._exposition.render
        try:
            # Rendering (and compressing) takes milliseconds of CPU at the default cap: keep it
            # off the event loop thread so receivers are not stalled by a scrape.
            body = await asyncio.get_running_loop().run_in_executor(None, render)
        except Exception:
            _logger.exception("spansignals collector: rendering /metrics failed")
            return web.Response(status=500, text="rendering metrics failed (logged by the collector)\n")
        headers = {"Content-Type": METRICS_CONTENT_TYPE, "Vary": "Accept-Encoding"}
        if compress:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def _readiness(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)
