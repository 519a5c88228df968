"""The management API: HTTP JSON over an :class:`~.engine.AlertEngine` (aiohttp, token auth).

Endpoints (``alerts.api``: ``enabled`` default false, ``endpoint`` default ``127.0.0.1:9466``,
``token``: bearer token, required unless the endpoint is loopback; compared in constant time):

- ``GET  /api/v1/alerts`` (``?state=firing``) — alerts with state, mute reason, receivers;
- ``POST /api/v1/alerts/{fingerprint}/ack`` ``{"by": "ana"}`` — acknowledge (stops escalation);
- ``POST /api/v1/alerts/{fingerprint}/resolve`` — resolve by hand;
- ``GET  /api/v1/silences``; ``POST /api/v1/silences`` (the ``alerts.silences`` entry shape:
  ``matchers``, ``starts_at``/``ends_at`` or ``schedule``, ``author``, ``comment``; or
  ``duration`` instead of ``ends_at``); ``DELETE /api/v1/silences/{id}``;
- ``GET  /api/v1/maintenance``; ``POST /api/v1/maintenance`` (the ``alerts.maintenance`` shape);
- ``GET  /api/v1/status`` — counts, for health checks.

Bad input gets 400 with a message naming the field; unknown ids 404; no traceback is ever
returned. Request bodies are capped at 64 KiB.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import ipaddress
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from ..config._types import parse_duration
from ..config.alerts import MaintenanceConfig, SilenceConfig
from ..schedule import MaintenanceWindow
from .engine import AlertEngine
from .silences import Silence

__all__ = ["ManagementApi", "management_app", "serve_management_api"]

_logger = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(body)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        parts.append(f"{path}: {msg}")
    return "; ".join(parts)


def _ts(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def _auth_middleware(token: str | None) -> Any:
    expected = token.encode() if token else None

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None:
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
                return web.json_response(
                    {"error": "missing or wrong bearer token"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        try:
            return await handler(request)
        except web.HTTPException as exc:  # 404/405/413 from aiohttp: answer in JSON too
            if exc.status >= 400 and exc.content_type != "application/json":
                return _error(exc.status, exc.reason)
            raise
        except Exception:  # never echo a traceback
            _logger.exception("spansignals: management API handler failed")
            return _error(500, "internal error (logged on the server)")

    return auth


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except web.HTTPException:  # 413 for bodies over the cap
        raise
    except Exception:
        raise web.HTTPBadRequest(
            text='{"error": "body must be a JSON object"}', content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text='{"error": "body must be a JSON object"}', content_type="application/json"
        )
    return body


def management_app(engine: AlertEngine, *, token: str | None = None) -> web.Application:
    """The aiohttp application (mount it, or run it with :class:`ManagementApi`)."""
    app = web.Application(middlewares=[_auth_middleware(token)], client_max_size=_MAX_BODY)

    async def list_alerts(request: web.Request) -> web.Response:
        state = request.query.get("state")
        alerts = engine.list_alerts()
        if state:
            alerts = [a for a in alerts if a["state"] == state]
        return web.json_response({"alerts": alerts})

    async def ack(request: web.Request) -> web.Response:
        body = await _json_body(request) if request.can_read_body else {}
        by = str(body.get("by") or "api")[:100]
        result = engine.acknowledge(request.match_info["fingerprint"], by)
        return _error(404, "no such alert") if result is None else web.json_response(result)

    async def resolve(request: web.Request) -> web.Response:
        result = engine.resolve(request.match_info["fingerprint"])
        return _error(404, "no such alert") if result is None else web.json_response(result)

    async def list_silences(request: web.Request) -> web.Response:
        return web.json_response({"silences": engine.list_silences()})

    async def add_silence(request: web.Request) -> web.Response:
        body = await _json_body(request)
        duration = body.pop("duration", None)
        try:
            config = SilenceConfig.model_validate(body)
            seconds = None if duration is None else parse_duration(duration)
        except ValidationError as exc:
            return _error(400, _validation_message(exc))
        except ValueError as exc:
            return _error(400, f"duration: {exc}")
        starts_at, ends_at = _ts(config.starts_at), _ts(config.ends_at)
        if seconds is not None:
            if ends_at is not None:
                return _error(400, "give ends_at or duration, not both")
            ends_at = (starts_at if starts_at is not None else engine.now()) + seconds
        if config.schedule is None and ends_at is None:
            return _error(400, "a silence needs ends_at, duration or schedule")
        if starts_at is not None and ends_at is not None and ends_at <= starts_at:
            return _error(400, "ends_at must be after starts_at")
        schedule = None
        if config.schedule is not None:
            sc = config.schedule
            schedule = MaintenanceWindow(
                "silence", weekdays=sc.weekdays, start=sc.start, end=sc.end, timezone=sc.timezone
            )
        author = config.author if "author" in body else "api"
        silence = Silence(dict(config.matchers), starts_at, ends_at, schedule, author, config.comment)
        engine.add_silence(silence)
        return web.json_response(silence.to_dict(engine.now()), status=201)

    async def delete_silence(request: web.Request) -> web.Response:
        if engine.delete_silence(request.match_info["silence_id"]):
            return web.Response(status=204)
        return _error(404, "no such silence")

    async def list_maintenance(request: web.Request) -> web.Response:
        return web.json_response({"maintenance": engine.list_maintenance()})

    async def add_maintenance(request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            config = MaintenanceConfig.model_validate(body)
        except ValidationError as exc:
            return _error(400, _validation_message(exc))
        if not config.mute:
            return _error(
                400, "mute: false windows do nothing for alerting; SLO correction is configured per SLO"
            )
        engine.add_maintenance(MaintenanceWindow.from_config(config))
        return web.json_response({"name": config.name, "match": dict(config.match)}, status=201)

    async def status(request: web.Request) -> web.Response:
        alerts = engine.list_alerts()
        counts: dict[str, int] = {}
        for a in alerts:
            counts[a["state"]] = counts.get(a["state"], 0) + 1
        return web.json_response({"alerts": counts, "silences": len(engine.list_silences())})

    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_post("/api/v1/alerts/{fingerprint}/ack", ack)
    app.router.add_post("/api/v1/alerts/{fingerprint}/resolve", resolve)
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", add_silence)
    app.router.add_delete("/api/v1/silences/{silence_id}", delete_silence)
    app.router.add_get("/api/v1/maintenance", list_maintenance)
    app.router.add_post("/api/v1/maintenance", add_maintenance)
    app.router.add_get("/api/v1/status", status)
    return app


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"alerts.api.endpoint must be host:port, got {endpoint!r}")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ManagementApi:
    """Runs :func:`management_app` on its own thread and event loop."""

    def __init__(
        self, engine: AlertEngine, endpoint: str = "127.0.0.1:9466", *, token: str | None = None
    ) -> None:
        self.host, self.port = _split_endpoint(endpoint)
        if not token and not _is_loopback(self.host):
            raise ValueError("alerts.api.token is required when the management API listens beyond loopback")
        self._app = management_app(engine, token=token)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Bind and serve; raises if the port cannot be bound."""
        self._thread = threading.Thread(target=self._run, name="spansignals-alerts-api", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("management API did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._runner = web.AppRunner(self._app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            loop.run_until_complete(site.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)


def serve_management_api(
    engine: AlertEngine, config: Any, *, default_enabled: bool = False
) -> ManagementApi | None:
    """Start the API if ``config.alerts.api.enabled`` (``default_enabled`` when the config does not
    say); returns the running server or ``None``."""
    api = config.alerts.api
    enabled = api.enabled if "enabled" in api.model_fields_set else default_enabled
    if not enabled:
        return None
    server = ManagementApi(engine, api.endpoint, token=api.token.get_secret_value() if api.token else None)
    server.start()
    _logger.info("spansignals: alert management API on %s", server.url)
    return server
