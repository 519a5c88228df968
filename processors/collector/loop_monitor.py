"""How late the collector's event loop runs: the one stall the other self-telemetry cannot see.

Receivers, forwarding and ``/metrics`` share one asyncio loop. When something blocks it (a long
synchronous call, a lock held by another thread, a GC pause), every request and every send waits,
and the per-request and per-send figures only show the victims. :class:`LoopLagMonitor` asks the
loop for a ``interval_s`` (0.25 s) sleep over and over and records how much later than asked it
woke up:

* ``spansignals_collector_loop_lag_seconds`` (histogram): every tick's lateness;
* ``spansignals_collector_loop_stalls_total``: ticks at least ``warn_after_s`` (1 s) late, each
  also logged at WARNING with its length.

A stall with little CPU used points at a blocking call or a lock; a stall with no loop lag at all
is outside Python (grpc-core, the network, the client). Cost: four timer wake-ups a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..families import CounterFamily, HistogramFamily, MetricFamily

__all__ = ["LoopLagMonitor"]

_logger = logging.getLogger(__name__)

LAG_BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class LoopLagMonitor:
    """Records how late the running loop wakes from ``interval_s`` sleeps; see the module docstring."""

    def __init__(self, *, interval_s: float = 0.25, warn_after_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.warn_after_s = warn_after_s
        self.lag = HistogramFamily(
            "spansignals.collector.loop.lag",
            "How much later than asked the collector's event loop woke from a short sleep: the time"
            " it was blocked.",
            "s",
            (),
            LAG_BOUNDS,
            max_series=1,
        )
        self.stalls = CounterFamily(
            "spansignals.collector.loop.stalls",
            "Times the collector's event loop was blocked for a second or more (each logged).",
            "{stall}",
            (),
            max_series=1,
        )
        self._task: asyncio.Task[None] | None = None

    def metric_families(self) -> list[MetricFamily]:
        return [self.lag, self.stalls]

    def start(self) -> None:
        """Start measuring on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="spansignals-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, loop.time() - asked - self.interval_s)
            self.lag.record((), lag)
            if lag >= self.warn_after_s:
                self.stalls.add((), 1)
                _logger.warning(
                    "spansignals collector: the event loop was blocked for %.1f s; requests, sends"
                    " and /metrics waited that long",
                    lag,
                )
