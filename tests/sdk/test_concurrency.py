"""Many app threads and tasks calling at once: derived totals stay exact."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import httpx
from sdk_fixtures import LOCAL_PROVIDERS, LocalServer, Providers

from spansignals.sdk import Telemetry


def test_threads_count_exactly(
    configured: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """8 threads x 25 sync calls give exactly 200 client calls, each span with its own provider attributes."""
    configured(
        LOCAL_PROVIDERS, tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
    )
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with httpx.Client() as client:
                for i in range(25):
                    client.get(local_server.url(f"/w?key=CANARY&i={i}"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert providers.red_calls(span_kind="SPAN_KIND_CLIENT") == 200
    spans = providers.spans()
    assert len(spans) == 200
    assert all(s.attributes["spansignals.provider"] == "local-llm" for s in spans)
    assert not any("CANARY" in str(dict(s.attributes)) for s in spans)


async def test_async_tasks_count_exactly(
    configured: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """50 concurrent async calls give exactly 50 client calls; per-request hook state never crosses tasks."""
    seen: list[tuple[str, str]] = []

    class PathEnricher:
        name = "path"

        def on_request(self, span: object, request: httpx.Request, provider: object) -> str:
            return request.url.path

        def on_response(
            self, span: object, request: httpx.Request, response: object, provider: object, state: str
        ) -> None:
            seen.append((state, request.url.path))

    from spansignals.sdk import register_enricher_factory

    unregister = register_enricher_factory(lambda config, engine: PathEnricher())
    try:
        configured(
            LOCAL_PROVIDERS,
            tracer_provider=providers.tracer_provider,
            meter_provider=providers.meter_provider,
        )
        async with httpx.AsyncClient() as client:
            await asyncio.gather(*(client.get(local_server.url(f"/t{i}")) for i in range(50)))
    finally:
        unregister()
    assert providers.red_calls(span_kind="SPAN_KIND_CLIENT") == 50
    assert len(seen) == 50 and all(state == path for state, path in seen)
