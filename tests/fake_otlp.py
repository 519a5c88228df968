"""A scriptable fake downstream OTLP server (gRPC and HTTP/protobuf) for forwarding tests.

``FakeOtlpServer()`` listens on two free loopback ports (``grpc_endpoint``, ``http_url``) and
answers every ``Export`` of traces, metrics and logs according to its *mode*, or to the next
scripted answer (``script(...)``) when there is one:

* :class:`Ok` (default) — accept; :class:`Partial` — accept, reporting ``rejected`` items in
  ``partial_success`` (the first ``rejected`` spans count as not delivered);
* :class:`Delay` — wait ``seconds`` (on the server thread), then answer ``then``;
* :class:`Fail` — a gRPC status / HTTP status pair, with an optional retry hint (``RetryInfo`` /
  ``Retry-After``);
* ``down()`` / ``up()`` — stop listening (connections refused) and listen again on the same ports.

Everything accepted is recorded: ``spans`` counts each delivered (trace_id, span_id) (duplicates
visible), ``items[signal]`` the delivered metric data points and log records, ``requests`` every
request seen with its transport, signal, headers and answer, ``bodies`` the accepted payloads.
Thread-safe; stop with ``stop()``.
"""

from __future__ import annotations

import collections
import gzip
import http.server
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from peers import LOOPBACK, free_ports

__all__ = ["Delay", "Fail", "FakeOtlpServer", "Ok", "Partial", "Seen"]


@dataclass(frozen=True)
class Ok:
    """Accept everything."""


@dataclass(frozen=True)
class Partial:
    """Accept, reporting ``rejected`` items refused (partial success)."""

    rejected: int
    message: str = "some items were rejected"


@dataclass(frozen=True)
class Fail:
    """Refuse: ``grpc_code`` for gRPC, ``http_status`` for HTTP, ``retry_after`` as a hint."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    http_status: int = 503
    retry_after: float | None = None


@dataclass(frozen=True)
class Delay:
    """Sleep ``seconds`` before answering ``then`` (a slow downstream)."""

    seconds: float
    then: Any = field(default_factory=Ok)


@dataclass
class Seen:
    """One request as the fake saw it."""

    transport: str
    signal: str
    headers: dict[str, str]
    items: int
    answer: str
    at: float  # time.monotonic() when the request arrived


_SIGNALS = {
    "traces": (trace_pb.ExportTraceServiceRequest, trace_pb.ExportTraceServiceResponse, "rejected_spans"),
    "metrics": (
        metrics_pb.ExportMetricsServiceRequest,
        metrics_pb.ExportMetricsServiceResponse,
        "rejected_data_points",
    ),
    "logs": (logs_pb.ExportLogsServiceRequest, logs_pb.ExportLogsServiceResponse, "rejected_log_records"),
}
_SERVICES = {
    "opentelemetry.proto.collector.trace.v1.TraceService": "traces",
    "opentelemetry.proto.collector.metrics.v1.MetricsService": "metrics",
    "opentelemetry.proto.collector.logs.v1.LogsService": "logs",
}


def _span_ids(request: Any) -> list[tuple[bytes, bytes]]:
    return [
        (s.trace_id, s.span_id) for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]


def _item_count(signal: str, request: Any) -> int:
    if signal == "traces":
        return len(_span_ids(request))
    if signal == "logs":
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind:
                    total += len(getattr(m, kind).data_points)
    return total


class FakeOtlpServer:
    """See the module docstring."""

    def __init__(self) -> None:
        self.grpc_port, self.http_port = free_ports(2)
        self.grpc_endpoint = f"{LOOPBACK}:{self.grpc_port}"
        self.http_url = f"http://{LOOPBACK}:{self.http_port}"
        self.mode: Any = Ok()
        self._script: collections.deque[Any] = collections.deque()
        self._lock = threading.Lock()
        self.spans: collections.Counter[tuple[bytes, bytes]] = collections.Counter()
        self.items: collections.Counter[str] = collections.Counter()
        self.requests: list[Seen] = []
        self.bodies: list[tuple[str, bytes]] = []  # (signal, uncompressed protobuf) of accepted requests
        self._grpc: grpc.Server | None = None
        self._http: http.server.ThreadingHTTPServer | None = None
        self.up()

    # --- control -------------------------------------------------------------------------------

    def script(self, *answers: Any) -> None:
        """Answer the next requests with ``answers`` in order, then with ``mode`` again."""
        with self._lock:
            self._script.extend(answers)

    def up(self) -> None:
        """Listen (again) on the same ports."""
        if self._grpc is None:
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
            handlers = {
                service: grpc.method_handlers_generic_handler(
                    service, {"Export": grpc.unary_unary_rpc_method_handler(self._grpc_handler(signal))}
                )
                for service, signal in _SERVICES.items()
            }
            server.add_generic_rpc_handlers(tuple(handlers.values()))
            server.add_insecure_port(self.grpc_endpoint)
            server.start()
            self._grpc = server
        if self._http is None:
            fake = self

            class Handler(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"

                def do_POST(self) -> None:
                    fake._http_request(self)

                def log_message(self, *args: Any) -> None:
                    pass

            http.server.ThreadingHTTPServer.allow_reuse_address = True
            self._http = http.server.ThreadingHTTPServer((LOOPBACK, self.http_port), Handler)
            self._http.daemon_threads = True
            threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening: connections are refused until :meth:`up`."""
        if self._grpc is not None:
            self._grpc.stop(0).wait()
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def stop(self) -> None:
        self.down()

    # --- views ---------------------------------------------------------------------------------

    def delivered_spans(self) -> int:
        """Distinct spans accepted."""
        with self._lock:
            return len(self.spans)

    def duplicates(self) -> int:
        """Deliveries beyond the first of a span."""
        with self._lock:
            return sum(n - 1 for n in self.spans.values())

    def answers(self, signal: str = "traces") -> list[str]:
        with self._lock:
            return [seen.answer for seen in self.requests if seen.signal == signal]

    # --- serving -------------------------------------------------------------------------------

    def _next_answer(self) -> Any:
        with self._lock:
            return self._script.popleft() if self._script else self.mode

    def _record(self, transport: str, signal: str, body: bytes, headers: dict[str, str], answer: Any) -> Any:
        request_type, response_type, field_name = _SIGNALS[signal]
        request = request_type()
        request.ParseFromString(body)
        arrived = time.monotonic()
        while isinstance(answer, Delay):
            time.sleep(answer.seconds)
            answer = answer.then
        items = _item_count(signal, request)
        with self._lock:
            self.requests.append(Seen(transport, signal, headers, items, type(answer).__name__, arrived))
            if isinstance(answer, Fail):
                return answer
            rejected = answer.rejected if isinstance(answer, Partial) else 0
            self.bodies.append((signal, body))
            if signal == "traces":
                self.spans.update(_span_ids(request)[rejected:])
            else:
                self.items[signal] += max(0, items - rejected)
        response = response_type()
        if rejected:
            setattr(response.partial_success, field_name, rejected)
            response.partial_success.error_message = answer.message
        return response

    def _grpc_handler(self, signal: str) -> Any:
        def handle(body: bytes, context: grpc.ServicerContext) -> bytes:
            headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            result = self._record("grpc", signal, body, headers, self._next_answer())
            if isinstance(result, Fail):
                if result.retry_after is not None:
                    info = error_details_pb2.RetryInfo()
                    info.retry_delay.FromNanoseconds(int(result.retry_after * 1e9))
                    status = status_pb2.Status(code=result.grpc_code.value[0], message="fake refusal")
                    status.details.add().Pack(info)
                    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
                context.abort(result.grpc_code, "fake refusal")
            return result.SerializeToString()

        return handle

    def _http_request(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        body = handler.rfile.read(length)
        if handler.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        signal = handler.path.rsplit("/", 1)[-1]
        if signal not in _SIGNALS:
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        headers = {k.lower(): v for k, v in handler.headers.items()}
        result = self._record("http", signal, body, headers, self._next_answer())
        if isinstance(result, Fail):
            status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="fake refusal").SerializeToString()
            handler.send_response(result.http_status)
            if result.retry_after is not None:
                handler.send_header("Retry-After", str(int(result.retry_after)))
            out = status
        else:
            handler.send_response(200)
            out = result.SerializeToString()
        handler.send_header("Content-Type", "application/x-protobuf")
        handler.send_header("Content-Length", str(len(out)))
        handler.end_headers()
        handler.wfile.write(out)
