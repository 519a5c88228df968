"""Instrument one httpx client with spansignals' hooks."""

from __future__ import annotations

import logging
from typing import Any

from ._configure import active_telemetry
from .httpx_hooks import HttpxHooks

__all__ = ["instrument_client"]

_logger = logging.getLogger(__name__)


def instrument_client(client: Any, *, tracer_provider: Any = None, meter_provider: Any = None) -> bool:
    """Instrument one ``httpx.Client`` or ``httpx.AsyncClient`` with spansignals' hooks.

    For apps that turned global httpx instrumentation off (``configure(instrument_httpx=False)``
    or ``SPANSIGNALS_INSTRUMENT_HTTPX=false``). Uses the active ``configure()`` handle's hooks and
    providers (default: the built-in provider table and the global providers). Returns ``False``
    and leaves the client alone when every client is already instrumented (a second span per
    request would double-count) or the client was already instrumented by this function.
    """
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    if HTTPXClientInstrumentor().is_instrumented_by_opentelemetry:
        return False
    if getattr(client, "_is_instrumented_by_opentelemetry", False):
        return False
    telemetry = active_telemetry()
    hooks = telemetry.hooks if telemetry is not None and telemetry.hooks is not None else HttpxHooks()
    if telemetry is not None:
        tracer_provider = tracer_provider or telemetry.tracer_provider
        meter_provider = meter_provider or telemetry.meter_provider
    import httpx

    is_async = isinstance(client, httpx.AsyncClient)
    HTTPXClientInstrumentor.instrument_client(
        client,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        request_hook=hooks.async_request_hook if is_async else hooks.request_hook,
        response_hook=hooks.async_response_hook if is_async else hooks.response_hook,
    )
    return True
