"""aiohttp's HTTP/1 layer, hardened: protocol errors answered with fixed texts, nothing echoed.

aiohttp answers a request it cannot parse (a header line over ``max_field_size``, too many
headers, a malformed request line, invalid bytes) itself, before any middleware runs, with a body
that quotes the offending bytes (``Got more than 16384 bytes when reading: b'<header value>...'``)
and logs the exception with its traceback at ERROR. Header values are exactly where credentials
live, so :class:`HardenedAppRunner` swaps in a request handler whose ``handle_error`` answers with
a fixed text per status (``431`` for a header or request line over the limit, ``400`` otherwise),
closes the connection, and logs only the exception's class at DEBUG.

Used by the OTLP/HTTP receiver and the ``/metrics`` server.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

__all__ = ["HardenedAppRunner", "serve_on"]

_logger = logging.getLogger(__name__)

_TEXTS = {
    400: "malformed HTTP request",
    413: "request too large",
    431: "request header fields too large",
    500: "internal error",
}


class _QuietRequestHandler(RequestHandler):
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
    def __call__(self) -> RequestHandler:
        return _QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class HardenedAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections answer protocol errors without echoing request bytes."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _QuietServer  # same state, only __call__ differs
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
