"""The handle ``configure()`` returns: flush and shut down within a deadline, whatever exporters do."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Telemetry", "run_with_deadline"]

_logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0


def run_with_deadline(what: str, steps: list[Callable[[], Any]], timeout: float) -> bool:
    """Run ``steps`` in order on a daemon thread and wait at most ``timeout`` seconds.

    Returns ``True`` when every step finished in time and none returned ``False`` or raised.
    A step that hangs (an exporter stuck on a dead endpoint) is left behind on its daemon
    thread, which never keeps the process alive; the caller gets ``False`` and a warning.
    """
    if not steps:
        return True
    outcome: list[bool] = [True]
    done = threading.Event()

    def work() -> None:
        try:
            for step in steps:
                try:
                    if step() is False:
                        outcome[0] = False
                except Exception:
                    outcome[0] = False
                    _logger.warning("spansignals: %s step %r failed", what, step, exc_info=True)
        finally:
            done.set()

    threading.Thread(target=work, name=f"spansignals-{what}", daemon=True).start()
    if not done.wait(max(0.0, timeout)):
        _logger.warning(
            "spansignals: %s did not finish within %.3gs; giving up (telemetry may be lost)", what, timeout
        )
        return False
    return outcome[0]


class Telemetry:
    """What ``configure()`` set up: providers, the signal engine, the app's ``/metrics`` server.

    ``tracer_provider`` / ``meter_provider`` are the SDK providers in use (the app's own when it
    had set them up, ``owns_providers`` says which); ``engine`` the derivations; ``config`` the
    loaded configuration; ``prometheus_address`` the ``(host, port)`` of ``/metrics`` or ``None``.
    """

    def __init__(
        self,
        *,
        config: Any,
        engine: Any,
        producer: Any,
        tracer_provider: Any,
        meter_provider: Any,
        owns_tracer_provider: bool,
        owns_meter_provider: bool,
        span_processor: Any,
        hooks: Any,
        httpx_instrumented: bool,
        prometheus_server: Any = None,
        on_shutdown: Callable[[Telemetry], None] | None = None,
        enabled: bool = True,
        alerts: Any = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.producer = producer
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.owns_tracer_provider = owns_tracer_provider
        self.owns_meter_provider = owns_meter_provider
        self.span_processor = span_processor
        self.hooks = hooks
        self.httpx_instrumented = httpx_instrumented
        self.enabled = enabled
        self.alerts = alerts
        """The in-process alerting engine (``AlertEngine``): rules, routing, notifiers."""
        self._prometheus_server = prometheus_server
        self._on_shutdown = on_shutdown
        self._lock = threading.Lock()
        self._shutdown_result: bool | None = None

    @property
    def prometheus_address(self) -> tuple[str, int] | None:
        """``(host, port)`` the app's ``/metrics`` listens on, or ``None``."""
        server = self._prometheus_server
        if server is None:
            return None
        host, port = server.server_address[:2]
        return str(host), int(port)

    @property
    def is_shutdown(self) -> bool:
        """Whether :meth:`shutdown` has run."""
        return self._shutdown_result is not None

    def force_flush(self, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
        """Export everything pending, waiting at most ``timeout`` seconds (default 30).

        Returns ``False`` (and logs) when an exporter did not finish in time; never raises.
        """
        if self._shutdown_result is not None or not self.enabled:
            return self._shutdown_result is not False
        deadline = time.monotonic() + timeout

        def remaining_ms() -> int:
            return max(0, int((deadline - time.monotonic()) * 1000))

        steps: list[Callable[[], Any]] = []
        if self.tracer_provider is not None:
            steps.append(lambda: self.tracer_provider.force_flush(remaining_ms()))
        if self.meter_provider is not None:
            steps.append(lambda: self.meter_provider.force_flush(remaining_ms()))
        return run_with_deadline("force_flush", steps, timeout)

    def shutdown(self, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
        """Flush and stop what ``configure()`` started, within ``timeout`` seconds (default 30).

        Providers spansignals created are shut down; the app's own providers are flushed but left
        running (spansignals' span processor stops deriving). httpx is uninstrumented when
        ``configure()`` instrumented it, and ``/metrics`` stops. Idempotent: later calls return
        the first call's result at once. Never raises.
        """
        with self._lock:
            if self._shutdown_result is not None:
                return self._shutdown_result
            self._shutdown_result = self._shutdown(timeout)
            return self._shutdown_result

    def _shutdown(self, timeout: float) -> bool:
        if not self.enabled:
            return True
        deadline = time.monotonic() + timeout
        ok = True
        if self.alerts is not None:
            # First: its last evaluation reads the derived state, its queued notifications get a
            # share of the deadline; stop() never raises.
            ok = run_with_deadline("alerts-stop", [lambda: self.alerts.stop(timeout / 3)], timeout / 2) and ok
        try:
            if self.httpx_instrumented:
                from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

                HTTPXClientInstrumentor().uninstrument()
        except Exception:
            ok = False
            _logger.warning("spansignals: uninstrumenting httpx failed", exc_info=True)

        def remaining_ms() -> int:
            return max(0, int((deadline - time.monotonic()) * 1000))

        steps: list[Callable[[], Any]] = []
        tp, mp = self.tracer_provider, self.meter_provider
        if tp is not None:
            if self.owns_tracer_provider:
                steps.append(tp.shutdown)
            else:
                steps.append(lambda: tp.force_flush(remaining_ms()))
        if mp is not None:
            if self.owns_meter_provider:
                steps.append(lambda: mp.shutdown(timeout_millis=remaining_ms()))
            else:
                steps.append(lambda: mp.force_flush(remaining_ms()))
        ok = run_with_deadline("shutdown", steps, max(0.0, deadline - time.monotonic())) and ok

        # Whatever happened above, stop deriving: a re-configure must not count twice.
        if self.span_processor is not None:
            self.span_processor.on_end = _ignore_span
        if not self.owns_tracer_provider:  # an owned provider's shutdown already shut the engine down
            try:
                if self.span_processor is not None:
                    self.span_processor.shutdown()  # derives what is queued, stops the worker
                else:
                    self.engine.shutdown()
            except Exception:
                ok = False
                _logger.warning("spansignals: engine shutdown failed", exc_info=True)
        if not self.owns_meter_provider:
            for family in self.engine.metric_families():
                family.reset()  # an app reader keeps our producer attached; make it render nothing
        server = self._prometheus_server
        if server is not None:
            ok = (
                run_with_deadline(
                    "prometheus-stop",
                    [server.shutdown, server.server_close],
                    max(0.5, deadline - time.monotonic()),
                )
                and ok
            )
        if self._on_shutdown is not None:
            self._on_shutdown(self)
        return ok

    def __repr__(self) -> str:
        state = "shut down" if self.is_shutdown else "active"
        return f"<spansignals Telemetry {state}, prometheus={self.prometheus_address}>"


def _ignore_span(span: Any) -> None:
    """The span processor's ``on_end`` after shutdown."""
