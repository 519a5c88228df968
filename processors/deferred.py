"""Deferred derivation for the in-app front door: the span path only enqueues.

Measured on these machines, a bare SDK span costs 14-35 µs while building a view and running four
derivations on it costs 8-15 µs of Python. Doing that inside ``span.end()`` would put the whole
cost on the app's request path, so :class:`DeferredSpans` does what ``BatchSpanProcessor`` does
for export: ``span.end()`` appends the ended (immutable) ``ReadableSpan`` to a deque, and a
daemon worker thread drains it in batches (every ``interval`` seconds, or as soon as
``wake_at`` spans are pending).

Nothing is lost and nothing is stale when it matters:

- **exact**: every span is derived once; there is no sampling or dropping. When ``max_pending``
  spans are waiting (the worker is starved or dead), the span path derives synchronously instead:
  backpressure, not loss.
- **fresh on read**: :meth:`flush` drains on the caller's thread. The metric producer flushes
  before every collection, the alerting engine before every evaluation, ``force_flush`` and
  ``shutdown`` flush, so exported values include every span ended before the read.
- **fresh where decisions depend on it**: derivations that set ``sync_kinds`` (the rate-limit
  processor, whose breakers the guard consults before the next request) run on the span path for
  spans of those kinds; the other derivations still get the same view later.
- **fork-safe**: a child process starts with an empty queue and a new worker on first use.

Total CPU is not reduced by deferral (``benchmarks/inapp_span_cost.py`` reports the span-path
cost and the worker's cost per span separately); what changes is that the app's threads pay only
for an append.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["DeferredSpans"]

_logger = logging.getLogger(__name__)


class DeferredSpans:
    """A bounded queue of ended spans (or views) drained by a worker thread into ``consume``.

    ``consume(batch)`` must never raise (the engine's ``process`` does not); it is called with
    lists of items in arrival order, on the worker or on a flushing caller, never concurrently.
    Defaults: ``interval`` 0.1 s, ``wake_at`` 2048 pending, ``max_pending`` 20 000.
    """

    def __init__(
        self,
        consume: Callable[[list[Any]], None],
        *,
        interval: float = 0.1,
        wake_at: int = 2048,
        max_pending: int = 20_000,
    ) -> None:
        if interval <= 0 or wake_at < 1 or max_pending < wake_at:
            raise ValueError("need interval > 0 and 1 <= wake_at <= max_pending")
        self._consume = consume
        self.interval = interval
        self.wake_at = wake_at
        self.max_pending = max_pending
        self._pending: deque[Any] = deque()
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.sync_fallbacks = 0
        """How many spans were derived on the span path because the queue was full."""
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # The parent's pending spans are the parent's to derive; the worker did not survive.
        self._pending = deque()
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None

    def put(self, item: Any) -> None:
        """Enqueue one item; the span-path call. Never raises, never blocks on the worker."""
        pending = self._pending
        pending.append(item)
        n = len(pending)
        if n >= self.wake_at:
            if n >= self.max_pending or self._stopped:
                self.sync_fallbacks += 1
                self.flush()
                return
            self._wake.set()
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._drain_lock:
            if self._thread is not None or self._stopped:
                return
            thread = threading.Thread(target=self._run, name="spansignals-derive", daemon=True)
            self._thread = thread
        thread.start()

    def _run(self) -> None:
        wake = self._wake
        while not self._stopped:
            wake.wait(self.interval)
            wake.clear()
            try:
                self.flush()
            except Exception:  # consume never raises; this guards the loop itself
                _logger.exception("spansignals: deferred derivation failed")

    def flush(self) -> int:
        """Derive everything pending now, on the caller's thread; returns how many items."""
        pending = self._pending
        if not pending:
            return 0
        done = 0
        with self._drain_lock:
            popleft = pending.popleft
            while True:
                batch = []
                try:
                    for _ in range(512):
                        batch.append(popleft())
                except IndexError:
                    pass
                if not batch:
                    break
                self._consume(batch)
                done += len(batch)
        return done

    @property
    def pending(self) -> int:
        """Items waiting for derivation."""
        return len(self._pending)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker and derive what is pending (on this thread)."""
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.flush()
