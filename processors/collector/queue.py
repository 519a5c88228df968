"""The bounded queue between the receivers (which acknowledge) and an exporter's sender.

A :class:`Batch` is one received request, kept as the protobuf bytes that will be sent downstream
(the received bytes when nothing mutated them). Every exporter has its own queue, as in the OTel
Collector's exporterhelper, so a slow downstream never holds back another.

:class:`MemoryQueue` (the default) is bounded by items (spans, metric data points or log records)
and by bytes (the config's defaults: 100k items, 24 MiB; about 200 requests of 512 spans). A batch
stays counted until the sender acknowledges it (delivered or dropped), so ``items`` is exactly
what is "still queued" in the accounting ``acked = delivered + dropped + still_queued``. When a
batch does not fit, :meth:`put` raises :class:`QueueFull`, which receivers answer with a retryable
refusal (gRPC ``UNAVAILABLE`` + ``RetryInfo``, HTTP 503 + ``Retry-After``). One batch bigger than
the whole bound is still accepted into an empty queue (refusing it forever would only make the
client drop it).

:meth:`get` takes an optional ``admit(ready_bytes)`` gate: a consumer waits until a batch is ready
*and* the gate lets it start, and :meth:`wake` has waiting consumers ask the gate again (the
exporter worker uses it to hold a send back while another is in flight, so batches merge; see
:mod:`.forwarding`). Waiting is a plain future per waiting consumer rather than an
``asyncio.Condition``: nothing else waits on the queue, so the condition's lock was pure overhead
on every request.

Once a queue that held at least :data:`RECLAIM_AFTER_BYTES` has given nearly all of it back, it
calls ``on_drained`` (the forwarder passes :func:`.admission.release_free_memory`): glibc keeps the
freed requests' pages (fragmented between live blocks, so its own trimming of the heap's top does
not return them), and a full queue that drained left the collector ~30 MB over its baseline
for good (``benchmarks/collector_queue_memory.py``).

The persistent variant lives in :mod:`.persistent_queue` and has the same interface.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .refusals import Refused

__all__ = [
    "RECLAIM_AFTER_BYTES",
    "SIGNAL_LOGS",
    "SIGNAL_METRICS",
    "SIGNAL_TRACES",
    "Backpressure",
    "Batch",
    "MemoryQueue",
    "QueueFull",
    "QueueUnavailable",
    "Waiters",
]

_logger = logging.getLogger(__name__)

SIGNAL_TRACES, SIGNAL_METRICS, SIGNAL_LOGS = "traces", "metrics", "logs"
RECLAIM_AFTER_BYTES = 8 * 1024 * 1024
"""A queue that held at least this much calls ``on_drained`` once it is down to a sixteenth of
its peak: smaller peaks leave too little behind to be worth a ``malloc_trim`` (a few ms)."""
RECLAIM_INTERVAL_S = 1.0
"""At most one ``on_drained`` call a second, however often a queue fills and drains."""


class Backpressure(Refused):
    """The collector cannot take the request now; the client should retry after ``retry_after``.

    A :class:`~.refusals.Refused`, so the receivers answer it as every retryable refusal."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, retry_after)

    @property
    def retry_after(self) -> float:
        return self.retry_after_s


class QueueFull(Backpressure):
    """No room left in a queue (items or bytes)."""


class QueueUnavailable(Backpressure):
    """The queue cannot store durably right now (disk full, I/O error): nothing was acknowledged."""


@dataclass(eq=False)
class Batch:
    """One request on its way downstream: ``payload`` is an OTLP ``Export*ServiceRequest``.

    ``size`` is the payload's length when the batch was made, and stays what the queue counts
    even while a sender has swapped the payload out (see :meth:`.forwarding.ExporterWorker._send_next`:
    a merged send holds the bytes of its parts, so the parts need not)."""

    signal: str
    payload: bytes
    items: int
    id: int = 0  # the persistent queue's row id
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.payload)


Admit = Callable[[int], bool]
"""A consumer's gate: given the bytes of the batches ready (not in flight), may it start now?"""


class Waiters:
    """Consumers waiting for a batch: one future each, woken one at a time (:meth:`wake_one`, a
    batch was queued) or all together (:meth:`wake_all`, a gate may have opened). Use from one
    event loop."""

    def __init__(self) -> None:
        self._futures: collections.deque[asyncio.Future[None]] = collections.deque()

    async def wait(self) -> None:
        """Sleep until woken. A wake-up that lands on a consumer cancelled at the same moment is
        passed on, so a queued batch never waits for the next put."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.wake_one()
            raise
        finally:
            if future in self._futures:  # cancelled before anything woke it
                self._futures.remove(future)

    def wake_one(self) -> None:
        while self._futures:
            future = self._futures.popleft()
            if not future.done():
                future.set_result(None)
                return

    def wake_all(self) -> None:
        futures, self._futures = self._futures, collections.deque()
        for future in futures:
            if not future.done():
                future.set_result(None)


class MemoryQueue:
    """FIFO of batches bounded by ``max_items`` and ``max_bytes``; ``retry_after`` is the hint
    given to refused clients. Use from one event loop."""

    def __init__(
        self,
        *,
        max_items: int = 200_000,
        max_bytes: int = 256 * 1024 * 1024,
        retry_after: float = 1.0,
        on_drained: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.retry_after = retry_after
        self.on_drained = on_drained
        self.items = 0  # queued + in flight (not yet acknowledged by the sender)
        self.size_bytes = 0
        self.ready_bytes = 0  # queued and not in flight
        self._ready: collections.deque[Batch] = collections.deque()
        self._waiters = Waiters()
        self._peak_bytes = 0  # the most held since on_drained was last called (or not needed)
        self._clock = clock
        self._drained_at = float("-inf")

    def fits(self, items: int, nbytes: int) -> bool:
        """Whether a batch of this size would be accepted now."""
        if self.items == 0:
            return True
        return self.items + items <= self.max_items and self.size_bytes + nbytes <= self.max_bytes

    async def put(self, batch: Batch) -> None:
        """Enqueue or raise :class:`QueueFull`."""
        if not self.fits(batch.items, batch.size):
            raise QueueFull("the collector's export queue is full; retry later", self.retry_after)
        self.items += batch.items
        self.size_bytes += batch.size
        self.ready_bytes += batch.size
        self._peak_bytes = max(self._peak_bytes, self.size_bytes)
        self._ready.append(batch)
        self._waiters.wake_one()

    async def get(self, admit: Admit | None = None) -> Batch:
        """The oldest batch not in flight, once one is ready and ``admit(ready_bytes)`` (if given)
        allows; it stays counted until :meth:`ack`."""
        while not (self._ready and (admit is None or admit(self.ready_bytes))):
            await self._waiters.wait()
        batch = self._ready.popleft()
        self.ready_bytes -= batch.size
        return batch

    def wake(self) -> None:
        """Have every consumer waiting in :meth:`get` ask its ``admit`` gate again."""
        self._waiters.wake_all()

    def try_get(self, signal: str, max_bytes: int) -> Batch | None:
        """The next batch without waiting, if one is ready, of ``signal`` and at most ``max_bytes``."""
        if self._ready and self._ready[0].signal == signal and self._ready[0].size <= max_bytes:
            batch = self._ready.popleft()
            self.ready_bytes -= batch.size
            return batch
        return None

    def release(self, batch: Batch) -> None:
        """Put an unacknowledged batch back at the head (the sender stopped before finishing it)."""
        self._ready.appendleft(batch)
        self.ready_bytes += batch.size

    async def ack(self, batch: Batch) -> None:
        """The batch is done with (delivered, or dropped and counted)."""
        self.items -= batch.items
        self.size_bytes -= batch.size
        self._check_drained()

    async def ack_many(self, batches: list[Batch]) -> None:
        """:meth:`ack` for each; never suspends, so a cancellation cannot split it."""
        for batch in batches:
            self.items -= batch.items
            self.size_bytes -= batch.size
        self._check_drained()

    def _check_drained(self) -> None:
        """Call ``on_drained`` once a large peak is nearly all given back (module docstring)."""
        peak = self._peak_bytes
        if peak < RECLAIM_AFTER_BYTES or self.size_bytes > peak // 16:
            return
        now = self._clock()
        if now - self._drained_at < RECLAIM_INTERVAL_S:
            return
        self._drained_at = now
        self._peak_bytes = self.size_bytes
        if self.on_drained is not None:
            try:
                self.on_drained()
            except Exception:  # reclaiming memory is an optimisation: never fail an ack over it
                _logger.exception("spansignals collector: releasing free memory failed")

    def empty(self) -> bool:
        return self.items == 0

    def take_all(self) -> list[Batch]:
        """Remove and return every batch not in flight (shutdown accounting)."""
        out = list(self._ready)
        self._ready.clear()
        self.ready_bytes = 0
        return out

    async def close(self) -> None:
        """Nothing to release for memory."""
