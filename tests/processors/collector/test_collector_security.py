"""Locked-down receivers: bearer auth (gRPC and HTTP, optionally /metrics), TLS, mTLS, loopback
defaults, and a canary secret planted in every input that must come out nowhere."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from otlp_builders import SPAN_KIND_CLIENT, build_request

from spansignals.processors.collector import CollectorSettings
from spansignals.processors.collector.app import _hardening_settings
from spansignals.processors.collector.pipeline import IngestResult
from spansignals.processors.collector.security import BearerAuth, ServerTls, TlsConfigError
from spansignals.processors.config import ConfigError, load_config, loads_config
from spansignals.processors.factory import build_engine

TOKEN = "s3cret-token-for-tests"
CANARY = "sk-canary-9d1e77"
PROTOBUF = "application/x-protobuf"


@pytest.fixture
def make_collector(make_collector: Callable[..., Any]) -> Callable[..., Any]:
    """conftest's, with every derivation of the default configuration: each family in /metrics
    is one more place a canary could leak to."""
    return lambda **overrides: make_collector(engine=build_engine(load_config({})), **overrides)


# --- bearer auth ---------------------------------------------------------------------------------


def test_bearer_check_is_exact_and_scheme_insensitive() -> None:
    """Only 'Bearer <token>' (any scheme case) with the exact token passes."""
    auth = BearerAuth(TOKEN)
    assert auth.check(f"Bearer {TOKEN}") and auth.check(f"bearer {TOKEN}")
    for bad in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer "):
        assert not auth.check(bad)
    assert TOKEN not in repr(auth)


async def _post(url: str, body: bytes, **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"Content-Type": PROTOBUF, **headers}) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def _get(url: str, **headers: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status


async def test_http_receiver_requires_the_token(make_collector: Callable[..., Any]) -> None:
    """Without or with a wrong token: 401 + WWW-Authenticate, nothing derived; with it: 200."""
    collector = await make_collector(bearer_token=TOKEN)
    url = f"http://{collector.http_endpoint}/v1/traces"
    body = build_request().SerializeToString()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        status, answer_headers, _ = await _post(url, body, **headers)
        assert status == 401
        assert answer_headers["WWW-Authenticate"].startswith("Bearer")
    assert collector.pipeline.receiver_spans.value(("http", "accepted")) == 0
    status, _, _ = await _post(url, body, Authorization=f"Bearer {TOKEN}")
    assert status == 200
    assert collector.pipeline.receiver_spans.value(("http", "accepted")) == 1
    # /metrics and health stay open unless protect_metrics / protect_health say otherwise.
    assert await _get(f"http://{collector.metrics_endpoint}/metrics") == 200


async def test_grpc_receiver_requires_the_token(make_collector: Callable[..., Any]) -> None:
    """Without the token: UNAUTHENTICATED; with it in the authorization metadata: OK."""
    collector = await make_collector(bearer_token=TOKEN)
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        stub = TraceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Export(build_request(), metadata=(("authorization", "Bearer nope"),))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await stub.Export(build_request(), metadata=(("authorization", f"Bearer {TOKEN}"),))
    assert collector.pipeline.receiver_spans.value(("grpc", "accepted")) == 1


async def test_metrics_and_health_protected_when_configured(make_collector: Callable[..., Any]) -> None:
    """protect_metrics and protect_health put the token in front of /metrics and /health/*."""
    collector = await make_collector(bearer_token=TOKEN, protect_metrics=True, protect_health=True)
    base = f"http://{collector.metrics_endpoint}"
    for path in ("/metrics", "/health/live", "/health/ready"):
        assert await _get(base + path) == 401
        assert await _get(base + path, Authorization=f"Bearer {TOKEN}") == 200


def test_token_comes_from_the_environment_and_blank_is_refused() -> None:
    """collector.auth.bearer_token: ${ENV} is interpolated; an empty value is a config error naming it."""
    doc = "collector:\n  auth:\n    bearer_token: ${RECEIVER_TOKEN}\n    protect_metrics: true\n"
    config = loads_config(doc, env={"RECEIVER_TOKEN": TOKEN})
    settings = _hardening_settings(config.collector)
    assert settings["bearer_token"] == TOKEN and settings["protect_metrics"] is True
    with pytest.raises(ConfigError, match=r"collector\.auth\.bearer_token"):
        loads_config(doc, env={"RECEIVER_TOKEN": " "})


def test_default_binds_are_loopback() -> None:
    """With no configuration every listener binds 127.0.0.1."""
    settings = CollectorSettings.from_config(load_config({}))
    endpoints = [settings.grpc_endpoint, settings.http_endpoint, settings.metrics_endpoint]
    assert {e.host for e in endpoints if e is not None} == {"127.0.0.1"}


# --- TLS and mTLS --------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    d = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d,
        )  # fmt: skip
    return d


def _client_ssl(certs: Path, with_client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if with_client_cert:
        context.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    return context


def _grpc_credentials(certs: Path, with_client_cert: bool) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / "client.key").read_bytes() if with_client_cert else None,
        certificate_chain=(certs / "client.pem").read_bytes() if with_client_cert else None,
    )


async def test_tls_receivers_serve_https_and_grpcs(make_collector: Callable[..., Any], certs: Path) -> None:
    """With tls: HTTPS and gRPC over TLS work with the CA; plaintext HTTP does not."""
    tls = ServerTls(str(certs / "server.pem"), str(certs / "server.key"))
    collector = await make_collector(grpc_tls=tls, http_tls=tls)
    body = build_request().SerializeToString()
    url = f"https://127.0.0.1:{collector.http_endpoint.port}/v1/traces"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data=body, headers={"Content-Type": PROTOBUF}, ssl=_client_ssl(certs, False)
        ) as resp,
    ):
        assert resp.status == 200
    with pytest.raises(aiohttp.ClientError):
        await _post(f"http://127.0.0.1:{collector.http_endpoint.port}/v1/traces", body)
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{collector.grpc_endpoint.port}", _grpc_credentials(certs, False)
    ) as channel:
        await TraceServiceStub(channel).Export(build_request(), timeout=10)
    assert collector.pipeline.receiver_spans.value(("grpc", "accepted")) == 1


async def test_https_connection_over_the_limit_gets_503_over_tls(
    make_collector: Callable[..., Any], certs: Path
) -> None:
    """With TLS the refusal of a connection over ``max_connections`` is sent after the handshake
    (encrypted, a client reads it like any answer), then the connection is closed; the open
    connection keeps working."""
    tls = ServerTls(str(certs / "server.pem"), str(certs / "server.key"))
    collector = await make_collector(http_tls=tls, max_connections=1)
    body = build_request().SerializeToString()
    request = (
        f"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: {PROTOBUF}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    port = collector.http_endpoint.port

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[bytes, bytes]:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        answer = await asyncio.wait_for(reader.readexactly(int(_header(head, b"Content-Length"))), 5)
        return head, answer

    first = await asyncio.open_connection("127.0.0.1", port, ssl=_client_ssl(certs, False))
    assert (await exchange(*first))[0].startswith(b"HTTP/1.1 200")
    second = await asyncio.open_connection("127.0.0.1", port, ssl=_client_ssl(certs, False))
    head, answer = await exchange(*second)
    assert head.startswith(b"HTTP/1.1 503") and _header(head, b"Retry-After") == b"1"
    assert answer == b"the collector is at its connection limit; retry later\n"
    assert await asyncio.wait_for(second[0].read(), 5) == b""  # then the stream ends
    second[1].close()
    assert (await exchange(*first))[0].startswith(b"HTTP/1.1 200")  # the open one keeps working
    first[1].close()
    assert collector.admission.refusals.value(("max_connections",)) == 1


def _header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    raise AssertionError(f"no {name!r} in {head!r}")


async def test_mtls_requires_a_client_certificate(make_collector: Callable[..., Any], certs: Path) -> None:
    """With client_ca_file: clients without a certificate fail the handshake; with one they pass."""
    tls = ServerTls(str(certs / "server.pem"), str(certs / "server.key"), str(certs / "ca.pem"))
    collector = await make_collector(grpc_tls=tls, http_tls=tls)
    body = build_request().SerializeToString()
    url = f"https://127.0.0.1:{collector.http_endpoint.port}/v1/traces"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(url, data=body, ssl=_client_ssl(certs, False)) as resp:
                await resp.read()
        async with session.post(
            url, data=body, headers={"Content-Type": PROTOBUF}, ssl=_client_ssl(certs, True)
        ) as resp:
            assert resp.status == 200
    target = f"127.0.0.1:{collector.grpc_endpoint.port}"
    async with grpc.aio.secure_channel(target, _grpc_credentials(certs, False)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await TraceServiceStub(channel).Export(build_request(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.secure_channel(target, _grpc_credentials(certs, True)) as channel:
        await TraceServiceStub(channel).Export(build_request(), timeout=10)


def test_unreadable_tls_files_are_a_clear_error(tmp_path: Path) -> None:
    """A missing or non-PEM file raises TlsConfigError naming the file."""
    with pytest.raises(TlsConfigError, match=r"nope\.pem"):
        ServerTls(str(tmp_path / "nope.pem"), str(tmp_path / "nope.key")).ssl_context()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(TlsConfigError, match=r"bad\.pem"):
        ServerTls(str(bad), str(bad)).grpc_credentials()


# --- canary --------------------------------------------------------------------------------------


def _request_with_canaries() -> ExportTraceServiceRequest:
    request = build_request("canary-svc", [("POST", SPAN_KIND_CLIENT, 0)] * 2)
    planted = {
        "url.full": f"https://user:{CANARY}@api.example.com/v1/x?api_key={CANARY}&page=2",
        "url.query": f"token={CANARY}&q=1",
        "http.request.header.authorization": f"Bearer {CANARY}",
        "http.request.header.x-api-key": CANARY,
        "http.response.header.set-cookie": f"session={CANARY}",
    }
    resource_kv = request.resource_spans[0].resource.attributes.add()
    resource_kv.key, resource_kv.value.string_value = "http.url", f"https://x/?access_token={CANARY}"
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for key, value in planted.items():
        kv = span.attributes.add()
        kv.key = key
        if key == "http.request.header.x-api-key":
            kv.value.array_value.values.add().string_value = value
        else:
            kv.value.string_value = value
    event = span.events.add()
    event.name = "retry"
    ekv = event.attributes.add()
    ekv.key, ekv.value.string_value = "url.full", f"https://api.example.com/?sig={CANARY}"
    return request


async def test_canary_secret_appears_in_no_output(
    make_collector: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A secret planted in headers, attributes, resource, events and bad bodies is in no answer, no
    /metrics, no log line, and not in what forwarding would send (redaction on)."""
    caplog.set_level(logging.DEBUG)
    collector = await make_collector(bearer_token=TOKEN, redact=True)
    assert collector.pipeline.mutates
    forwarded: list[bytes] = []

    async def capture(request: ExportTraceServiceRequest, body: bytes, result: IngestResult) -> None:
        assert result.modified
        forwarded.append(request.SerializeToString())

    assert collector.http_receiver is not None and collector.grpc_receiver is not None
    collector.http_receiver.forward = capture
    collector.grpc_receiver.forward = capture
    url = f"http://{collector.http_endpoint}/v1/traces"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = []
    answers.append(await _post(url, b"x", Authorization=f"Bearer {CANARY}"))
    answers.append(await _post(url, b"\xff" + CANARY.encode(), **auth))
    answers.append(await _post(url, b"{}", **{**auth, "Content-Type": f"text/{CANARY}"}))
    answers.append(
        await _post(
            url,
            b'{"resourceSpans": "' + CANARY.encode() + b'"}',
            **auth,
            **{"Content-Type": "application/json"},
        )
    )
    answers.append(await _post(url, b"", **auth, **{"X-Api-Key": CANARY * 2000}))
    answers.append(await _post(url, _request_with_canaries().SerializeToString(), **auth))
    assert [a[0] for a in answers] == [401, 400, 415, 400, 431, 200]
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        stub = TraceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Export(_request_with_canaries(), metadata=(("authorization", f"Bearer {CANARY}"),))
        assert CANARY not in (info.value.details() or "")
        await stub.Export(_request_with_canaries(), metadata=(("authorization", f"Bearer {TOKEN}"),))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{collector.metrics_endpoint}/metrics") as resp,
    ):
        metrics = await resp.text()
    assert "canary-svc" in metrics  # the spans were derived
    assert len(forwarded) == 2
    outputs = [a[2] for a in answers] + [metrics.encode()] + forwarded
    outputs += [str(a[1]).encode() for a in answers]
    outputs.append("\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records).encode())
    for output in outputs:
        assert CANARY.encode() not in output
    assert b"REDACTED" in forwarded[0]
