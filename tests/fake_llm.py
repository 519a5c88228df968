"""A local LLM provider for tests: serves the recorded responses of tests/testdata/genai/responses.json.

The request path is ``/<case name><the provider's real path>`` (e.g.
``/openai-chat/v1/chat/completions``), so the provider dialect logic sees real API paths.
``?enc=gzip|br|deflate`` encodes the body. SSE cases are sent chunked, split at odd byte offsets,
with a flush per piece. Four servers listen on 127.0.0.1-4 so a provider table can map each address to a
dialect (openai, anthropic, gemini, and generic for AWS Bedrock).
"""

from __future__ import annotations

import gzip
import http.server
import json
import socket
import threading
import zlib
from pathlib import Path
from typing import Any

import brotli

CASES: dict[str, dict[str, Any]] = {
    c["name"]: c for c in json.loads((Path(__file__).parent / "testdata/genai/responses.json").read_text())
}
HOSTS = {"openai": "127.0.0.1", "anthropic": "127.0.0.2", "gemini": "127.0.0.3", "generic": "127.0.0.4"}
NAMES = {"openai": "openai", "anthropic": "anthropic", "gemini": "gemini", "generic": "bedrock"}


def case_body(case: dict[str, Any]) -> bytes:
    """The decoded body bytes the server sends for ``case``."""
    if "sse" in case:
        return case["sse"].encode("utf-8", "surrogateescape")
    if "raw" in case:
        return case["raw"].encode()
    return json.dumps(case["body"]).encode()


def _encode(data: bytes, enc: str) -> bytes:
    if enc == "gzip":
        return gzip.compress(data)
    if enc == "br":
        return brotli.compress(data)
    if enc == "deflate":
        return zlib.compress(data)
    return data


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.server.requests.append(self.rfile.read(length) if length else b"")  # type: ignore[attr-defined]
        path, _, query = self.path.partition("?")
        name = path.split("/")[1]
        enc = dict(p.partition("=")[::2] for p in query.split("&") if p).get("enc", "")
        case = CASES.get(name)
        if case is None:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        status = int(case.get("status", 200))
        data = _encode(case_body(case), enc)
        self.send_response(status)
        self.send_header("content-type", case["content_type"])
        if enc:
            self.send_header("content-encoding", enc)
        if "sse" in case:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            step = 37
            for i in range(0, len(data), step):
                piece = data[i : i + step]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _Server(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer (daemon threads by default) that does not log client disconnects."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: tests abandon streams on purpose (the client closing mid-body is not an error)."""


class FakeLlmServers:
    """One threaded server per dialect host, all on the same free port."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.servers: list[_Server] = []
        first = _Server((HOSTS["openai"], 0), _Handler)
        self.port = first.server_address[1]
        self.servers.append(first)
        for host in (HOSTS["anthropic"], HOSTS["gemini"], HOSTS["generic"]):
            self.servers.append(_Server((host, self.port), _Handler))
        for server in self.servers:
            server.requests = self.requests  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, case: str, *, enc: str = "") -> str:
        c = CASES[case]
        query = f"?enc={enc}" if enc else ""
        return f"http://{HOSTS[c['dialect']]}:{self.port}/{case}{c['path']}{query}"

    @staticmethod
    def providers_config() -> list[dict[str, Any]]:
        """``providers:`` entries mapping the hosts to built-in provider names (generic: Bedrock)."""
        return [
            {"name": NAMES[dialect], "hosts": [host], "dialect": dialect, "genai": True}
            for dialect, host in HOSTS.items()
        ]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
