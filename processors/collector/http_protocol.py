"""aiohttp's HTTP/1 layer, hardened: protocol errors answered with fixed texts, nothing echoed.

aiohttp answers a request it cannot parse (a header line over ``max_field_size``, too many
headers, a malformed request line, invalid bytes) itself, before any middleware runs, with a body
that quotes the offending bytes (``Got more than 16384 bytes when reading: b'<header value>...'``)
and logs the exception with its traceback at ERROR. Header values are exactly where credentials
live, so :class:`HardenedAppRunner` swaps in a request handler whose ``handle_error`` answers with
a fixed text per status (``431`` for a header or request line over the limit, ``400`` otherwise),
closes the connection, and logs only the exception's class at DEBUG.

:class:`ConnectionLimit` caps the open connections of one listener (the OTLP/HTTP receiver's
``limits.max_connections``): a connection over the cap is answered at once with a fixed ``503``
and ``Retry-After`` (the client's first request is refused retryably, as every overload is, and
counted) and closed, without an HTTP parser or a request task ever being created for it.

Used by the OTLP/HTTP receiver and the ``/metrics`` server.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

__all__ = ["ConnectionLimit", "HardenedAppRunner", "serve_on"]

_logger = logging.getLogger(__name__)

_TEXTS = {
    400: "malformed HTTP request",
    413: "request too large",
    431: "request header fields too large",
    500: "internal error",
}
_LINGER_S = 1.0
"""How long a refused connection is read and discarded before it is aborted."""


class ConnectionLimit:
    """At most ``max_connections`` open connections on one listener.

    A connection over the cap gets ``503`` + ``Retry-After: retry_after_s`` and
    ``Connection: close`` as soon as it is accepted, then a half-close; whatever the client sends
    is read and discarded until it closes (at most :data:`_LINGER_S`), so the answer is not
    destroyed by a reset when the client's request arrives after our close. ``on_refused`` is called for
    each refusal (the self-telemetry counter); a warning is logged at most once a minute.
    """

    def __init__(
        self,
        max_connections: int,
        *,
        retry_after_s: float = 1.0,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.open = 0
        self._on_refused = on_refused
        self._last_log = float("-inf")
        text = b"the collector is at its connection limit; retry later\n"
        self._response = (
            b"HTTP/1.1 503 Service Unavailable\r\n"
            b"Retry-After: %d\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (max(1, math.ceil(retry_after_s)), len(text), text)
        )

    def admit(self) -> bool:
        """Whether a new connection may be served (called when it is accepted)."""
        if self.open < self.max_connections:
            return True
        if self._on_refused is not None:
            self._on_refused()
        now = time.monotonic()
        if now - self._last_log >= 60.0:
            self._last_log = now
            _logger.warning(
                "spansignals collector: OTLP/HTTP at its limit of %d open connections; answering new"
                " connections with 503 + Retry-After (limits.max_connections)",
                self.max_connections,
            )
        return False

    def refusal(self) -> asyncio.Protocol:
        """The protocol that answers one refused connection."""
        return _RefusedConnection(self._response, _LINGER_S)


class _RefusedConnection(asyncio.Protocol):
    """Writes a fixed 503, half-closes, discards input until the peer closes or ``linger_s``."""

    def __init__(self, response: bytes, linger_s: float) -> None:
        self._response = response
        self._linger_s = linger_s
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self._response)
        if not transport.can_write_eof():  # TLS: close() flushes the answer and sends close_notify
            transport.close()
            return
        transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(self._linger_s, transport.abort)

    def data_received(self, data: bytes) -> None:
        """The request we refuse: discarded."""

    def eof_received(self) -> bool:
        return False  # the peer is done too: the transport closes

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _QuietRequestHandler(RequestHandler):
    _limit: ConnectionLimit | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Counted here, not when the protocol is created: a TLS handshake that fails never
        # reaches connection_made, so it never holds a slot.
        self._limit = getattr(self._manager, "connection_limit", None)
        if self._limit is not None:
            self._limit.open += 1
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._limit is not None:
            self._limit.open -= 1
            self._limit = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong) or (
            isinstance(exc, BadHttpMessage) and "many headers" in str(getattr(exc, "message", ""))
        ):
            status = 431
        _logger.debug(
            "spansignals collector: refused an unparsable HTTP request (%s, %d)",
            type(exc).__name__ if exc is not None else "no exception",
            status,
        )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        text = _TEXTS.get(status) or _TEXTS[400 if 400 <= status < 500 else 500]
        response = web.Response(status=status, text=text + "\n")
        response.force_close()
        return response


class _QuietServer(web.Server):
    connection_limit: ConnectionLimit | None = None

    def __call__(self) -> Any:  # the listener's protocol factory, called for every accepted socket
        limit = self.connection_limit
        if limit is not None and not limit.admit():
            return limit.refusal()
        return _QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class HardenedAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections answer protocol errors without echoing request bytes,
    and whose listener keeps to ``connection_limit`` when one is given."""

    def __init__(
        self, app: web.Application, *, connection_limit: ConnectionLimit | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._connection_limit = connection_limit

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _QuietServer  # same state, only __call__ differs
        server.connection_limit = self._connection_limit  # type: ignore[attr-defined]
        return server


async def serve_on(
    runner: web.AppRunner, sock: socket.socket, ssl_context: ssl.SSLContext | None = None
) -> int:
    """Set ``runner`` up and serve it on the bound ``sock``; returns the port.

    On failure the runner is cleaned up and the socket closed before the error propagates.
    Shared by the OTLP/HTTP receiver and the ``/metrics`` server.
    """
    await runner.setup()
    try:
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        sock.close()
        raise
    return int(sock.getsockname()[1])
