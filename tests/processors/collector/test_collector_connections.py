"""Connection and stream limits (``limits.max_connections``, ``limits.max_concurrent_streams``),
with real sockets on loopback.

Over the connection limit a new connection is refused cleanly (HTTP: a fixed 503 + Retry-After,
then closed, counted; gRPC: grpc-core closes it at accept, the client sees UNAVAILABLE), the
connections already open keep working, and the process stays healthy.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import pytest
from otlp_builders import build_request

from spansignals.processors.collector import Collector, CollectorSettings
from spansignals.processors.collector.admission import REASON_CONNECTIONS
from spansignals.processors.config import load_config

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LIMIT = 2
# Each channel gets its own connection (grpc shares subchannels between channels by default).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@pytest.fixture
async def limited(make_collector: Callable[..., Any]) -> Collector:
    """A collector whose receivers take at most two connections each, three calls per connection."""
    return await make_collector(max_connections=LIMIT, max_concurrent_streams=3)


def _http_request(body: bytes) -> bytes:
    head = (
        "POST /v1/traces HTTP/1.1\r\nHost: collector\r\nContent-Type: application/x-protobuf\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 5)
    return int(status_line.split()[1]), headers, body


class _Connection:
    """One raw keep-alive HTTP/1.1 connection to the OTLP/HTTP receiver."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, collector: Collector) -> _Connection:
        endpoint = collector.http_endpoint
        assert endpoint is not None
        return cls(*await asyncio.open_connection(endpoint.host, endpoint.port))

    async def export(self) -> int:
        self.writer.write(_http_request(build_request("conn").SerializeToString()))
        await self.writer.drain()
        status, _, _ = await _read_response(self.reader)
        return status

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def _healthy(collector: Collector) -> None:
    url = f"http://{collector.metrics_endpoint}/health/live"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200


async def test_http_connection_over_the_limit_gets_503_and_is_closed(limited: Collector) -> None:
    """Two connections are served; the third gets 503 + Retry-After + Connection: close and EOF,
    counted; the first two keep working; once one closes, a new connection is served."""
    first, second = await _Connection.open(limited), await _Connection.open(limited)
    assert await first.export() == 200 and await second.export() == 200
    refusals = limited.admission.refusals

    # A client that only connects: the answer comes unasked, then the server closes.
    endpoint = limited.http_endpoint
    assert endpoint is not None
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    status, headers, body = await _read_response(reader)
    assert status == 503 and headers["retry-after"] == "1" and headers["connection"] == "close"
    assert b"connection limit" in body
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    writer.close()

    # A client that sends its request right away reads the same answer (no reset destroys it).
    third = await _Connection.open(limited)
    assert await third.export() == 503
    await third.close()
    assert refusals.value((REASON_CONNECTIONS,)) == 2

    assert await first.export() == 200 and await second.export() == 200  # the open ones keep working
    await first.close()
    assert limited.http_receiver is not None and limited.http_receiver.connection_limit is not None
    await _until(lambda: limited.http_receiver.connection_limit.open == 1)  # type: ignore[union-attr]
    fourth = await _Connection.open(limited)
    assert await fourth.export() == 200
    await fourth.close()
    await second.close()
    await _healthy(limited)
    assert limited.pipeline.receiver_spans.value(("http", "accepted")) == 5


async def test_http_without_a_limit_serves_more_connections(make_collector: Callable[..., Any]) -> None:
    """``max_connections`` None (``limits.max_connections: 0``): no cap, nothing refused."""
    collector = await make_collector(max_connections=None)
    connections = [await _Connection.open(collector) for _ in range(LIMIT + 3)]
    assert [await c.export() for c in connections] == [200] * (LIMIT + 3)
    for c in connections:
        await c.close()
    assert collector.admission.refusals.value((REASON_CONNECTIONS,)) == 0


async def _export(channel: grpc.aio.Channel, **kwargs: Any) -> Awaitable[bytes]:
    return await channel.unary_unary(TRACES)(build_request("grpc").SerializeToString(), timeout=5, **kwargs)


async def test_grpc_connection_over_the_limit_is_closed_and_the_others_keep_working(
    limited: Collector,
) -> None:
    """Two channels (connections) are served; a third is closed at accept (UNAVAILABLE, nothing
    processed); the first two keep working; once one closes, a new connection is served."""
    target = str(limited.grpc_endpoint)
    first = grpc.aio.insecure_channel(target, options=OWN_CONNECTION)
    second = grpc.aio.insecure_channel(target, options=OWN_CONNECTION)
    await _export(first)
    await _export(second)
    third = grpc.aio.insecure_channel(target, options=OWN_CONNECTION)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _export(third)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    await third.close()
    await _export(first)
    await _export(second)
    assert limited.pipeline.receiver_spans.value(("grpc", "accepted")) == 4

    await first.close()

    async def fresh_channel_served() -> bool:
        channel = grpc.aio.insecure_channel(target, options=OWN_CONNECTION)
        try:
            await _export(channel)
            return True
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            return False
        finally:
            await channel.close()

    for _ in range(50):  # the server notices the close asynchronously
        if await fresh_channel_served():
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("a new connection was not served after one of the two closed")
    await _export(second)
    await second.close()
    await _healthy(limited)


async def test_grpc_concurrent_streams_per_connection_are_capped(limited: Collector) -> None:
    """With max_concurrent_streams 3, one connection never has more than 3 calls in the receiver;
    calls over it wait or are refused with UNAVAILABLE (never processed), the others complete."""
    release = asyncio.Event()
    inside = peak = 0

    async def held(request: Any, body: bytes, result: Any) -> None:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        try:
            await release.wait()
        finally:
            inside -= 1

    assert limited.grpc_receiver is not None
    limited.grpc_receiver.forward = held
    async with grpc.aio.insecure_channel(str(limited.grpc_endpoint), options=OWN_CONNECTION) as channel:
        await channel.channel_ready()
        calls = [asyncio.ensure_future(_export(channel)) for _ in range(6)]
        await _until(lambda: inside == 3)
        await asyncio.sleep(0.3)  # time for a fourth call to get in, were the cap not applied
        assert peak == 3
        release.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
    codes = [r.code() if isinstance(r, grpc.aio.AioRpcError) else grpc.StatusCode.OK for r in results]
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert codes.count(grpc.StatusCode.OK) >= 3
    assert peak == 3


def test_limits_come_from_the_config_and_zero_means_no_cap() -> None:
    """``limits.max_connections`` / ``max_concurrent_streams``: defaults 4096 and 100; 0 is off."""
    defaults = CollectorSettings.from_config(load_config({}))
    assert (defaults.max_connections, defaults.max_concurrent_streams) == (4096, 100)
    config = load_config({"collector": {"limits": {"max_connections": 0, "max_concurrent_streams": 0}}})
    off = CollectorSettings.from_config(config)
    assert (off.max_connections, off.max_concurrent_streams) == (None, None)
    custom = load_config({"collector": {"limits": {"max_connections": 10, "max_concurrent_streams": 7}}})
    assert (CollectorSettings.from_config(custom).max_connections, 7) == (10, 7)


async def test_the_open_files_limit_is_raised_for_the_connection_limits(
    make_collector: Callable[..., Any],
) -> None:
    """Starting with the default limits raises the soft RLIMIT_NOFILE so 2 x 4096 sockets fit
    (up to the hard limit): otherwise accept() would fail with EMFILE long before the cap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, soft), hard))
        collector = await make_collector()
        await collector.stop()
        raised, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 2 * 4096 + 512
        assert raised == (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
