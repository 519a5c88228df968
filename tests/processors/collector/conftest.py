"""An in-process collector on free ports, with the RED derivation, for receiver tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from spansignals.processors.collector import Collector, CollectorSettings, Endpoint
from spansignals.processors.engine import SignalEngine
from spansignals.processors.factory import build_engine
from spansignals.processors.red import RedSpanProcessor

SMALL_LIMIT = 256 * 1024
ANY_PORT = Endpoint("127.0.0.1", 0)
_TEST_ENDPOINTS: dict[str, Any] = {
    "grpc_endpoint": ANY_PORT,
    "http_endpoint": ANY_PORT,
    "metrics_endpoint": ANY_PORT,
    "shutdown_timeout_s": 1.0,
}


@pytest.fixture
async def make_collector() -> AsyncIterator[Callable[..., Any]]:
    """Start in-process Collectors (port 0 everywhere, 1 s shutdown, then ``overrides`` of
    settings fields); stopped at teardown.

    With ``config`` (a loaded config): its settings, its engine, its forwarding and alerting.
    Without: the default settings and the RED derivation alone (or ``engine``).
    """
    made: list[Collector] = []

    async def make(config: Any = None, *, engine: SignalEngine | None = None, **overrides: Any) -> Collector:
        if config is None:
            settings = CollectorSettings(**_TEST_ENDPOINTS, **overrides)
            collector = Collector(engine or SignalEngine([RedSpanProcessor()]), settings)
        else:
            settings = dataclasses.replace(
                CollectorSettings.from_config(config), **_TEST_ENDPOINTS, **overrides
            )
            collector = Collector(engine or build_engine(config), settings, config=config)
        await collector.start()
        made.append(collector)
        return collector

    yield make
    for collector in made:
        await collector.stop()


@pytest.fixture
async def collector(make_collector: Callable[..., Any]) -> Collector:
    """A started Collector (gRPC, HTTP, /metrics on port 0) with a 256 KiB request limit."""
    return await make_collector(max_request_bytes=SMALL_LIMIT)
