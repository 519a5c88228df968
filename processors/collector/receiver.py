"""OTLP trace receivers: gRPC (``grpc.aio``) and HTTP ``/v1/traces`` (aiohttp).

Both hand a decoded ``ExportTraceServiceRequest`` to a :class:`~.pipeline.TracePipeline` and answer
with an empty ``ExportTraceServiceResponse``. Error mapping follows the OTLP specification and
RELIABILITY.md:

========================================  =================  ==========================
case                                      HTTP               gRPC
========================================  =================  ==========================
body is not a valid request               400                ``INVALID_ARGUMENT``
body over the limit after decompression   413                ``RESOURCE_EXHAUSTED``
content type other than protobuf/JSON     415                (n/a)
``Content-Encoding`` other than gzip      415                (grpc negotiates itself)
method other than POST                    405                (n/a)
path other than ``/v1/traces``            404                ``UNIMPLEMENTED``
========================================  =================  ==========================

HTTP error bodies are a ``google.rpc.Status`` in the request's encoding, as OTLP/HTTP asks;
messages never carry tracebacks or request content.

The gRPC service is registered with a generic handler that receives the raw request bytes rather
than through the generated servicer: the bytes are what issue #6 forwards downstream without
re-encoding, and parsing them here keeps the error answer under our control.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .decoding import (
    DEFAULT_MAX_REQUEST_BYTES,
    RequestDecodeError,
    RequestTooLarge,
    gunzip_limited,
    parse_json_request,
    parse_protobuf_request,
)
from .endpoints import Endpoint, ListenError, bind_tcp
from .pipeline import TracePipeline

__all__ = [
    "TRACES_PATH",
    "TRACE_SERVICE",
    "OtlpGrpcReceiver",
    "OtlpHttpReceiver",
]

_logger = logging.getLogger(__name__)

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
TRACES_PATH = "/v1/traces"

_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()
_EMPTY_RESPONSE_JSON = b"{}"


class OtlpGrpcReceiver:
    """``TraceService/Export`` on ``endpoint`` over plaintext gRPC.

    ``max_request_bytes`` (default 64 MiB) bounds a message after decompression; grpc answers
    ``RESOURCE_EXHAUSTED`` above it. Must be started from a running event loop.
    """

    transport = "grpc"

    def __init__(
        self,
        pipeline: TracePipeline,
        endpoint: Endpoint,
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        self._pipeline = pipeline
        self.endpoint = endpoint
        self._max_request_bytes = max_request_bytes
        self._server: grpc.aio.Server | None = None

    async def start(self) -> Endpoint:
        """Listen and return the bound endpoint (the real port when ``endpoint.port`` is 0)."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max_request_bytes),
                # grpc turns SO_REUSEPORT on by default, which lets a second process silently
                # share a port that is already taken. Off until worker processes need it (#6).
                ("grpc.so_reuseport", 0),
            ]
        )
        handler = grpc.unary_unary_rpc_method_handler(self._export)  # raw bytes in and out
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(TRACE_SERVICE, {"Export": handler}),)
        )
        try:
            port = server.add_insecure_port(str(self.endpoint))
        except RuntimeError:
            port = 0
        if port == 0:
            raise ListenError(f"cannot listen on {self.endpoint} (OTLP gRPC): address unavailable or in use")
        await server.start()
        self._server = server
        self.endpoint = self.endpoint.with_port(port)
        return self.endpoint

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting calls and let in-flight ones finish for up to ``grace`` seconds."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def _export(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            request = parse_protobuf_request(body)
            self._pipeline.consume(request, self.transport)
            return _EMPTY_RESPONSE
        except RequestDecodeError as exc:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except Exception:  # grpc would otherwise answer UNKNOWN with the exception text
            _logger.exception("spansignals collector: unexpected error in TraceService/Export")
            code, message = grpc.StatusCode.INTERNAL, "internal error (logged by the collector)"
        await context.abort(code, message)  # raises
        return b""


class OtlpHttpReceiver:
    """``POST /v1/traces`` on ``endpoint``, protobuf or JSON, optionally gzip-compressed.

    ``max_request_bytes`` (default 64 MiB) bounds the body after decompression;
    ``shutdown_timeout`` (default 5 s) is how long :meth:`stop` lets in-flight requests finish.
    """

    transport = "http"

    def __init__(
        self,
        pipeline: TracePipeline,
        endpoint: Endpoint,
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self._pipeline = pipeline
        self.endpoint = endpoint
        self._max_request_bytes = max_request_bytes
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        """The aiohttp application (exposed so tests can drive it without a socket)."""
        app = web.Application(client_max_size=self._max_request_bytes, middlewares=[_no_tracebacks])
        app.router.add_post(TRACES_PATH, self._traces)
        return app

    async def start(self) -> Endpoint:
        """Listen and return the bound endpoint (the real port when ``endpoint.port`` is 0)."""
        sock = bind_tcp(self.endpoint)
        # Decompression is ours (gunzip_limited): aiohttp's would inflate before the size check.
        runner = web.AppRunner(
            self.make_app(), auto_decompress=False, access_log=None, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._runner = runner
        self.endpoint = self.endpoint.with_port(sock.getsockname()[1])
        return self.endpoint

    async def stop(self) -> None:
        """Stop listening; in-flight requests get up to ``shutdown_timeout`` seconds."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _traces(self, request: web.Request) -> web.StreamResponse:
        content_type = request.content_type
        if content_type not in (_PROTOBUF, _JSON):
            # The header's value is not echoed: every request field may carry a secret.
            return _plain_error(415, f"unsupported Content-Type: use {_PROTOBUF} or {_JSON}")
        as_json = content_type == _JSON
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip"):
            return _status_error(
                415, code_pb2.INVALID_ARGUMENT, "unsupported Content-Encoding: use gzip", as_json
            )
        declared = request.content_length
        if declared is not None and declared > self._max_request_bytes:
            raise RequestTooLarge(self._max_request_bytes)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RequestTooLarge(self._max_request_bytes) from None
        if encoding == "gzip":
            body = gunzip_limited(body, self._max_request_bytes)
        elif len(body) > self._max_request_bytes:
            raise RequestTooLarge(self._max_request_bytes)
        export: ExportTraceServiceRequest = (
            parse_json_request(body) if as_json else parse_protobuf_request(body)
        )
        self._pipeline.consume(export, self.transport)
        if as_json:
            return web.Response(status=200, body=_EMPTY_RESPONSE_JSON, content_type=_JSON)
        return web.Response(status=200, body=_EMPTY_RESPONSE, content_type=_PROTOBUF)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _no_tracebacks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map decode errors to 400/413 and anything unexpected to a bare 500, logged here only."""
    as_json = request.content_type == _JSON
    try:
        return await handler(request)
    except RequestTooLarge as exc:
        return _status_error(413, code_pb2.RESOURCE_EXHAUSTED, str(exc), as_json)
    except RequestDecodeError as exc:
        return _status_error(400, code_pb2.INVALID_ARGUMENT, str(exc), as_json)
    except web.HTTPException:
        raise  # aiohttp's own 404/405 (with an Allow header) carry no request content
    except Exception:
        _logger.exception(
            "spansignals collector: unexpected error handling %s %s", request.method, request.path
        )
        return _plain_error(500, "internal error (logged by the collector)")


def _status_error(http_status: int, code: int, message: str, as_json: bool) -> web.Response:
    if as_json:
        body = json.dumps({"code": code, "message": message}).encode()
        return web.Response(status=http_status, body=body, content_type=_JSON)
    status = status_pb2.Status(code=code, message=message)
    return web.Response(status=http_status, body=status.SerializeToString(), content_type=_PROTOBUF)


def _plain_error(http_status: int, message: str) -> web.Response:
    return web.Response(status=http_status, text=message + "\n")
