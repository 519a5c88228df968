"""SDK test fixtures: a real local HTTP server, private providers, and configure() with teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sdk_fixtures import LocalServer, Providers

from spansignals.sdk import Telemetry, configure


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    """A real local HTTP server (JSON, status codes, a chunked SSE stream)."""
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture
def providers() -> Iterator[Providers]:
    """Private tracer and meter providers (never global)."""
    p = Providers()
    yield p
    p.tracer_provider.shutdown()
    p.meter_provider.shutdown()


@pytest.fixture
def configured() -> Iterator[Callable[..., Telemetry]]:
    """``configure(...)`` that is shut down at teardown; private providers are the caller's job."""
    handles: list[Telemetry] = []

    def run(*args: Any, **kwargs: Any) -> Telemetry:
        kwargs.setdefault("set_global_providers", False)
        telemetry = configure(*args, **kwargs)
        handles.append(telemetry)
        return telemetry

    yield run
    for telemetry in reversed(handles):
        telemetry.shutdown(timeout=5)
