"""Listening endpoints: host:port parsing and socket binding."""

from __future__ import annotations

import socket

import pytest

from spansignals.processors.collector.endpoints import Endpoint, ListenError, bind_tcp, parse_endpoint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:4317", Endpoint("127.0.0.1", 4317)),
        ("localhost:0", Endpoint("localhost", 0)),
        ("[::1]:4318", Endpoint("::1", 4318)),
        ("http://127.0.0.1:9464/", Endpoint("127.0.0.1", 9464)),
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint) -> None:
    """host:port, bracketed IPv6 and a tolerated http:// prefix parse to an Endpoint."""
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["4317", "127.0.0.1", "127.0.0.1:port", ":4317", "127.0.0.1:70000"])
def test_parse_endpoint_rejects(text: str) -> None:
    """Anything but host:port with a port in 0..65535 raises ValueError naming the rule."""
    with pytest.raises(ValueError, match="endpoint"):
        parse_endpoint(text)


def test_ipv6_endpoint_prints_with_brackets() -> None:
    """str() gives back a form grpc and humans accept."""
    assert str(Endpoint("::1", 4317)) == "[::1]:4317"


def test_bind_port_zero_and_taken_port() -> None:
    """Port 0 binds a free port; binding it again raises ListenError naming the endpoint."""
    sock = bind_tcp(Endpoint("127.0.0.1", 0))
    try:
        port = sock.getsockname()[1]
        assert port > 0 and sock.type == socket.SOCK_STREAM
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_tcp(Endpoint("127.0.0.1", port))
    finally:
        sock.close()
