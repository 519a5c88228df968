"""Shared fixtures: real peers started on free loopback ports and stopped by PID at teardown.

``start_prometheus(targets, ...)``, ``start_rotel(...)`` and ``start_collector(...)`` return the
handles from ``tests/peers.py``; a missing peer skips the test (fails under ``CI=true`` or
``SPANSIGNALS_REQUIRE_PEERS=1``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import CollectorProcess, PrometheusPeer, RotelAgent


class _Started:
    """Remembers what a fixture started so teardown stops all of it, newest first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: list[Any] = []

    def workdir(self, name: str) -> Path:
        path = self.root / f"{name}-{len(self.items)}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def stop_all(self) -> None:
        for item in reversed(self.items):
            item.stop()


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[..., PrometheusPeer]]:
    """Start a Prometheus scraping the given ``host:port`` targets (see ``PrometheusPeer``)."""
    started = _Started(tmp_path)

    def start(targets: list[str], **kwargs: Any) -> PrometheusPeer:
        peer = PrometheusPeer(started.workdir("prometheus"), targets, **kwargs)
        started.items.append(peer)
        return peer

    yield start
    started.stop_all()


@pytest.fixture
def start_rotel(tmp_path: Path) -> Iterator[Callable[..., RotelAgent]]:
    """Start rotel-agent on free ports (see ``RotelAgent``)."""
    started = _Started(tmp_path)

    def start(**kwargs: Any) -> RotelAgent:
        agent = RotelAgent(started.workdir("rotel"), **kwargs)
        started.items.append(agent)
        return agent

    yield start
    started.stop_all()


@pytest.fixture
def start_collector(tmp_path: Path) -> Iterator[Callable[..., CollectorProcess]]:
    """Start ``spansignals collector`` as a child process on free ports, ready to receive."""
    started = _Started(tmp_path)

    def start(**kwargs: Any) -> CollectorProcess:
        collector = CollectorProcess(started.workdir("collector"), **kwargs)
        started.items.append(collector)
        return collector

    yield start
    started.stop_all()


@pytest.fixture
def fake_otlp() -> Iterator[Any]:
    """A scriptable fake downstream OTLP server, gRPC and HTTP (see ``tests/fake_otlp.py``)."""
    from fake_otlp import FakeOtlpServer

    server = FakeOtlpServer()
    yield server
    server.stop()
