"""Senders to one downstream OTLP endpoint (gRPC or HTTP/protobuf), and what an answer means.

A sender sends one :class:`~.queue.Batch` (already-encoded protobuf bytes: no re-encoding here)
and returns an :class:`Attempt` classified as the OTLP specification says:

* gRPC: ``OK`` (with an optional ``partial_success``); retryable ``CANCELLED``,
  ``DEADLINE_EXCEEDED``, ``ABORTED``, ``OUT_OF_RANGE``, ``UNAVAILABLE``, ``DATA_LOSS``, and
  ``RESOURCE_EXHAUSTED`` only when the status carries a ``google.rpc.RetryInfo``; everything else
  (``INVALID_ARGUMENT``, ``UNAUTHENTICATED``, …) is permanent. ``RetryInfo.retry_delay`` is the
  throttling hint.
* HTTP: 2xx (with an optional ``partial_success`` in the body); retryable 429, 502, 503, 504 with
  ``Retry-After`` (seconds or an HTTP date) as the hint; other statuses are permanent.
* A connection error or a timeout of the attempt (``timeout``, default 10 s) is retryable.

``endpoint`` may be ``host:port`` or a URL; ``https://`` (or ``insecure: false``, or a ``tls``
block) means TLS with the system CAs or ``tls.ca_file``, plus a client certificate for mTLS.
For HTTP the endpoint is a base URL and ``/v1/traces``, ``/v1/metrics``, ``/v1/logs`` are appended
(as ``OTEL_EXPORTER_OTLP_ENDPOINT`` works). Header values are secrets: they are never logged.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from .queue import SIGNAL_LOGS, SIGNAL_METRICS, SIGNAL_TRACES, Batch

__all__ = ["Attempt", "GrpcSender", "HttpSender", "Sender", "build_sender", "parse_retry_after"]

_logger = logging.getLogger(__name__)

GRPC_METHODS = {
    SIGNAL_TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    SIGNAL_METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    SIGNAL_LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_RESPONSES: dict[str, tuple[Any, str]] = {
    SIGNAL_TRACES: (ExportTraceServiceResponse, "rejected_spans"),
    SIGNAL_METRICS: (ExportMetricsServiceResponse, "rejected_data_points"),
    SIGNAL_LOGS: (ExportLogsServiceResponse, "rejected_log_records"),
}
_RETRYABLE_GRPC = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class Attempt:
    """The outcome of one send: ``ok`` (downstream took it; ``rejected`` items it refused in a
    partial success), else ``retryable`` with an optional server ``retry_after`` hint."""

    ok: bool
    retryable: bool = False
    retry_after: float | None = None
    rejected: int = 0
    reason: str = ""
    timed_out: bool = False
    """No answer within the exporter's ``timeout`` (retryable): counted and logged by the worker,
    because a downstream that stalls shows up nowhere else but in delivery latency."""


class Sender:
    """Interface: ``await send(batch)`` never raises; ``await close()``."""

    name: str

    async def send(self, batch: Batch) -> Attempt:  # pragma: no cover - interface
        raise NotImplementedError

    async def close(self) -> None:  # pragma: no cover - interface
        return None


def _rejected(signal: str, body: bytes) -> tuple[int, str]:
    response_type, field = _RESPONSES[signal]
    response = response_type()
    try:
        response.ParseFromString(body)
    except DecodeError:
        return 0, ""
    if not response.HasField("partial_success"):
        return 0, ""
    partial = response.partial_success
    return int(getattr(partial, field)), partial.error_message


def _grpc_retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    for key, value in error.trailing_metadata() or ():
        if key != _STATUS_DETAILS_KEY:
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value if isinstance(value, bytes) else value.encode())
        except DecodeError:
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return max(0.0, info.retry_delay.ToNanoseconds() / 1e9)
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if absent."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)  # delta-seconds (a fraction is tolerated)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _tls_context(tls: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=getattr(tls, "ca_file", None))
    if getattr(tls, "cert_file", None):
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def _split_endpoint(endpoint: str) -> tuple[str, str, str]:
    """(scheme or '', host:port, path) of an endpoint string."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        scheme, rest = "", endpoint
    hostport, _, path = rest.partition("/")
    return scheme, hostport, "/" + path if path else ""


def _use_tls(config: Any, scheme: str) -> bool:
    tls = config.tls
    if config.insecure is not None:
        return not config.insecure
    if scheme:
        return scheme == "https"
    return bool(tls.ca_file or tls.cert_file)


class GrpcSender(Sender):
    """OTLP/gRPC, raw bytes through a generic unary call (no re-encoding)."""

    def __init__(self, name: str, config: Any) -> None:
        self.name = name
        scheme, target, _ = _split_endpoint(config.endpoint)
        self._timeout = config.timeout
        self._metadata = tuple((k.lower(), v.get_secret_value()) for k, v in config.headers.items())
        self._compression = (
            grpc.Compression.Gzip if config.compression == "gzip" else grpc.Compression.NoCompression
        )
        options = _keepalive_options(getattr(config, "keepalive", None))
        if _use_tls(config, scheme):
            tls = config.tls
            read = _read_file
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(tls.ca_file),
                private_key=read(tls.key_file),
                certificate_chain=read(tls.cert_file),
            )
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        self._calls = {
            signal: self._channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            for signal, method in GRPC_METHODS.items()
        }

    async def send(self, batch: Batch) -> Attempt:
        try:
            body = await self._calls[batch.signal](
                batch.payload,
                timeout=self._timeout,
                metadata=self._metadata or None,
                compression=self._compression,
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            delay = _grpc_retry_delay(exc)
            reason = f"gRPC {code.name}"
            if code in _RETRYABLE_GRPC or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None):
                # DEADLINE_EXCEEDED is (almost always) our own per-attempt deadline expiring.
                timed_out = code == grpc.StatusCode.DEADLINE_EXCEEDED
                return Attempt(False, retryable=True, retry_after=delay, reason=reason, timed_out=timed_out)
            return Attempt(False, reason=reason)
        except Exception as exc:  # channel closed, cancelled by shutdown, …
            return Attempt(False, retryable=True, reason=type(exc).__name__)
        rejected, message = _rejected(batch.signal, body)
        return Attempt(True, rejected=rejected, reason=message)

    async def close(self) -> None:
        await self._channel.close(grace=None)


class HttpSender(Sender):
    """OTLP/HTTP with ``application/x-protobuf`` bodies, optionally gzip-compressed."""

    def __init__(self, name: str, config: Any) -> None:
        self.name = name
        scheme, hostport, path = _split_endpoint(config.endpoint)
        tls = _use_tls(config, scheme)
        base = f"{'https' if tls else 'http'}://{hostport}{path.rstrip('/')}"
        for suffix in ("/v1/traces", "/v1/metrics", "/v1/logs"):
            base = base.removesuffix(suffix)
        self._urls = {signal: f"{base}/v1/{signal}" for signal in GRPC_METHODS}
        self._ssl: ssl.SSLContext | bool = _tls_context(config.tls) if tls else False
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._gzip = config.compression == "gzip"
        self._headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        self._headers["Content-Type"] = "application/x-protobuf"
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._session: aiohttp.ClientSession | None = None

    async def send(self, batch: Batch) -> Attempt:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=True)
        body = gzip.compress(batch.payload, compresslevel=5) if self._gzip else batch.payload
        try:
            async with self._session.post(
                self._urls[batch.signal], data=body, headers=self._headers, ssl=self._ssl
            ) as response:
                content = await response.read()
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            timed_out = isinstance(exc, asyncio.TimeoutError)  # aiohttp's timeouts derive from it
            return Attempt(False, retryable=True, reason=type(exc).__name__, timed_out=timed_out)
        if 200 <= status < 300:
            rejected, message = _rejected(batch.signal, content)
            return Attempt(True, rejected=rejected, reason=message)
        if status in _RETRYABLE_HTTP:
            return Attempt(False, retryable=True, retry_after=retry_after, reason=f"HTTP {status}")
        return Attempt(False, reason=f"HTTP {status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _keepalive_options(keepalive: Any) -> list[tuple[str, int]]:
    """Channel arguments that find a dead connection while a send is in flight.

    Without them, a connection whose peer vanished without a FIN or RST (a crashed host, a
    middlebox that dropped its state) keeps every attempt waiting for its whole ``timeout``, and
    the retry goes to the same dead connection again: grpc-core only gives up when an outstanding
    ping times out (60 s by default) or TCP does (minutes). ``grpc.http2.ping_timeout_ms`` matters
    as much as the keepalive pair: a keepalive ping is not sent while another ping (grpc's
    bandwidth probe) is outstanding, so that one's timeout is what closes the connection. Pings go
    only while a call is in flight (``keepalive_permit_without_calls`` 0), as the OTel Collector's
    exporters do, so servers that police idle pings are not provoked.
    """
    if keepalive is None or keepalive.time <= 0:
        return []
    timeout_ms = max(1, int(keepalive.timeout * 1000))
    return [
        ("grpc.keepalive_time_ms", max(1, int(keepalive.time * 1000))),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        ("grpc.keepalive_permit_without_calls", 0),
    ]


def _read_file(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def build_sender(name: str, config: Any) -> Sender:
    """The sender for an ``OtlpExporterConfig``."""
    if config.protocol == "grpc":
        return GrpcSender(name, config)
    return HttpSender(name, config)
