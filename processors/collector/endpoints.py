"""Listening endpoints: parse ``host:port`` strings and bind loopback-by-default sockets.

Endpoints are written as the OTel Collector writes them (``127.0.0.1:4317``, ``[::1]:4318``,
``localhost:9464``); port ``0`` asks the OS for a free port, which tests use. Binding the socket
ourselves (instead of letting a server library do it) lets the caller read the bound port and
report a clear error when the address is taken.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

_logger = logging.getLogger(__name__)

__all__ = ["Endpoint", "ListenError", "bind_tcp", "ensure_open_files", "parse_endpoint"]


class ListenError(OSError):
    """A receiver or the metrics server could not listen on its endpoint."""


@dataclass(frozen=True)
class Endpoint:
    """A TCP listening address; ``port`` 0 means any free port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def with_port(self, port: int) -> Endpoint:
        """The same host with another port (the bound one)."""
        return Endpoint(self.host, port)


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``host:port`` (IPv6 hosts in brackets); an ``http://`` prefix is tolerated.

    Raises ``ValueError`` naming the rule when ``text`` is not of that shape.
    """
    value = text.strip()
    for scheme in ("http://", "https://"):
        if value.startswith(scheme):
            value = value[len(scheme) :].rstrip("/")
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"endpoint must be host:port (for example 127.0.0.1:4317), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"endpoint port must be in 0..65535, got {port}")
    return Endpoint(host, port)


def bind_tcp(endpoint: Endpoint, *, backlog: int = 512, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket bound to ``endpoint``; raises :class:`ListenError` on failure.

    ``reuse_port`` sets ``SO_REUSEPORT`` so worker processes can listen on the same port (the
    kernel spreads connections over them); off by default so a taken port is an error.
    """
    try:
        infos = socket.getaddrinfo(
            endpoint.host, endpoint.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(f"cannot resolve {endpoint}: {exc.strerror}") from None
    last_error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    reason = last_error.strerror if last_error is not None else "no usable address"
    raise ListenError(f"cannot listen on {endpoint}: {reason}")


def ensure_open_files(wanted: int) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` towards ``wanted`` (never above the hard limit,
    never lowered); returns the soft limit in force and logs a warning when it stays below.

    The receivers' connection limits are only real if the process can hold that many sockets:
    with the usual soft limit of 1024, ``accept`` would fail with ``EMFILE`` long before
    ``limits.max_connections``. Go programs (the OTel Collector among them) raise the soft limit
    to the hard one at start for the same reason; Python does not.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        _logger.warning(
            "spansignals collector: the open-files limit is %d, below the %d the receivers' connection"
            " limits need (limits.max_connections); raise it (ulimit -n) or lower max_connections",
            soft,
            wanted,
        )
    return int(soft) if soft != resource.RLIM_INFINITY else wanted
