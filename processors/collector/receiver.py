"""OTLP trace receivers: gRPC (``grpc.aio``) and HTTP ``/v1/traces`` (aiohttp).

Both hand a decoded ``ExportTraceServiceRequest`` to a :class:`~.pipeline.TracePipeline` and answer
with an ``ExportTraceServiceResponse`` (empty, or with ``partial_success`` when invalid spans were
removed, see :mod:`.validation`). Error mapping follows the OTLP specification and RELIABILITY.md;
every path is explicit and none answers ``UNKNOWN`` or ``INTERNAL``:

========================================  =================  ==========================
case                                      HTTP               gRPC
========================================  =================  ==========================
body is not a valid request               400                ``INVALID_ARGUMENT``
body over the limit after decompression   413                ``RESOURCE_EXHAUSTED``
content type other than protobuf/JSON     415                (n/a)
``Content-Encoding`` other than gzip      415                (grpc negotiates itself)
method other than POST                    405                (n/a)
path other than ``/v1/traces``            404                ``UNIMPLEMENTED``
invalid spans inside a valid request      200 + partial      ``OK`` + ``partial_success``
missing or wrong bearer token             401                ``UNAUTHENTICATED``
body not received within ``read_timeout``   408                (grpc: deadline/handshake)
headers / metadata over the limit         431                ``RESOURCE_EXHAUSTED``
unparsable HTTP (bad request line, ...)   400 (fixed text)   (n/a)
over the memory or in-flight budget       503 + Retry-After  ``UNAVAILABLE`` + RetryInfo
queue full (forwarding, :class:`Refused`)  503 + Retry-After  ``UNAVAILABLE`` + RetryInfo
new connection over ``max_connections``    503 + Retry-After  closed at accept
calls over ``max_concurrent_streams``       (n/a)              ``REFUSED_STREAM``
unexpected error (a bug; logged)          503 + Retry-After  ``UNAVAILABLE`` + RetryInfo
========================================  =================  ==========================

Slow clients: a connection must send a complete request head within ``read_timeout`` (aiohttp's
keep-alive timer, armed at connection start) and its body within ``read_timeout`` after that;
grpc's handshake timeout is set to the same value.

HTTP error bodies are a ``google.rpc.Status`` in the request's encoding, as OTLP/HTTP asks;
messages never carry tracebacks or request content.

The gRPC service is registered with a generic handler that receives the raw request bytes rather
than through the generated servicer: the bytes are what issue #6 forwards downstream without
re-encoding, and parsing them here keeps the error answer under our control.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from aiohttp import web
from google.rpc import code_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ..families import HistogramFamily
from .admission import AdmissionControl
from .decoding import (
    DEFAULT_MAX_REQUEST_BYTES,
    RequestDecodeError,
    RequestTooLarge,
    gunzip_limited,
    parse_json_request,
)
from .endpoints import Endpoint, ListenError, bind_tcp
from .http_protocol import ConnectionLimit, HardenedAppRunner, serve_on
from .pipeline import IngestResult, TracePipeline
from .refusals import Refused, http_status_response, http_unavailable, refuse_grpc, refuse_grpc_unavailable
from .security import BearerAuth, BearerAuthInterceptor, ServerTls, auth_middleware

__all__ = [
    "DEFAULT_MAX_CONCURRENT_STREAMS",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_READ_TIMEOUT_S",
    "TRACES_PATH",
    "TRACE_SERVICE",
    "Forward",
    "OtlpGrpcReceiver",
    "OtlpHttpReceiver",
    "ReceiverSettings",
    "export_response",
    "request_duration_family",
]

_logger = logging.getLogger(__name__)

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
TRACES_PATH = "/v1/traces"
DEFAULT_READ_TIMEOUT_S = 30.0
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_MAX_CONCURRENT_STREAMS = 100
REQUEST_DURATION_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()
_EMPTY_RESPONSE_JSON = b"{}"
_BUG_MESSAGE = "temporary collector error (logged); retry later"

Forward = Callable[[ExportTraceServiceRequest | None, bytes, IngestResult], Awaitable[None]]
"""Called after derivation with the request, the received (decoded) bytes and what ingest did;
forwards ``bytes`` when ``not result.modified`` and re-encodes the request otherwise (the request
is ``None`` when the native path read the bytes without upb: they are then never modified). May raise
:class:`~.refusals.Refused` (queue full), answered with a retry hint."""


def export_response(result: IngestResult, as_json: bool = False) -> bytes:
    """The ``ExportTraceServiceResponse`` body for ``result``: empty, or with ``partial_success``."""
    if not result.rejected:
        return _EMPTY_RESPONSE_JSON if as_json else _EMPTY_RESPONSE
    if as_json:  # proto3 JSON: int64 as a string
        partial = {"rejectedSpans": str(result.rejected), "errorMessage": result.error_message}
        return json.dumps({"partialSuccess": partial}).encode()
    response = ExportTraceServiceResponse()
    response.partial_success.rejected_spans = result.rejected
    response.partial_success.error_message = result.error_message
    return response.SerializeToString()


@dataclass(frozen=True)
class ReceiverSettings:
    """What the OTLP gRPC and HTTP receivers share: built once (``Collector`` does it from the
    ``collector`` block) and handed to both, so a limit cannot be applied to one and forgotten on
    the other.

    ``max_request_bytes`` bounds a message after decompression; ``admission`` turns memory
    pressure into retryable refusals (``None``: no budget); ``auth`` requires a bearer token on
    every call; ``reuse_port`` lets worker processes share the port (SO_REUSEPORT);
    ``max_header_bytes`` bounds the request line and each header (HTTP) or the metadata (gRPC);
    ``read_timeout_s`` bounds receiving a request head and then its body (HTTP) or the TLS/HTTP2
    handshake (gRPC); ``shutdown_timeout_s`` is how long stopping lets in-flight requests finish.

    ``max_connections`` (``None``: no cap) bounds the open connections of each receiver: over it
    the HTTP receiver answers a new connection with 503 + ``Retry-After`` and closes it (counted),
    and grpc-core closes a new connection as soon as it is accepted (its channel argument
    ``grpc.max_allowed_incoming_connections``; clients see ``UNAVAILABLE``, and grpc tells the
    application nothing, so those are not counted). ``max_concurrent_streams`` (gRPC only;
    ``None``: grpc's default, unlimited) is the HTTP/2 ``SETTINGS_MAX_CONCURRENT_STREAMS`` of each
    connection: calls beyond it are reset with ``REFUSED_STREAM`` (``UNAVAILABLE``, never
    processed, so safe to retry) or wait in clients that honour the setting.
    """

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    admission: AdmissionControl | None = None
    auth: BearerAuth | None = None
    reuse_port: bool = False
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    shutdown_timeout_s: float = 5.0
    max_connections: int | None = DEFAULT_MAX_CONNECTIONS
    max_concurrent_streams: int | None = DEFAULT_MAX_CONCURRENT_STREAMS
    request_duration: HistogramFamily | None = None
    """Where the receivers time each trace request (:func:`request_duration_family`)."""

    def admission_control(self) -> AdmissionControl:
        """``admission``, or one without budgets when none was given."""
        if self.admission is not None:
            return self.admission
        return AdmissionControl(max_inflight_bytes=None, memory_limit_bytes=None)


def request_duration_family() -> HistogramFamily:
    """``spansignals_receiver_request_duration_seconds{transport}``: from the handler's start to
    its answer (HTTP: reading the body, then decoding, deriving, queueing; gRPC: the body has
    arrived already). Long acknowledgements with short durations here waited outside the
    collector's code: in grpc-core, the network or the client."""
    return HistogramFamily(
        "spansignals.receiver.request.duration",
        "Time the OTLP trace receivers spent on each request, from the handler's start to its answer.",
        "s",
        ("transport",),
        REQUEST_DURATION_BOUNDS,
        max_series=4,
    )


class OtlpGrpcReceiver:
    """``TraceService/Export`` on ``endpoint`` over gRPC (TLS when ``tls`` is given).

    ``settings`` (:class:`ReceiverSettings`) are shared with the HTTP receiver; over
    ``max_request_bytes`` grpc answers ``RESOURCE_EXHAUSTED``. ``extra_handlers`` registers the
    other signals' services behind the same auth and limits. Must be started from a running event
    loop.
    """

    transport = "grpc"

    def __init__(
        self,
        pipeline: TracePipeline,
        endpoint: Endpoint,
        settings: ReceiverSettings | None = None,
        *,
        tls: ServerTls | None = None,
        extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    ) -> None:
        self._pipeline = pipeline
        self.endpoint = endpoint
        self.settings = settings = settings or ReceiverSettings()
        self._admission = settings.admission_control()
        self._tls = tls
        self._extra_handlers = tuple(extra_handlers)
        self.forward: Forward | None = None
        self._server: grpc.aio.Server | None = None

    async def start(self) -> Endpoint:
        """Listen and return the bound endpoint (the real port when ``endpoint.port`` is 0)."""
        credentials = self._tls.grpc_credentials() if self._tls is not None else None
        settings = self.settings
        options: list[tuple[str, int]] = [
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.max_metadata_size", settings.max_header_bytes),
            ("grpc.server_handshake_timeout_ms", int(settings.read_timeout_s * 1000)),
            # grpc turns SO_REUSEPORT on by default, which lets a second process silently
            # share a port that is already taken: only worker processes (--workers) want it.
            ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
        ]
        if settings.max_connections is not None:  # per listener; over it grpc-core closes at accept
            options.append(("grpc.max_allowed_incoming_connections", settings.max_connections))
        if settings.max_concurrent_streams is not None:
            options.append(("grpc.max_concurrent_streams", settings.max_concurrent_streams))
        server = grpc.aio.server(
            interceptors=[BearerAuthInterceptor(settings.auth)] if settings.auth is not None else None,
            options=options,
        )
        handler = grpc.unary_unary_rpc_method_handler(self._export)  # raw bytes in and out
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(TRACE_SERVICE, {"Export": handler}), *self._extra_handlers)
        )
        try:
            address = str(self.endpoint)
            port = (
                server.add_secure_port(address, credentials)
                if credentials is not None
                else server.add_insecure_port(address)
            )
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
        durations = self.settings.request_duration
        if durations is None:
            return await self._handle_export(body, context)
        started = time.perf_counter()
        try:
            return await self._handle_export(body, context)
        finally:
            durations.record((self.transport,), time.perf_counter() - started)

    async def _handle_export(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            with self._admission.hold(len(body)):
                received = self._pipeline.receive(body)
                result = self._pipeline.ingest_received(received, self.transport)
                if self.forward is not None:
                    await self.forward(received.request, body, result)
            return export_response(result)
        except Refused as exc:
            # Without its traceback: this local outlives the block, and the traceback holds this
            # frame (the body, the parsed request), a cycle only a full GC pass would free.
            refusal = exc.with_traceback(None)
        except RequestDecodeError as exc:
            return refuse_grpc(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception:  # a bug: answered retryably, never UNKNOWN/INTERNAL with our text
            _logger.exception("spansignals collector: unexpected error in TraceService/Export")
            refusal = Refused(_BUG_MESSAGE)
        return refuse_grpc_unavailable(context, refusal.message, refusal.retry_after_s)


class OtlpHttpReceiver:
    """``POST /v1/traces`` on ``endpoint``, protobuf or JSON, optionally gzip-compressed.

    ``settings`` (:class:`ReceiverSettings`) are shared with the gRPC receiver: the body is
    bounded after decompression, the request head and then the body must each arrive within
    ``read_timeout_s``, and :meth:`stop` lets in-flight requests finish for
    ``shutdown_timeout_s``. ``extra_routes`` adds ``(path, handler)`` POST routes (the other
    signals) behind the same auth and limits.
    """

    transport = "http"

    def __init__(
        self,
        pipeline: TracePipeline,
        endpoint: Endpoint,
        settings: ReceiverSettings | None = None,
        *,
        tls: ServerTls | None = None,
        extra_routes: Sequence[tuple[str, Handler]] = (),
    ) -> None:
        self._pipeline = pipeline
        self.endpoint = endpoint
        self.settings = settings = settings or ReceiverSettings()
        self._max_request_bytes = settings.max_request_bytes
        self._admission = settings.admission_control()
        self._tls = tls
        self._extra_routes = tuple(extra_routes)
        self.connection_limit: ConnectionLimit | None = None
        self.forward: Forward | None = None
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        """The aiohttp application (exposed so tests can drive it without a socket)."""
        middlewares = [_no_tracebacks]
        if self.settings.auth is not None:
            middlewares.insert(0, auth_middleware(self.settings.auth))
        app = web.Application(client_max_size=self._max_request_bytes, middlewares=middlewares)
        app.router.add_post(TRACES_PATH, self._traces)
        for path, handler in self._extra_routes:
            app.router.add_post(path, handler)
        return app

    async def start(self) -> Endpoint:
        """Listen and return the bound endpoint (the real port when ``endpoint.port`` is 0)."""
        settings = self.settings
        ssl_context = self._tls.ssl_context() if self._tls is not None else None
        sock = bind_tcp(self.endpoint, reuse_port=settings.reuse_port)
        # Decompression is ours (gunzip_limited): aiohttp's would inflate before the size check.
        # keepalive_timeout is armed at connection start and closes a connection that has not
        # completed a request head by then (slowloris), as well as idle keep-alive connections.
        limit = (
            ConnectionLimit(
                settings.max_connections,
                retry_after_s=self._admission.retry_after_s,
                on_refused=self._admission.count_connection_refusal,
            )
            if settings.max_connections is not None
            else None
        )
        runner = HardenedAppRunner(
            self.make_app(),
            connection_limit=limit,
            auto_decompress=False,
            access_log=None,
            shutdown_timeout=settings.shutdown_timeout_s,
            handler_cancellation=True,
            keepalive_timeout=settings.read_timeout_s,
            max_line_size=settings.max_header_bytes,
            max_field_size=settings.max_header_bytes,
            max_headers=128,
            lingering_time=min(2.0, settings.read_timeout_s),
        )
        port = await serve_on(runner, sock, ssl_context)
        self._runner = runner
        self.connection_limit = limit
        self.endpoint = self.endpoint.with_port(port)
        return self.endpoint

    async def stop(self) -> None:
        """Stop listening; in-flight requests get up to ``shutdown_timeout`` seconds."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def read_body(self, request: web.Request) -> bytes:
        """The decoded body of an OTLP/HTTP request (protobuf or JSON, identity or gzip), within
        the size limit and read timeout; the caller reads the encoding from ``request.content_type``.

        Raises :class:`_Unsupported` (415), :class:`RequestTooLarge`, :class:`RequestDecodeError`,
        :class:`Refused` or :class:`_ReadTimeout`; the middleware maps each. Shared by every
        signal's route.
        """
        content_type = request.content_type
        if content_type not in (_PROTOBUF, _JSON):
            # The header's value is not echoed: every request field may carry a secret.
            raise _Unsupported(_plain_error(415, f"unsupported Content-Type: use {_PROTOBUF} or {_JSON}"))
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip"):
            message = "unsupported Content-Encoding: use gzip"
            raise _Unsupported(
                http_status_response(415, code_pb2.INVALID_ARGUMENT, message, content_type == _JSON)
            )
        declared = request.content_length
        if declared is not None and declared > self._max_request_bytes:
            raise RequestTooLarge(self._max_request_bytes)
        self._admission.check(declared or 0)
        try:
            # asyncio.wait_for, not asyncio.timeout: the package supports Python 3.10.
            body = await asyncio.wait_for(request.read(), self.settings.read_timeout_s)
        except web.HTTPRequestEntityTooLarge:
            raise RequestTooLarge(self._max_request_bytes) from None
        except (TimeoutError, asyncio.TimeoutError):  # distinct classes before Python 3.11
            raise _ReadTimeout from None
        if encoding == "gzip":
            return gunzip_limited(body, self._max_request_bytes)
        if len(body) > self._max_request_bytes:
            raise RequestTooLarge(self._max_request_bytes)
        return body

    async def _traces(self, request: web.Request) -> web.StreamResponse:
        durations = self.settings.request_duration
        if durations is None:
            return await self._handle_traces(request)
        started = time.perf_counter()
        try:
            return await self._handle_traces(request)
        finally:
            durations.record((self.transport,), time.perf_counter() - started)

    async def _handle_traces(self, request: web.Request) -> web.StreamResponse:
        body = await self.read_body(request)
        as_json = request.content_type == _JSON
        with self._admission.hold(len(body)):
            export: ExportTraceServiceRequest | None
            if as_json:
                export = parse_json_request(body)
                result = self._pipeline.ingest(export, self.transport, body_bytes=len(body))
            else:
                received = self._pipeline.receive(body)
                export = received.request  # None when the native path read it without upb
                result = self._pipeline.ingest_received(received, self.transport)
            if self.forward is not None:
                await self.forward(export, body, result)
        return web.Response(
            status=200, body=export_response(result, as_json), content_type=_JSON if as_json else _PROTOBUF
        )


class _ReadTimeout(Exception):
    """The request body did not arrive within ``read_timeout``."""


class _Unsupported(Exception):
    """A Content-Type or Content-Encoding the OTLP routes do not take; ``response`` is the 415."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _no_tracebacks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every error to its status explicitly; anything unexpected to a retryable 503, logged here only."""
    as_json = request.content_type == _JSON
    try:
        return await handler(request)
    except _Unsupported as exc:
        return exc.response
    except Refused as exc:
        return http_unavailable(exc.message, exc.retry_after_s, as_json)
    except RequestTooLarge as exc:
        return http_status_response(413, code_pb2.RESOURCE_EXHAUSTED, str(exc), as_json)
    except RequestDecodeError as exc:
        return http_status_response(400, code_pb2.INVALID_ARGUMENT, str(exc), as_json)
    except _ReadTimeout:
        message = "request body not received within the read timeout"
        response = http_status_response(408, code_pb2.DEADLINE_EXCEEDED, message, as_json)
        response.force_close()  # do not linger reading the rest of a slow body
        return response
    except web.HTTPException:
        raise  # aiohttp's own 404/405 (with an Allow header) carry no request content
    except Exception:
        _logger.exception(
            "spansignals collector: unexpected error handling %s %s", request.method, request.path
        )
        return http_unavailable(_BUG_MESSAGE, 1.0, as_json)


def _plain_error(http_status: int, message: str) -> web.Response:
    return web.Response(status=http_status, text=message + "\n")
