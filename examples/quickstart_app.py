"""Quick start: spansignals inside an app, with RED metrics on the app's own /metrics.

Run:   python examples/quickstart_app.py
Needs: spansignals installed (``pip install -e .``); nothing else, no network.

What it does: starts a small local HTTP server standing in for an LLM API, calls
``spansignals.sdk.configure()`` (with ``OTEL_METRICS_EXPORTER=prometheus`` so the app serves
``/metrics``), makes httpx calls to the server (sync and async, one of them failing with a 500),
then scrapes its own ``/metrics`` and prints the RED series. Expect output like::

    traces_span_metrics_calls_total{...,span_kind="SPAN_KIND_CLIENT",...,status_code="STATUS_CODE_UNSET"} 4.0
    traces_span_metrics_calls_total{...,span_kind="SPAN_KIND_CLIENT",...,status_code="STATUS_CODE_ERROR"} 1.0

and a final line ``ok: 5 client calls counted``. The spans carry ``spansignals.provider="demo-llm"``
and the API key in the URL is exported as ``REDACTED``. Set ``OTEL_TRACES_EXPORTER=otlp`` (and
``OTEL_EXPORTER_OTLP_ENDPOINT``) to also send the spans to a collector, e.g. ``spansignals
collector``.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import socket
import threading
import urllib.request

import httpx

from spansignals.sdk import configure


class FakeLLM(http.server.BaseHTTPRequestHandler):
    """Answers every POST like a chat completion; ``/fail`` answers 500."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body are two writes: without this, Nagle + delayed ACK add ~40 ms a call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        status = 500 if self.path.startswith("/fail") else 200
        body = json.dumps({"choices": [{"message": {"content": "hi"}}]}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    # The standard OTel variables drive exporters; these defaults keep the example self-contained.
    os.environ.setdefault("OTEL_SERVICE_NAME", "quickstart")
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    os.environ.setdefault("OTEL_METRICS_EXPORTER", "prometheus")
    os.environ.setdefault("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    os.environ.setdefault("OTEL_EXPORTER_PROMETHEUS_PORT", str(free_port()))

    # The same mapping could live in spansignals.yaml: the local server plays an OpenAI-style API.
    telemetry = configure({"providers": [{"name": "demo-llm", "hosts": ["127.0.0.1"], "dialect": "openai"}]})

    with httpx.Client() as client:
        for _ in range(3):
            client.post(f"{base}/v1/chat/completions?api_key=sk-demo-secret", json={"model": "demo"})
        client.post(f"{base}/fail", json={})

    async def one_async_call() -> None:
        async with httpx.AsyncClient() as client:
            await client.post(f"{base}/v1/chat/completions", json={"model": "demo"})

    asyncio.run(one_async_call())

    host, port = telemetry.prometheus_address or ("127.0.0.1", 0)
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    calls = [line for line in text.splitlines() if line.startswith("traces_span_metrics_calls_total")]
    print("\n".join(calls))
    total = sum(float(line.rsplit(" ", 1)[1]) for line in calls if 'span_kind="SPAN_KIND_CLIENT"' in line)

    telemetry.shutdown(timeout=5)
    server.shutdown()
    if total != 5:
        print(f"unexpected: {total} client calls counted")
        return 1
    print(f"ok: {total:.0f} client calls counted")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
