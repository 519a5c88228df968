"""Retryable refusals: how the receivers say "not now, try again in N seconds".

RELIABILITY.md promise 2: overload is pushed back, never dropped silently, and always with a hint a
spec-compliant OTLP client honours (protocol/exporter.md, "Throttling"):

* gRPC: ``UNAVAILABLE`` with a ``google.rpc.RetryInfo`` detail in ``grpc-status-details-bin``
  (what ``grpcio-status`` would send, built here without that extra dependency).
* HTTP: ``503 Service Unavailable`` with ``Retry-After: <seconds>`` and a ``google.rpc.Status``
  body in the request's encoding.

Used by the memory limit (:mod:`.admission`) and by the forwarding queue when it is full. Messages
are fixed phrases chosen by the caller; they never quote the request.
"""

from __future__ import annotations

import json
import math

import grpc
from aiohttp import web
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

__all__ = [
    "DEFAULT_RETRY_AFTER_S",
    "Refused",
    "http_status_response",
    "http_unavailable",
    "refuse_grpc",
    "refuse_grpc_unavailable",
    "retry_status_details",
]

DEFAULT_RETRY_AFTER_S = 1.0
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"


class Refused(Exception):
    """A request the collector cannot take right now (retryable); receivers map it to
    ``UNAVAILABLE`` + ``RetryInfo`` or 503 + ``Retry-After``."""

    def __init__(self, message: str, retry_after_s: float = DEFAULT_RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


def retry_status_details(message: str, retry_after_s: float) -> bytes:
    """A serialized ``google.rpc.Status`` (``UNAVAILABLE``) carrying a ``RetryInfo`` detail."""
    seconds = max(0.0, retry_after_s)
    whole = int(seconds)
    delay = duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[detail]).SerializeToString()


def refuse_grpc_unavailable(
    context: grpc.aio.ServicerContext, message: str, retry_after_s: float = DEFAULT_RETRY_AFTER_S
) -> bytes:
    """Set the call's status to ``UNAVAILABLE`` with ``RetryInfo(retry_delay=retry_after_s)``; the
    handler returns what this returns (grpc sends no message with a non-OK status).

    Not ``context.abort()``: grpc keeps the ``AbortError`` it raises on the call's state, and its
    traceback holds the handler's frames (the request body, the parsed request) in a reference
    cycle that only the garbage collector frees. Under overload every refused request left one,
    and with the collector's rare young collections (``gc_tuning``) they piled up to hundreds of
    MB (``benchmarks/collector_queue_memory.py``)."""
    context.set_trailing_metadata(((_STATUS_DETAILS_KEY, retry_status_details(message, retry_after_s)),))
    return refuse_grpc(context, grpc.StatusCode.UNAVAILABLE, message)


def refuse_grpc(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> bytes:
    """End the call with ``code`` and ``message`` without raising (see
    :func:`refuse_grpc_unavailable`); the handler returns the result."""
    context.set_code(code)
    context.set_details(message)
    return b""


def http_status_response(
    http_status: int, code: int, message: str, as_json: bool, headers: dict[str, str] | None = None
) -> web.Response:
    """An OTLP/HTTP error: ``google.rpc.Status`` in the request's encoding (JSON or protobuf)."""
    if as_json:
        body = json.dumps({"code": code, "message": message}).encode()
        return web.Response(status=http_status, body=body, content_type=_JSON, headers=headers)
    status = status_pb2.Status(code=code, message=message)
    return web.Response(
        status=http_status, body=status.SerializeToString(), content_type=_PROTOBUF, headers=headers
    )


def http_unavailable(message: str, retry_after_s: float, as_json: bool) -> web.Response:
    """``503`` with ``Retry-After`` in whole seconds (rounded up, at least 1)."""
    retry_after = str(max(1, math.ceil(retry_after_s)))
    return http_status_response(503, code_pb2.UNAVAILABLE, message, as_json, {"Retry-After": retry_after})
