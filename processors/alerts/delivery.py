"""Background delivery: a bounded queue and a thread per destination, retries with backoff.

:meth:`DeliveryWorker.submit` never blocks: when the queue is full the notification is dropped
and counted (``outcome="dropped"``), because the alerting worker (and above all the span path)
must never wait for a notifier. The worker thread delivers in order; a failure that may be
retried (:class:`~.notifiers.base.DeliveryError` with ``retryable``) waits an exponential
backoff with jitter (``initial_backoff * 2**n`` capped at ``max_backoff``, then a random 50-100%
of it), or the server's ``Retry-After`` when given (capped at ``max_retry_after``), up to
``max_attempts`` attempts; permanent failures (4xx other than 429, SSRF refusals) are not
retried. Every outcome is reported to ``on_outcome(receiver, outcome)``: ``sent``, ``retried``,
``failed`` or ``dropped``.

One worker per destination keeps a dead or slow destination from delaying the others.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .notification import Notification
from .notifiers.base import DeliveryError, Notifier

__all__ = ["DeliveryWorker", "RetryPolicy"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and waits (seconds). Defaults: 6 attempts, 1 s doubling to 60 s, Retry-After ≤ 5 min."""

    max_attempts: int = 6
    initial_backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float = 300.0

    def delay(
        self, attempt: int, retry_after: float | None, rand: Callable[[], float] = random.random
    ) -> float:
        """Wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        backoff = min(self.max_backoff, self.initial_backoff * (2 ** (attempt - 1)))
        return backoff * (0.5 + 0.5 * rand())


class DeliveryWorker:
    """Delivers notifications to one notifier from a bounded queue on its own thread."""

    def __init__(
        self,
        receiver: str,
        notifier: Notifier,
        *,
        queue_size: int = 1000,
        policy: RetryPolicy | None = None,
        on_outcome: Callable[[str, str], None] = lambda receiver, outcome: None,
        wait: Callable[[float], bool] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.receiver = receiver
        self.notifier = notifier
        self.policy = policy or RetryPolicy()
        self._queue: queue.Queue[Notification | None] = queue.Queue(maxsize=queue_size)
        self._on_outcome = on_outcome
        self._stop = threading.Event()
        # ``wait(seconds)`` returns True when the worker should stop; tests inject a recorder.
        self._wait = wait or self._stop.wait
        self._rand = rand
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"spansignals-notify-{self.receiver}", daemon=True
            )
            self._thread.start()

    def submit(self, notification: Notification) -> bool:
        """Queue ``notification``; ``False`` (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(notification)
            return True
        except queue.Full:
            self._on_outcome(self.receiver, "dropped")
            _logger.warning(
                "spansignals: notification queue of receiver %s is full; dropped one", self.receiver
            )
            return False

    def pending(self) -> int:
        """Notifications waiting in the queue."""
        return self._queue.qsize()

    def deliver(self, notification: Notification) -> bool:
        """Deliver one notification with retries on the calling thread; whether it was sent."""
        attempt = 0
        while True:
            attempt += 1
            try:
                self.notifier.send(notification)
            except DeliveryError as exc:
                if not exc.retryable or attempt >= self.policy.max_attempts:
                    self._on_outcome(self.receiver, "failed")
                    _logger.warning(
                        "spansignals: notification to %s failed after %d attempt(s): %s",
                        self.receiver,
                        attempt,
                        exc,
                    )
                    return False
                delay = self.policy.delay(attempt, exc.retry_after, self._rand)
                self._on_outcome(self.receiver, "retried")
                _logger.info("spansignals: retrying %s in %.1fs: %s", self.receiver, delay, exc)
                if self._wait(delay):
                    self._on_outcome(self.receiver, "failed")
                    return False
            except Exception as exc:  # a notifier bug must not kill the worker
                self._on_outcome(self.receiver, "failed")
                _logger.exception("spansignals: notifier %s raised %s", self.receiver, type(exc).__name__)
                return False
            else:
                self._on_outcome(self.receiver, "sent")
                return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.deliver(item)

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout`` (no more retry waits), then stop the thread.

        Whatever is still queued afterwards is counted ``dropped``: nothing is lost uncounted."""
        thread, self._thread = self._thread, None
        if thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout)
            thread.join(timeout)
            self._stop.set()  # aborts a retry wait in progress
            thread.join(0.5)
        self._stop.set()
        left = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                left += 1
                self._on_outcome(self.receiver, "dropped")
        if left:
            _logger.warning(
                "spansignals: %d notification(s) for %s not delivered at shutdown", left, self.receiver
            )
        if thread is None or not thread.is_alive():
            self.notifier.close()
