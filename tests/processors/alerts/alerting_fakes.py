"""Fakes shared by the alerting tests: a settable clock, a gauge source, a recording worker."""

from __future__ import annotations

from spansignals.processors.alerts.channel import ReceiverChannel
from spansignals.processors.alerts.engine import AlertEngine
from spansignals.processors.alerts.notification import Notification
from spansignals.processors.engine import SignalSpanProcessor
from spansignals.processors.families import GaugeFamily

T0 = 1_790_000_000.0  # a fixed wall-clock instant (2026-09-21, a Monday, 14:13:20 UTC)


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Recorder:
    """Stands in for a delivery worker: keeps what it is given."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def submit(self, notification: Notification) -> bool:
        self.sent.append(notification)
        return True

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 0) -> None:
        pass


def budget_gauge() -> GaugeFamily:
    """``spansignals_budget_state{budget,period}`` as the budget processor exposes it."""
    return GaugeFamily("spansignals.budget.state", "budget state", "1", ("budget", "period"))


class BudgetStateStub(SignalSpanProcessor):
    """Stands in for the budget processor in a ``SignalEngine``: only its budget state gauge."""

    processor_name = "budget-stub"

    def __init__(self) -> None:
        super().__init__()
        self.state = budget_gauge()

    def metric_families(self) -> list[GaugeFamily]:
        return [self.state]


def attach_recorders(
    engine: AlertEngine, *names: str, kind: str = "", **channel_kwargs: object
) -> dict[str, Recorder]:
    """Give ``engine`` a recording receiver channel for each name."""
    out = {}
    for name in names:
        rec = Recorder()
        engine.receivers[name] = ReceiverChannel(
            name,
            [rec],
            kind=kind,
            on_outcome=engine.count_outcome,
            **channel_kwargs,  # type: ignore[arg-type, list-item]
        )
        out[name] = rec
    return out


class FakeHttpServer:
    """A threaded HTTP server on 127.0.0.1 that records requests and plays scripted answers.

    ``script`` holds ``(status, headers, body, delay_s)`` answers used in order; when it runs out,
    ``default`` answers. ``requests`` holds ``(method, path, headers, body)``.
    """

    def __init__(self, default: tuple[int, dict[str, str], bytes] = (200, {}, b"ok")) -> None:
        import http.server
        import threading

        self.script: list[tuple[int, dict[str, str], bytes, float]] = []
        self.default = default
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # set to free handlers that hang (delay < 0)
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                with fake.lock:
                    fake.requests.append(
                        ("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    answer = fake.script.pop(0) if fake.script else (*fake.default, 0.0)
                status, headers, payload, delay = answer
                if delay < 0:
                    fake.release.wait(30)
                elif delay:
                    fake.release.wait(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [r[3] for r in self.requests]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
