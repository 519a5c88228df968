"""``guard(client)``: stop httpx calls that would fail because of a rate limit or an open breaker.

>>> client = guard(httpx.Client())          # or httpx.AsyncClient()
>>> client.post("https://api.openai.com/v1/chat/completions", ...)   # may raise RequestBlocked

Before each request (an httpx *request event hook*, inserted first, so a blocked request never
reaches the transport, the instrumentation or the network) the guard resolves the provider from
the host and asks the rate-limit derivation (:meth:`RateLimitSpanProcessor.admission`) whether
the provider's last reported quota is exhausted, a ``Retry-After`` is pending, or its circuit
breaker is open (a half-open breaker lets its probe through). Then, by ``mode``:

- ``reject`` (default): raise :class:`RequestBlocked` (``provider``, ``reason``, ``retry_after``);
- ``wait``: wait until the reset (``asyncio.sleep`` for an ``AsyncClient``: the event loop keeps
  running) if that is within ``max_wait`` seconds (default 10), then check again and proceed;
  otherwise raise :class:`RequestBlocked`.

Defaults for ``mode`` and ``max_wait`` come from the ``ratelimits.guard`` config block. Each
decision is counted in ``spansignals_guard_decisions_total{provider,outcome}`` (``allowed``,
``delayed``, ``rejected``); hosts no provider entry knows pass without a check or a count.
Rejections and waits are added as events to the current span when one is recording.

The derivation is the running ``configure()``'s (looked up per request, so ``guard()`` may be
called before ``configure()``; with none active, requests pass), or ``processor=`` for tests and
apps that wire the engine themselves. The guard itself never fails a request: an internal error
is counted and the request goes ahead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from opentelemetry import trace

from spansignals.processors.ratelimit import Admission, RateLimitSpanProcessor, route_of_path
from spansignals.processors.view import KIND_CLIENT

from ._configure import active_telemetry

__all__ = ["RequestBlocked", "guard"]

_logger = logging.getLogger(__name__)

_C = TypeVar("_C")
_MIN_SLEEP_S = 0.01
_GUARD_MARK = "_spansignals_guard"


class RequestBlocked(Exception):
    """A guarded request was not sent: ``provider`` is rate limited or its breaker is open.

    ``retry_after`` is the number of seconds after which a retry may succeed (0 when unknown).
    """

    def __init__(self, provider: str, reason: str, retry_after: float) -> None:
        self.provider = provider
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(
            f"request to {provider} blocked by spansignals: {reason}; retry after {retry_after:.3g}s"
        )


_cached: tuple[Any, RateLimitSpanProcessor | None] = (None, None)


def _active_processor() -> RateLimitSpanProcessor | None:
    """The active ``configure()``'s rate-limit derivation (cached per handle)."""
    global _cached
    telemetry = active_telemetry()
    if telemetry is None or telemetry.is_shutdown or telemetry.engine is None:
        return None
    if _cached[0] is telemetry:
        return _cached[1]
    processor = telemetry.engine.get(RateLimitSpanProcessor.processor_name)
    if not isinstance(processor, RateLimitSpanProcessor):
        processor = None
    else:
        # The breakers decide the next request: client spans are derived inside span.end() now.
        processor.require_sync({KIND_CLIENT})
        if telemetry.tracer_provider is not None:
            # Label decisions with the app's service even before its first span reaches the processor.
            resource = getattr(telemetry.tracer_provider, "resource", None)
            name = resource.attributes.get("service.name") if resource is not None else None
            if isinstance(name, str) and name:
                processor.service_name = name
    _cached = (telemetry, processor)
    return processor


class _Guard:
    """The decision logic shared by the sync and async hooks."""

    def __init__(
        self,
        processor: RateLimitSpanProcessor | None,
        mode: str | None,
        max_wait: float | None,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        async_sleep: Callable[[float], Awaitable[Any]],
    ) -> None:
        if mode is not None and mode not in ("reject", "wait"):
            raise ValueError(f"mode: must be 'reject' or 'wait', got {mode!r}")
        if max_wait is not None and not max_wait >= 0:
            raise ValueError(f"max_wait: must be >= 0 seconds, got {max_wait!r}")
        self._fixed = processor
        if processor is not None:
            processor.require_sync({KIND_CLIENT})
        self._mode = mode
        self._max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep

    def _first_check(self, request: Any) -> tuple[Any, str, str | None, Admission | None]:
        """``(processor, provider, route, admission)``; processor ``None`` means "let it go"."""
        proc = self._fixed if self._fixed is not None else _active_processor()
        if proc is None:
            return None, "", None, None
        info = proc.providers.resolve(request.url.host)
        if info is None:
            return None, "", None, None
        route = route_of_path(request.url.path) if proc.by_route else None
        return proc, info.name, route, proc.admission(info.name, route)

    def _settings(self, proc: RateLimitSpanProcessor) -> tuple[str, float]:
        cfg = proc.config.guard
        return self._mode or cfg.mode, cfg.max_wait if self._max_wait is None else self._max_wait

    def _reject(self, proc: RateLimitSpanProcessor, admission: Admission) -> RequestBlocked:
        proc.count_decision(admission.provider, "rejected")
        _span_event("spansignals.guard.rejected", admission)
        _logger.debug(
            "spansignals: guard rejected a request to %s (%s)", admission.provider, admission.reason
        )
        return RequestBlocked(admission.provider, admission.reason, admission.retry_after)

    def _admit(self, request: Any) -> Iterator[float] | None:
        """Decide on ``request``: ``None`` when it may go now (counted as allowed, or not a
        provider's), else the waits of ``wait`` mode; raises :class:`RequestBlocked` to reject.

        The waits are a generator of seconds to sleep, each followed by a fresh admission check:
        the one wait loop for both hooks, which differ only in how they sleep (``time.sleep`` or
        ``await asyncio.sleep``). Exhausting it means the request goes (counted as delayed); it
        raises when the next wait would pass ``max_wait``.
        """
        try:
            proc, provider, route, admission = self._first_check(request)
        except Exception:
            _logger.debug("spansignals: guard check failed; request allowed", exc_info=True)
            return None
        if proc is None:
            return None
        if admission is None:
            proc.count_decision(provider, "allowed")
            return None
        mode, max_wait = self._settings(proc)
        if mode == "reject":
            raise self._reject(proc, admission)
        return self._waits(proc, provider, route, admission, max_wait)

    def _waits(
        self,
        proc: RateLimitSpanProcessor,
        provider: str,
        route: str | None,
        admission: Admission,
        max_wait: float,
    ) -> Iterator[float]:
        deadline = self._clock() + max_wait
        first = admission
        current: Admission | None = admission
        while current is not None:
            if current.retry_after > deadline - self._clock():
                raise self._reject(proc, current)
            yield max(current.retry_after, _MIN_SLEEP_S)
            current = proc.admission(provider, route)
        proc.count_decision(provider, "delayed")
        _span_event("spansignals.guard.delayed", first)

    def check(self, request: Any) -> None:
        """The sync request hook."""
        waits = self._admit(request)
        if waits is not None:
            for seconds in waits:
                self._sleep(seconds)

    async def acheck(self, request: Any) -> None:
        """The async request hook: waits with ``asyncio.sleep``, so the event loop keeps running."""
        waits = self._admit(request)
        if waits is not None:
            for seconds in waits:
                await self._async_sleep(seconds)


def _span_event(name: str, admission: Admission) -> None:
    try:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                name,
                {
                    "spansignals.provider": admission.provider,
                    "spansignals.guard.reason": admission.reason,
                    "spansignals.guard.retry_after_s": admission.retry_after,
                },
            )
    except Exception:
        _logger.debug("spansignals: guard span event failed", exc_info=True)


def guard(
    client: _C,
    *,
    mode: str | None = None,
    max_wait: float | None = None,
    processor: RateLimitSpanProcessor | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    async_sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> _C:
    """Return ``client`` (an ``httpx.Client`` or ``httpx.AsyncClient``) with the guard installed.

    ``mode`` (``reject`` | ``wait``) and ``max_wait`` (seconds) default to the ``ratelimits.guard``
    config; ``processor`` defaults to the active ``configure()``'s rate-limit derivation.
    ``clock``/``sleep``/``async_sleep`` are for tests. Guarding a client twice replaces the first
    guard. Raises ``TypeError`` for anything but an httpx client, ``ValueError`` for a bad mode.
    """
    import httpx

    g = _Guard(processor, mode, max_wait, clock, sleep, async_sleep)
    if isinstance(client, httpx.AsyncClient):

        async def hook(request: httpx.Request) -> None:
            await g.acheck(request)

    elif isinstance(client, httpx.Client):

        def hook(request: httpx.Request) -> None:  # type: ignore[misc]
            g.check(request)

    else:
        raise TypeError(f"guard() takes an httpx.Client or httpx.AsyncClient, got {type(client).__name__}")
    setattr(hook, _GUARD_MARK, g)
    target: Any = client
    hooks = target.event_hooks
    kept = [h for h in hooks.get("request", []) if not hasattr(h, _GUARD_MARK)]
    target.event_hooks = {"request": [hook, *kept], "response": list(hooks.get("response", []))}
    return client
