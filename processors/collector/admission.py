"""Memory limit as backpressure: refuse (retryably) before memory runs out, never crash or drop.

Two budgets, both checked when a request arrives and before its body is read when the size is
declared:

* **In-flight bytes** (``max_inflight_bytes``, default 128 MiB): the sum of the (decompressed)
  bodies of requests being handled right now. Exact and cheap; it bounds what many concurrent
  clients can pin at once, whatever their individual request sizes.
* **Process RSS** (``memory_limit_bytes``, default 1 GiB; ``None`` turns it off), read with psutil
  at most every ``rss_check_interval_s`` (default 0.2 s). CPython rarely gives freed memory back,
  so when RSS is over the limit the controller first collects garbage and asks glibc to return
  free pages (``malloc_trim``, at most once a second) and reads RSS again before refusing: a
  past spike must not latch the collector into refusing forever.

Over either budget, :meth:`AdmissionControl.hold` raises :class:`~.refusals.Refused`, which the
receivers answer with gRPC ``UNAVAILABLE`` + ``RetryInfo`` or HTTP 503 + ``Retry-After``
(RELIABILITY.md promise 2: never ``UNKNOWN``/``INTERNAL``/``RESOURCE_EXHAUSTED``). Refusals are
counted in ``spansignals_receiver_refusals_total{reason}``; the OTLP/HTTP receiver's connection
limit (:class:`~.http_protocol.ConnectionLimit`) counts the 503 it sends on a connection over the
limit there too (reason ``max_connections``).

Single event loop: no locks; ``hold`` is a synchronous context manager around synchronous work.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..families import CounterFamily
from .refusals import DEFAULT_RETRY_AFTER_S, Refused

__all__ = [
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "DEFAULT_MEMORY_LIMIT_BYTES",
    "REASON_CONNECTIONS",
    "REASON_INFLIGHT",
    "REASON_MEMORY",
    "AdmissionControl",
    "process_rss",
    "release_free_memory",
]

_logger = logging.getLogger(__name__)

DEFAULT_MAX_INFLIGHT_BYTES = 128 * 1024 * 1024
DEFAULT_MEMORY_LIMIT_BYTES = 1024 * 1024 * 1024
REASON_INFLIGHT = "inflight_bytes"
REASON_MEMORY = "memory_limit"
REASON_CONNECTIONS = "max_connections"
_TRIM_INTERVAL_S = 1.0


def process_rss() -> int:
    """Resident set size of this process in bytes (psutil)."""
    import psutil

    return int(psutil.Process(os.getpid()).memory_info().rss)


@functools.lru_cache(maxsize=1)
def _libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once: ``find_library`` runs ``ldconfig -p`` in a
    subprocess (2 ms here, more on a busy host, on the event loop), not worth repeating every
    second while over the memory limit."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def _malloc_trim() -> None:
    trim = _libc_malloc_trim()
    if trim is not None:
        trim(0)


def release_free_memory() -> None:
    """Give the allocator's free pages back to the OS (glibc ``malloc_trim(0)``; nothing where
    malloc is not glibc's). Called when a large forwarding queue has drained (:mod:`.queue`):
    the requests it held were freed, but glibc returns only the top of its heap by itself, and
    the freed pages sit between blocks still in use. Takes a few ms on the calling thread (2-6 ms
    for 30-80 MB of free heap here), so it is for rare events, not for every request."""
    _malloc_trim()


class AdmissionControl:
    """Admits requests while in-flight bytes and RSS are under their limits.

    ``rss`` and ``clock`` are injectable for tests (defaults: :func:`process_rss`,
    ``time.monotonic``); ``reclaim`` is what runs before refusing on RSS (default: ``gc.collect``
    then glibc ``malloc_trim``).
    """

    def __init__(
        self,
        *,
        max_inflight_bytes: int | None = DEFAULT_MAX_INFLIGHT_BYTES,
        memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT_BYTES,
        retry_after_s: float = DEFAULT_RETRY_AFTER_S,
        rss_check_interval_s: float = 0.2,
        rss: Callable[[], int] = process_rss,
        clock: Callable[[], float] = time.monotonic,
        reclaim: Callable[[], None] | None = None,
    ) -> None:
        self.max_inflight_bytes = max_inflight_bytes
        self.memory_limit_bytes = memory_limit_bytes
        self.retry_after_s = retry_after_s
        self._rss_interval = rss_check_interval_s
        self._rss = rss
        self._clock = clock
        self._reclaim = reclaim or self._default_reclaim
        self.inflight_bytes = 0
        self._rss_checked_at = -1e18
        self._over_memory = False
        self._trimmed_at = -1e18
        self.refusals = CounterFamily(
            "spansignals.receiver.refusals",
            "Requests refused with a retry hint, by reason (inflight_bytes, memory_limit, max_connections).",
            "{request}",
            ("reason",),
            max_series=8,
        )

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Reserve ``nbytes`` for the duration of the block; raises :class:`Refused` when over budget.

        A single request larger than the whole in-flight budget is still admitted when nothing
        else is in flight (the request size limit, not this, bounds one request).
        """
        self.check(nbytes)
        self.inflight_bytes += nbytes
        try:
            yield
        finally:
            self.inflight_bytes -= nbytes

    def check(self, nbytes: int = 0) -> None:
        """Raise :class:`Refused` if a request of ``nbytes`` cannot be admitted now."""
        limit = self.max_inflight_bytes
        if limit is not None and self.inflight_bytes and self.inflight_bytes + nbytes > limit:
            self.refusals.add((REASON_INFLIGHT,), 1)
            raise Refused("collector is busy (too many bytes in flight); retry later", self.retry_after_s)
        if self.memory_limit_bytes is not None and self._memory_exceeded():
            self.refusals.add((REASON_MEMORY,), 1)
            raise Refused("collector is over its memory limit; retry later", self.retry_after_s)

    def accepting(self) -> bool:
        """Whether a request would pass the memory limit now (readiness asks; RSS is re-read at
        most every ``rss_check_interval_s``, so a probe costs nothing most of the time). The
        in-flight budget is left out: it refuses only while other requests are being handled,
        for milliseconds."""
        return self.memory_limit_bytes is None or not self._memory_exceeded()

    def count_connection_refusal(self) -> None:
        """A connection over the receiver's connection limit was answered 503 (one refusal)."""
        self.refusals.add((REASON_CONNECTIONS,), 1)

    def _memory_exceeded(self) -> bool:
        now = self._clock()
        if now - self._rss_checked_at < self._rss_interval:
            return self._over_memory
        self._rss_checked_at = now
        limit = self.memory_limit_bytes or 0
        over = self._rss() > limit
        if over and now - self._trimmed_at >= _TRIM_INTERVAL_S:
            self._trimmed_at = now
            self._reclaim()
            over = self._rss() > limit
        if over != self._over_memory:
            _logger.warning(
                "spansignals collector: RSS %s the memory limit of %d MiB; %s",
                "over" if over else "back under",
                limit >> 20,
                "refusing requests with a retry hint" if over else "accepting requests again",
            )
        self._over_memory = over
        return over

    @staticmethod
    def _default_reclaim() -> None:
        gc.collect()
        _malloc_trim()
