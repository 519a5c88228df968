"""Forwarding: every accepted request is queued per exporter and sent downstream with retries.

:class:`Forwarder` is what the receivers talk to. :meth:`Forwarder.submit` puts one request (its
protobuf bytes, the received ones when nothing changed them) into every exporter's queue and
returns once all of them hold it — only then is the client acknowledged; it raises
:class:`~.queue.Backpressure` when a queue is full or cannot store durably, which the receivers
answer with a retryable refusal. With several exporters a refusal after the first queue took the
batch means that exporter may see the client's retry as a duplicate (bounded by one request).

Each :class:`ExporterWorker` runs ``consumers`` tasks (default 4 for a memory queue, 1 for a
persistent one) that take the oldest batch — merged with the batches of the same signal queued
right behind it, up to ``max_request_bytes`` (default 4 MiB, the usual receive limit of OTLP
servers): serialized ``Export*ServiceRequest`` messages concatenate into one valid message, so
merging costs no re-encoding and one round trip carries many requests — send it, and retry
failures with exponential backoff and jitter (``retry``: initial 5 s, times 1.5, at most 30 s,
give up after 300 s) — or exactly the server's ``RetryInfo`` / ``Retry-After`` hint when it gives
one. Permanent errors are not retried.

``consumers`` is how many sends may be in flight at once, not how many start at once: a consumer
starts a send when no other send awaits an answer, when :data:`SEND_EARLY_BYTES` (512 KiB, or
``max_request_bytes`` if smaller) are waiting, or when the newest send has been out for
:data:`SEND_LINGER_S` (20 ms). Otherwise the batches wait behind the send in flight and go out
merged with it. Each send costs the collector CPU in grpc (call setup, completion, thread
wake-ups) whatever its size: under ``benchmarks/collector_throughput.py``'s load, four consumers
that each took whatever was ready sent ~1.4-1.9 received requests per send; held back, ~4, and
the collector's CPU outside the receiver handler fell from 0.96 to 0.77 ms per request (means of
three interleaved 8 s runs each, load ~3.8; ``benchmarks/collector_forward.py`` times the
forwarding path alone). Holding back longer merges more (a whole ``max_request_bytes`` and
50 ms: ~15 per send) but keeps far more in the queue
(against the benchmark's sink, a fifth of the default bound in steady state, and the whole bound
when that sink slowed down: clients were refused), because one big send at a time leaves the
downstream idle between answer and next send; the two limits above keep the queue within a few
thousand spans there.

Accounting, per exporter, in items (spans for traces):

* ``spansignals_exporter_spans_total{exporter, outcome}``: ``sent`` (downstream accepted them),
  ``failed`` (an attempt failed and will be retried; counted per attempt), ``dropped`` (given up);
* ``spansignals_exporter_dropped_spans_total{exporter, reason}``: why: ``permanent``,
  ``retries_exhausted``, ``rejected`` (a downstream ``partial_success``), ``shutdown``, ``corrupt``;
* ``spansignals_exporter_queue_spans{exporter}``: spans queued or in flight;
* ``spansignals_exporter_items_total{exporter, signal, outcome}``: the same for metric data points
  and log records (``signal`` metrics or logs; outcome sent, failed, dropped).
* ``spansignals_exporter_send_duration_seconds{exporter}`` (histogram): how long each attempt
  took, whatever its answer, and ``spansignals_exporter_timeouts_total{exporter}``: attempts that
  got no answer within ``timeout`` (each also logged at WARNING with the batch's size and the
  sends in flight). A downstream that stalls is otherwise visible only as delivery latency.

So ``acked = sent + dropped + queue`` holds per exporter at every moment a batch is not in flight.

Readiness (:meth:`Forwarder.ready`) means "the receivers would take a request now": false from a
refusal (a queue without room for the request, or unable to store it) until every queue has room
for a request of the refused size again, or a request is accepted. A failing downstream alone does
not make the collector unready: while the queue has room it keeps accepting, which is what the
queue is for (and a Service whose every endpoint shares the failing downstream would otherwise
have no endpoint left to buffer anything). Sends failing for longer than ``unready_after``
(default 30 s; the key's name predates this) without a success are logged once per streak.
Shutdown (:meth:`Forwarder.stop`)
lets the workers drain for up to ``timeout`` seconds; then, with the memory queue, whatever is left
is counted as dropped (reason ``shutdown``) and logged with its count; the persistent queue keeps
it on disk for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..config.collector import RetryConfig
from ..families import CounterFamily, GaugeFamily, HistogramFamily, MetricFamily
from .admission import release_free_memory
from .decoding import parse_protobuf_request
from .exporter import Attempt, Sender, build_sender
from .persistent_queue import SqliteQueue
from .pipeline import count_spans
from .queue import SIGNAL_TRACES, Batch, MemoryQueue, QueueFull
from .workers import worker_index

__all__ = ["ExporterFamilies", "ExporterWorker", "Forwarder", "RetryPolicy", "TraceForwarding"]

_logger = logging.getLogger(__name__)

OUTCOME_SENT, OUTCOME_FAILED, OUTCOME_DROPPED = "sent", "failed", "dropped"
SEND_LINGER_S = 0.02
"""How long the newest send may be out before another consumer starts one beside it anyway:
the most a batch waits behind a slow or stalled send. A downstream that answers within it gets
one send at a time, merged."""
SEND_EARLY_BYTES = 512 * 1024
"""Bytes waiting (or ``max_request_bytes`` if smaller) at which another send starts beside the
one in flight without waiting for the linger: a downstream that slows down gets sends in
parallel again before much piles up in the queue."""
SEND_DURATION_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RetryPolicy:
    """Backoff schedule from a ``RetryConfig`` (default: the config's defaults)."""

    def __init__(
        self, config: RetryConfig | None = None, *, rand: Callable[[], float] = random.random
    ) -> None:
        config = config or RetryConfig()
        self.enabled = config.enabled
        self.initial = config.initial_interval
        self.max_interval = config.max_interval
        self.max_elapsed = config.max_elapsed_time
        self.multiplier = config.multiplier
        self.randomization = config.randomization_factor
        self._rand = rand

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based), jittered by ± ``randomization``."""
        base = min(self.max_interval, self.initial * self.multiplier ** (attempt - 1))
        return base * (1 - self.randomization + 2 * self.randomization * self._rand())


def _unmerge(parts: list[Batch], merged: bytes) -> None:
    """Give each part of a merged send its own bytes again, cut from the merged ones (a copy:
    only when the parts must be sent or queued on their own)."""
    offset = 0
    for part in parts:
        if len(part.payload) != part.size:
            part.payload = merged[offset : offset + part.size]
        offset += part.size


class ExporterFamilies:
    """The exporter families, shared by every exporter of one collector."""

    def __init__(self) -> None:
        self.queues: dict[str, Any] = {}
        self.spans = CounterFamily(
            "spansignals.exporter.spans",
            "Spans handled by the collector's exporters, by exporter and outcome (sent, failed, dropped).",
            "{span}",
            ("exporter", "outcome"),
            max_series=64,
        )
        self.dropped = CounterFamily(
            "spansignals.exporter.dropped.spans",
            "Spans an exporter gave up on, by reason (permanent, retries_exhausted, rejected,"
            " shutdown, corrupt).",
            "{span}",
            ("exporter", "reason"),
            max_series=64,
        )
        self.items = CounterFamily(
            "spansignals.exporter.items",
            "Metric data points and log records handled by the exporters, by signal and outcome.",
            "{item}",
            ("exporter", "signal", "outcome"),
            max_series=64,
        )
        self.send_duration = HistogramFamily(
            "spansignals.exporter.send.duration",
            "Duration of each send attempt to a downstream, whatever its answer.",
            "s",
            ("exporter",),
            SEND_DURATION_BOUNDS,
            max_series=32,
        )
        self.timeouts = CounterFamily(
            "spansignals.exporter.timeouts",
            "Send attempts that got no answer within the exporter's timeout (retried).",
            "{attempt}",
            ("exporter",),
            max_series=32,
        )
        self.queue_spans = GaugeFamily(
            "spansignals.exporter.queue.spans",
            "Items queued or in flight per exporter (spans, data points and log records).",
            "{span}",
            ("exporter",),
            callback=self._queue_sizes,
            max_series=32,
        )

    def _queue_sizes(self) -> Iterable[tuple[tuple[Any, ...], float]]:
        return [((name,), float(queue.items)) for name, queue in list(self.queues.items())]

    def metric_families(self) -> list[MetricFamily]:
        return [self.spans, self.dropped, self.items, self.queue_spans, self.send_duration, self.timeouts]

    def count(self, exporter: str, signal: str, outcome: str, items: int, reason: str = "") -> None:
        if items <= 0:
            return
        if signal == SIGNAL_TRACES:
            self.spans.add((exporter, outcome), items)
            if outcome == OUTCOME_DROPPED:
                self.dropped.add((exporter, reason), items)
        else:
            self.items.add((exporter, signal, outcome), items)


class ExporterWorker:
    """One downstream: its queue, its sender, and ``consumers`` tasks delivering in order, at
    most ``consumers`` sends in flight (another starts only as the module docstring says)."""

    def __init__(
        self,
        name: str,
        sender: Sender,
        queue: MemoryQueue | SqliteQueue,
        families: ExporterFamilies,
        *,
        retry: RetryPolicy | None = None,
        consumers: int = 1,
        max_request_bytes: int = 4 * 1024 * 1024,
        unready_after: float = 30.0,
        send_linger: float = SEND_LINGER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.sender = sender
        self.queue = queue
        self.families = families
        self.retry = retry or RetryPolicy()
        self.consumers = consumers
        self.max_request_bytes = max_request_bytes
        self.unready_after = unready_after
        self.send_linger = send_linger
        self._early_bytes = min(max_request_bytes, SEND_EARLY_BYTES)
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._failing_since: float | None = None
        self._streak_logged = False
        self.in_flight = 0  # sends awaiting an answer right now (at most ``consumers``)
        self._newest_send_at = float("-inf")
        families.queues[name] = queue
        if isinstance(queue, SqliteQueue):
            queue.on_corrupt = lambda batch: self._drop(batch, "corrupt")

    async def start(self) -> None:
        if isinstance(self.queue, SqliteQueue):
            await self.queue.open()
        self._tasks = [
            asyncio.create_task(self._consume(), name=f"spansignals-exporter-{self.name}-{i}")
            for i in range(self.consumers)
        ]

    def failing_for(self) -> float:
        """Seconds since the first failed attempt with no success after it (0 when not failing)."""
        since = self._failing_since
        return 0.0 if since is None else self._clock() - since

    def _failed(self, attempt: Attempt) -> None:
        """Start or extend the failure streak; log it once when it passes ``unready_after``."""
        if self._failing_since is None:
            self._failing_since = self._clock()
            self._streak_logged = False
        elif not self._streak_logged and self.failing_for() >= self.unready_after:
            self._streak_logged = True
            _logger.warning(
                "spansignals collector: exporter %s: no successful send for %.0f s (%s); %d items"
                " queued, still accepting while the queue has room",
                self.name,
                self.failing_for(),
                attempt.reason,
                self.queue.items,
            )

    def _succeeded(self) -> None:
        if self._streak_logged:
            _logger.warning(
                "spansignals collector: exporter %s: sending again after %.0f s of failures",
                self.name,
                self.failing_for(),
            )
        self._failing_since = None
        self._streak_logged = False

    def _take_more(self, first: Batch) -> list[Batch]:
        """``first`` plus the batches of the same signal ready right behind it, up to
        ``max_request_bytes`` in all."""
        parts = [first]
        size = first.size
        while size < self.max_request_bytes:
            more = self.queue.try_get(first.signal, self.max_request_bytes - size)
            if more is None:
                break
            parts.append(more)
            size += more.size
        return parts

    def _admit(self, ready_bytes: int) -> bool:
        """Whether a consumer may start a send now, with ``ready_bytes`` waiting: see the module
        docstring (with ``max_request_bytes`` 0, nothing merges, so nothing is held back)."""
        return (
            self.in_flight == 0
            or ready_bytes >= self._early_bytes
            or asyncio.get_running_loop().time() - self._newest_send_at >= self.send_linger
        )

    async def _consume(self) -> None:
        admit = self._admit if self.consumers > 1 else None  # one consumer: never two in flight
        while not self._stopping.is_set():
            if not await self._send_next(admit):
                return

    async def _send_next(self, admit: Callable[[int], bool] | None) -> bool:
        """Take the oldest batch (merged with those ready behind it), deliver it, acknowledge it;
        False when stopping left some of it unfinished (released back to the queue's head).

        A call of its own so that nothing it held outlives it: as one loop, each consumer kept
        its last send (the merged bytes and its parts, up to twice ``max_request_bytes``) while it
        waited for the next batch, 29 MB for four idle consumers after a full queue drained
        (``benchmarks/collector_queue_memory.py``)."""
        parts = self._take_more(await self.queue.get(admit))
        if len(parts) == 1:
            batch = parts[0]
        else:  # serialized messages concatenate into one: their repeated fields append
            payload = b"".join(part.payload for part in parts)
            batch = Batch(parts[0].signal, payload, sum(part.items for part in parts))
            for part in parts:  # the merged bytes hold them while in flight: one copy, not two
                part.payload = b""
        pending = list(parts)
        try:
            done = await self._deliver(batch, merged=len(parts) > 1)
            if done is None:  # permanent error on a merged send: one bad request must not
                _unmerge(parts, batch.payload)  # take the others with it, so each goes on its own
                for part in parts:
                    if not await self._deliver(part):
                        break
                    await self.queue.ack_many([pending.pop(0)])
                done = not pending
            elif done:
                pending.clear()  # delivered and counted: never released, even if cancelled now
                await self.queue.ack_many(parts)
        except asyncio.CancelledError:  # shutdown timeout: what is not done goes back
            self._release(pending, parts, batch)
            raise
        if not done:  # stopping with batches unfinished: back to the head for drain accounting
            self._release(pending, parts, batch)
        return bool(done)

    def _release(self, pending: list[Batch], parts: list[Batch], batch: Batch) -> None:
        if len(parts) > 1:
            _unmerge(parts, batch.payload)
        for part in reversed(pending):
            self.queue.release(part)

    async def _deliver(self, batch: Batch, *, merged: bool = False) -> bool | None:
        """Send until delivered or given up (True), or until stopping interrupts a retry (False);
        ``None`` (nothing counted) when a ``merged`` batch met a permanent error."""
        started = self._clock()
        attempt_no = 0
        while True:
            attempt_no += 1
            attempt = await self._attempt(batch, merged)
            if attempt.ok:
                self._succeeded()
                accepted = max(0, batch.items - attempt.rejected)
                self.families.count(self.name, batch.signal, OUTCOME_SENT, accepted)
                if attempt.rejected:
                    _logger.warning(
                        "spansignals collector: exporter %s: downstream rejected %d of %d %s"
                        " (partial success: %s)",
                        self.name,
                        attempt.rejected,
                        batch.items,
                        batch.signal,
                        attempt.reason[:200],
                    )
                    self._drop(batch, "rejected", min(attempt.rejected, batch.items))
                return True
            if not attempt.retryable and merged:
                return None
            if not attempt.retryable or not self.retry.enabled:
                _logger.warning(
                    "spansignals collector: exporter %s: dropping %d %s after a permanent error (%s)",
                    self.name,
                    batch.items,
                    batch.signal,
                    attempt.reason,
                )
                self._drop(batch, "permanent")
                return True
            self._failed(attempt)
            self.families.count(self.name, batch.signal, OUTCOME_FAILED, batch.items)
            wait = attempt.retry_after if attempt.retry_after is not None else self.retry.backoff(attempt_no)
            if self._clock() + wait - started > self.retry.max_elapsed:
                _logger.warning(
                    "spansignals collector: exporter %s: dropping %d %s, retries exhausted after %.0f s (%s)",
                    self.name,
                    batch.items,
                    batch.signal,
                    self._clock() - started,
                    attempt.reason,
                )
                self._drop(batch, "retries_exhausted")
                return True
            _logger.debug("exporter %s: %s, retrying in %.2f s", self.name, attempt.reason, wait)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                return False

    async def _attempt(self, batch: Batch, merged: bool) -> Attempt:
        """One send, timed; a timeout is counted and logged with what was in flight."""
        self.in_flight += 1
        sent_at = time.perf_counter()
        linger = None
        if self.consumers > 1:  # the gate of _admit opens after the linger: ask it again then
            loop = asyncio.get_running_loop()
            self._newest_send_at = loop.time()
            linger = loop.call_later(self.send_linger, self.queue.wake)
        try:
            attempt: Attempt = await self.sender.send(batch)
        finally:
            self.in_flight -= 1
            if linger is not None:
                linger.cancel()
                self.queue.wake()  # a slot is free (this consumer may back off before retrying)
        took = time.perf_counter() - sent_at
        self.families.send_duration.record((self.name,), took)
        if attempt.timed_out:
            self.families.timeouts.add((self.name,), 1)
            _logger.warning(
                "spansignals collector: exporter %s: no answer within %.1f s (%s; %s of %d %s,"
                " %d bytes; %d other sends in flight, %d items queued); retrying",
                self.name,
                took,
                attempt.reason,
                "a merged request" if merged else "a request",
                batch.items,
                batch.signal,
                batch.size,
                self.in_flight,
                self.queue.items,
            )
        return attempt

    def _drop(self, batch: Batch, reason: str, items: int | None = None) -> None:
        self.families.count(
            self.name, batch.signal, OUTCOME_DROPPED, batch.items if items is None else items, reason
        )

    async def stop(self, timeout: float) -> int:
        """Drain for up to ``timeout`` s, stop; return the items left undelivered (dropped for a
        memory queue, kept on disk for a persistent one)."""
        deadline = self._clock() + timeout
        while not self.queue.empty() and self._clock() < deadline:
            await asyncio.sleep(0.01)  # a drain poll, bounded by the shutdown timeout
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        left = self.queue.items
        if isinstance(self.queue, MemoryQueue):
            for batch in self.queue.take_all():
                self._drop(batch, "shutdown")
                await self.queue.ack(batch)
            if left:
                _logger.warning(
                    "spansignals collector: exporter %s: %d items not delivered within the %.1f s"
                    " shutdown timeout; counted as dropped (reason shutdown)",
                    self.name,
                    left,
                    timeout,
                )
        elif left:
            _logger.warning(
                "spansignals collector: exporter %s: %d items left in the persistent queue %s;"
                " they are sent at the next start",
                self.name,
                left,
                self.queue.path,
            )
        await self.sender.close()
        await self.queue.close()
        return left


class Forwarder:
    """Every exporter of the ``collector.exporters`` config, fed by :meth:`submit`."""

    def __init__(self, workers: list[ExporterWorker], families: ExporterFamilies) -> None:
        self.workers = workers
        self.families = families
        self._last_refusal_log = float("-inf")
        self._refused: tuple[int, int] | None = None  # (items, bytes) of the request last refused

    @classmethod
    def from_config(cls, collector: Any, *, families: ExporterFamilies | None = None) -> Forwarder:
        """Build (not start) from a ``CollectorConfig``; must be called on the running loop."""
        families = families or ExporterFamilies()
        workers = []
        exporters: Mapping[str, Any] = collector.exporters or {}
        for name, exporter in exporters.items():
            q = exporter.queue or collector.queue
            if q.kind == "persistent":
                # Worker processes (--workers) each own their file: a queue is never shared.
                index = worker_index()
                queue: MemoryQueue | SqliteQueue = SqliteQueue(
                    q.path,
                    name if index is None else f"{name}.worker{index}",
                    max_items=q.max_items,
                    max_bytes=q.max_bytes,
                    retry_after=q.retry_after,
                    synchronous=q.synchronous,
                )
            else:
                queue = MemoryQueue(
                    max_items=q.max_items,
                    max_bytes=q.max_bytes,
                    retry_after=q.retry_after,
                    on_drained=release_free_memory,
                )
            workers.append(
                ExporterWorker(
                    name,
                    build_sender(name, exporter),
                    queue,
                    families,
                    retry=RetryPolicy(exporter.retry),
                    consumers=q.consumers or (1 if q.kind == "persistent" else 4),
                    max_request_bytes=exporter.max_request_bytes,
                    unready_after=collector.unready_after,
                )
            )
        return cls(workers, families)

    def metric_families(self) -> list[MetricFamily]:
        return self.families.metric_families()

    async def start(self) -> None:
        for worker in self.workers:
            await worker.start()

    def ready(self) -> bool:
        """Whether the receivers would take a request now: no refusal since the last acceptance,
        or every queue has room again for a request of the size last refused.

        Not "no queue is full": a queue holding exactly its bound right after accepting a
        request would make readiness flap to 503 in the very moment the collector accepts.
        """
        refused = self._refused
        if refused is None:
            return True
        if all(worker.queue.fits(*refused) for worker in self.workers):
            self._refused = None
            return True
        return False

    def has_room(self, items: int, nbytes: int) -> bool:
        """Whether every queue would take a request of this size now."""
        return self._refusing(items, nbytes) is None

    def _refusing(self, items: int, nbytes: int) -> ExporterWorker | None:
        """The first exporter whose queue would refuse a request of this size now (logged at most
        once a minute), or ``None``; the answer is remembered for :meth:`ready`."""
        for worker in self.workers:
            if not worker.queue.fits(items, nbytes):
                self._refused = (items, nbytes)
                self._log_refusal(worker)
                return worker
        self._refused = None
        return None

    def _log_refusal(self, worker: ExporterWorker) -> None:
        now = time.monotonic()
        if now - self._last_refusal_log < 60.0:
            return
        self._last_refusal_log = now
        _logger.warning(
            "spansignals collector: exporter %s: queue full or not writable (%d items queued);"
            " refusing requests with a retry hint of %.1f s until it drains",
            worker.name,
            worker.queue.items,
            worker.queue.retry_after,
        )

    async def submit(self, signal: str, payload: bytes, items: int) -> None:
        """Queue the request for every exporter; raises ``Backpressure`` (nothing acknowledged)."""
        refusing = self._refusing(items, len(payload))
        if refusing is not None:
            raise QueueFull("the collector's export queue is full; retry later", refusing.queue.retry_after)
        for worker in self.workers:
            try:
                await worker.queue.put(Batch(signal, payload, items))
            except Exception:  # QueueUnavailable (disk): refusing until the queue can store again
                self._refused = (items, len(payload))
                raise

    async def stop(self, timeout: float) -> int:
        """Drain every exporter concurrently within ``timeout``; items left undelivered."""
        results = await asyncio.gather(*(worker.stop(timeout) for worker in self.workers))
        return sum(results)

    def describe(self) -> str:
        lines = []
        for worker in self.workers:
            kind = "persistent" if isinstance(worker.queue, SqliteQueue) else "memory"
            lines.append(f"forwarding to {worker.name} ({type(worker.sender).__name__}, {kind} queue)")
        return "\n".join(lines)


class TraceForwarding:
    """Puts the forwarder around a :class:`~.pipeline.TracePipeline` for the trace receivers.

    Receivers are given this object as their pipeline: :meth:`ingest` refuses a request (counted
    ``refused``) *before* derivation when a queue has no room, so a refused-then-retried request
    is derived once; :meth:`hook` is the receivers' ``forward`` callback, which queues the
    received bytes when ingest left the request unchanged and they are protobuf (OTLP/JSON bodies
    and requests with removed or redacted spans are re-encoded). Other attributes are the
    pipeline's. Until :attr:`forwarder` is set (the collector builds it on start), requests pass.
    """

    def __init__(self, pipeline: Any, forwarder: Forwarder | None = None) -> None:
        self.pipeline = pipeline
        self.forwarder = forwarder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipeline, name)

    def ingest(self, request: Any, transport: str, *, body_bytes: int = 0, body: bytes | None = None) -> Any:
        forwarder = self.forwarder
        if forwarder is None:
            return self.pipeline.ingest(request, transport, body_bytes=body_bytes, body=body)
        spans = count_spans(request)
        self._ensure_room(forwarder, transport, spans, body_bytes or request.ByteSize())
        return self.pipeline.ingest(request, transport, body_bytes=body_bytes, body=body, span_count=spans)

    def ingest_received(self, received: Any, transport: str) -> Any:
        """:meth:`ingest` for what the pipeline's ``receive`` decoded (its span count is known
        without the message, which may never have been built)."""
        forwarder = self.forwarder
        if forwarder is not None:
            self._ensure_room(forwarder, transport, received.span_count, len(received.body))
        return self.pipeline.ingest_received(received, transport)

    def _ensure_room(self, forwarder: Forwarder, transport: str, spans: int, nbytes: int) -> None:
        """Refuse (counted ``refused``) when a queue has no room for the request."""
        if not forwarder.has_room(spans, nbytes):
            self.pipeline.refuse(transport, spans)
            retry_after = max((w.queue.retry_after for w in forwarder.workers), default=1.0)
            raise QueueFull("the collector's export queue is full; retry later", retry_after)

    def hook(self, transport: str) -> Callable[[Any, bytes, Any], Any]:
        """The ``forward`` callback for the receiver of ``transport``."""

        async def forward(request: Any, body: bytes, result: Any) -> None:
            forwarder = self.forwarder
            if forwarder is None or not result.accepted:
                return
            # A non-empty protobuf ExportTraceServiceRequest starts with field 1's tag (0x0a);
            # anything else (JSON, unusual field order) is re-encoded, which is always correct.
            # ``request`` is None when the native path read the body without upb (never modified).
            raw = not result.modified and body[:1] == b"\n"
            if raw:
                payload = body
            else:
                message = request if request is not None else parse_protobuf_request(body)
                payload = message.SerializeToString()
            try:
                await forwarder.submit(SIGNAL_TRACES, payload, result.accepted)
            except Exception:  # QueueFull / QueueUnavailable: nothing acknowledged
                self.pipeline.refuse(transport, result.accepted)
                raise

        return forward
