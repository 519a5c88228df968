"""The distro's load_instrumentor gives httpx our hooks, or skips it when configure() already did."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from sdk_fixtures import LocalServer, Providers

from spansignals.sdk import Telemetry
from spansignals.sdk.distro import SpansignalsDistro


class _EntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self._target = target

    def load(self) -> Any:
        return self._target


@pytest.fixture
def uninstrument() -> Iterator[None]:
    """Leave httpx uninstrumented after the test."""
    yield
    HTTPXClientInstrumentor().uninstrument()


def test_distro_instruments_httpx_with_our_hooks(
    providers: Providers,
    local_server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    uninstrument: None,
) -> None:
    """Without configure(), the distro instruments httpx with hooks built from SPANSIGNALS_CONFIG."""
    config = tmp_path / "spansignals.yaml"
    config.write_text('providers: [{name: local-llm, hosts: ["127.0.0.1"], dialect: openai}]\n')
    monkeypatch.setenv("SPANSIGNALS_CONFIG", str(config))
    SpansignalsDistro().load_instrumentor(
        _EntryPoint("httpx", HTTPXClientInstrumentor), tracer_provider=providers.tracer_provider
    )
    httpx.get(local_server.url("/x?token=CANARY"))
    (span,) = providers.spans()
    assert span.attributes["spansignals.provider"] == "local-llm"
    assert "CANARY" not in str(dict(span.attributes))


def test_distro_skips_httpx_when_configured(
    configured: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """After configure() instrumented httpx, the distro does not instrument it a second time."""
    configured(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    SpansignalsDistro().load_instrumentor(_EntryPoint("httpx", HTTPXClientInstrumentor))
    httpx.get(local_server.url())
    assert len(providers.spans()) == 1


def test_distro_loads_other_instrumentors_as_usual() -> None:
    """Instrumentors other than httpx are instantiated and instrumented normally."""
    calls: list[dict[str, Any]] = []

    class Fake:
        def instrument(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    SpansignalsDistro().load_instrumentor(_EntryPoint("requests", Fake), skip_dep_check=True)
    assert calls == [{"skip_dep_check": True}]
