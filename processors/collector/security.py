"""Locking the receivers down: bearer-token auth and TLS / mTLS (RELIABILITY.md promise 6).

* :class:`BearerAuth` checks ``Authorization: Bearer <token>`` with ``hmac.compare_digest`` (a
  constant-time compare, so response timing does not reveal how much of a guess was right). The
  scheme is case-insensitive, as RFC 6750 allows. The token comes from the configuration, where it
  is usually ``${ENV_VAR}``; it is never logged or echoed.
* :func:`auth_middleware` puts it in front of an aiohttp application: ``401`` with
  ``WWW-Authenticate: Bearer`` and a ``google.rpc.Status`` ``UNAUTHENTICATED`` body (in the request's
  encoding on OTLP paths) when the header is missing or wrong.
* :class:`BearerAuthInterceptor` does the same for every gRPC method (traces, metrics, logs):
  ``UNAUTHENTICATED``.
* :class:`ServerTls` holds certificate, key and an optional client CA (mTLS: a client certificate
  signed by it is then required) and builds both the ``ssl.SSLContext`` for aiohttp and the
  ``grpc.ServerCredentials`` for grpc. Files are read when the receiver starts; a missing or bad
  file is a :class:`TlsConfigError` naming the file, never a traceback.
"""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from google.rpc import code_pb2

from .refusals import http_status_response, refuse_grpc

__all__ = ["BearerAuth", "BearerAuthInterceptor", "ServerTls", "TlsConfigError", "auth_middleware"]

_UNAUTHENTICATED_MESSAGE = "missing or invalid bearer token"


class TlsConfigError(ValueError):
    """A TLS certificate, key or CA file cannot be read or does not fit."""


class BearerAuth:
    """Accepts ``Authorization`` values ``Bearer <token>`` (any scheme case) for one token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("bearer token must not be empty")
        self._token = token.encode()

    def check(self, header: str | bytes | None) -> bool:
        """True when ``header`` carries the configured token (constant-time compare)."""
        if not header:
            return False
        raw = header.encode("utf-8", "replace") if isinstance(header, str) else header
        scheme, _, presented = raw.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(presented.strip(), self._token)

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(auth: BearerAuth, *, exempt: frozenset[str] = frozenset()) -> Any:
    """aiohttp middleware: 401 unless the request carries the token (paths in ``exempt`` pass)."""

    @web.middleware
    async def _require_bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt or auth.check(request.headers.get("Authorization")):
            return await handler(request)
        headers = {"WWW-Authenticate": 'Bearer realm="spansignals"'}
        if request.path.startswith("/v1/"):
            as_json = request.content_type == "application/json"
            return http_status_response(
                401, code_pb2.UNAUTHENTICATED, _UNAUTHENTICATED_MESSAGE, as_json, headers
            )
        return web.Response(status=401, text=_UNAUTHENTICATED_MESSAGE + "\n", headers=headers)

    return _require_bearer


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every gRPC call without the token with ``UNAUTHENTICATED``."""

    def __init__(self, auth: BearerAuth) -> None:
        self._auth = auth
        self._deny = grpc.unary_unary_rpc_method_handler(self._unauthenticated)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization" and self._auth.check(value):
                return await continuation(handler_call_details)
        return self._deny

    @staticmethod
    async def _unauthenticated(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        # not context.abort(): its error would tie the request body into a reference cycle that
        # only a garbage collection frees, and a flood of such calls would pile up (refusals.py)
        return refuse_grpc(context, grpc.StatusCode.UNAUTHENTICATED, _UNAUTHENTICATED_MESSAGE)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read TLS {what} {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class ServerTls:
    """Server certificate chain and key (PEM files); ``client_ca_file`` turns on mTLS."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by ``client_ca_file``."""
        return self.client_ca_file is not None

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context (TLS 1.2+) for aiohttp."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(
                f"cannot load TLS certificate {self.cert_file} with key {self.key_file}: {_reason(exc)}"
            ) from None
        if self.client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise TlsConfigError(
                    f"cannot load TLS client CA {self.client_ca_file}: {_reason(exc)}"
                ) from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials for ``add_secure_port``; mTLS requires and verifies client certificates."""
        self.ssl_context()  # validates the files with a clear error before grpc sees them
        pair = (_read(self.key_file, "key"), _read(self.cert_file, "certificate"))
        ca = _read(self.client_ca_file, "client CA") if self.client_ca_file is not None else None
        return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or "invalid PEM"
    if isinstance(exc, OSError):
        return exc.strerror or "unreadable"
    return type(exc).__name__
