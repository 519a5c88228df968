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


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    """A started Collector (gRPC, HTTP, /metrics on port 0) with a 256 KiB request limit."""
    any_port = Endpoint("127.0.0.1", 0)
    settings = CollectorSettings(
        grpc_endpoint=any_port,
        http_endpoint=any_port,
        metrics_endpoint=any_port,
        max_request_bytes=SMALL_LIMIT,
        shutdown_timeout_s=1.0,
    )
    instance = Collector(SignalEngine([RedSpanProcessor()]), settings)
    await instance.start()
    yield instance
    await instance.stop()


@pytest.fixture
async def make_collector() -> AsyncIterator[Callable[..., Any]]:
    """Start in-process Collectors (port 0 everywhere, 1 s shutdown) from a loaded config and
    optional settings overrides; stopped at teardown."""
    made: list[Collector] = []

    async def make(config: Any, **overrides: Any) -> Collector:
        any_port = Endpoint("127.0.0.1", 0)
        settings = dataclasses.replace(
            CollectorSettings.from_config(config),
            grpc_endpoint=any_port,
            http_endpoint=any_port,
            metrics_endpoint=any_port,
            shutdown_timeout_s=1.0,
            **overrides,
        )
        collector = Collector(build_engine(config), settings, config=config)
        await collector.start()
        made.append(collector)
        return collector

    yield make
    for collector in made:
        await collector.stop()
