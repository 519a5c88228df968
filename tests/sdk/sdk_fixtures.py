"""SDK test helpers: a real local HTTP server and private providers with readers for assertions."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

LOCAL_PROVIDERS = {"providers": [{"name": "local-llm", "hosts": ["127.0.0.1"], "dialect": "openai"}]}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body are two writes: without this, Nagle + delayed ACK add ~40 ms a call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        if path.startswith("/status/"):
            self._reply(int(path.rsplit("/", 1)[1]), b"{}", {"content-type": "application/json"})
        elif path == "/stream":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(5):
                chunk = f'data: {{"i": {i}}}\n\n'.encode()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        else:
            body = json.dumps({"path": path, "method": self.command}).encode()
            self._reply(
                200,
                body,
                {
                    "content-type": "application/json",
                    "set-cookie": "session=SECRET-COOKIE",
                    "x-ratelimit-remaining-requests": "99",
                },
            )

    do_GET = do_POST = _route

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _ThreadingServer(http.server.ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: with 50 concurrent connections on a loaded
    # machine the accept queue overflowed, the client saw a connection the server never
    # accepted, and the call ended in a ReadTimeout (test_async_tasks_count_exactly, ~1 in 8
    # runs with two test processes in parallel).
    request_queue_size = 128
    daemon_threads = True


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.httpd = _ThreadingServer(("127.0.0.1", 0), _Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/ok") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Providers:
    """Private SDK providers: spans to an in-memory exporter, metrics to an in-memory reader."""

    def __init__(self, sampler: Any = None) -> None:
        self.exporter = InMemorySpanExporter()
        resource = Resource.create({"service.name": "test-app"})
        self.tracer_provider = TracerProvider(resource=resource, sampler=sampler)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.reader])

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def metric_points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, point)`` of every data point of metric ``name``."""
        out = []
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend((dict(p.attributes), p) for p in metric.data.data_points)
        return out

    def red_calls(self, **match: str) -> float:
        """Sum of ``traces.span.metrics.calls`` over series whose labels include ``match``."""
        total = 0.0
        for attrs, point in self.metric_points("traces.span.metrics.calls"):
            if all(attrs.get(k.replace("_", ".")) == v for k, v in match.items()):
                total += point.value
        return total
