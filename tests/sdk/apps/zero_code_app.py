"""An app with no OpenTelemetry code: run under ``opentelemetry-instrument`` by test_distro.py.

Makes three httpx calls to a local server of its own, prints ``READY`` and whether httpx was
instrumented, then waits until its standard input closes (so the test can scrape /metrics).
"""

import http.server
import sys
import threading

import httpx


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
with httpx.Client() as client:
    for _ in range(3):
        client.get(f"http://127.0.0.1:{server.server_address[1]}/hello?api_key=CANARY")

from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor  # noqa: E402

print("READY", HTTPXClientInstrumentor().is_instrumented_by_opentelemetry, flush=True)
sys.stdin.read()
server.shutdown()
