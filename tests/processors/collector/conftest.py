"""An in-process collector on free ports, with the RED derivation, for receiver tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from spansignals.processors.collector import Collector, CollectorSettings, Endpoint
from spansignals.processors.engine import SignalEngine
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
