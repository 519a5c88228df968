"""Provider table: built-in hosts, wildcards, config overrides, and span resolution."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from spansignals.processors.config import load_config
from spansignals.processors.providers import (
    BUILTIN_PROVIDERS,
    DIALECTS,
    ProviderInfo,
    ProviderTable,
    host_of_url,
    resolve_view,
)
from spansignals.processors.view import SpanView

CASES = yaml.safe_load((Path(__file__).parents[1] / "testdata" / "providers" / "hosts.yaml").read_text())


def _view(attributes: dict[str, Any]) -> SpanView:
    return SpanView("POST", 3, 0, 1, 0, attributes, {"service.name": "svc"})


@pytest.mark.parametrize("case", CASES, ids=[c["host"] or "empty" for c in CASES])
def test_builtin_host_resolution(case: dict[str, Any]) -> None:
    """Each host in the fixture table resolves to the expected provider, dialect and GenAI name."""
    info = ProviderTable().resolve(case["host"])
    if case["provider"] is None:
        assert info is None
    else:
        assert info == ProviderInfo(case["provider"], case["dialect"], case["genai"])


def test_builtin_entries_are_valid() -> None:
    """Every built-in entry has a known dialect, and LLM providers have a GenAI name."""
    for _host, info in BUILTIN_PROVIDERS:
        assert info.dialect in DIALECTS
        assert info.genai_name is None or info.genai_name


def test_config_entries_extend_and_override_builtins() -> None:
    """A providers: entry adds hosts and wins over a built-in entry for the same host."""
    cfg = load_config(
        {
            "providers": [
                {
                    "name": "internal-llm",
                    "hosts": ["llm.internal.example", "*.llm.example"],
                    "dialect": "openai",
                },
                {"name": "proxy", "hosts": ["api.openai.com"], "dialect": "generic"},
                {"name": "openai", "hosts": ["openai-gw.corp"], "dialect": "openai"},
            ]
        }
    )
    table = ProviderTable.from_config(cfg.providers)
    assert table.resolve("llm.internal.example") == ProviderInfo("internal-llm", "openai", "internal-llm")
    assert table.resolve("eu.llm.example") == ProviderInfo("internal-llm", "openai", "internal-llm")
    assert table.resolve("api.openai.com") == ProviderInfo("proxy", "generic", None)
    assert table.resolve("openai-gw.corp") == ProviderInfo("openai", "openai", "openai")
    assert table.resolve("api.anthropic.com") == ProviderInfo("anthropic", "anthropic", "anthropic")


def test_config_genai_flag_overrides_dialect_default() -> None:
    """`genai: false` makes an openai-dialect entry a plain API; `genai: true` makes a generic one an LLM."""
    entries = [
        SimpleNamespace(name="a", hosts=["a.example"], dialect="openai", genai=False),
        SimpleNamespace(name="b", hosts=["b.example"], dialect="generic", genai=True),
    ]
    table = ProviderTable.from_config(entries)
    assert table.resolve("a.example") == ProviderInfo("a", "openai", None)
    assert table.resolve("b.example") == ProviderInfo("b", "generic", "b")


def test_unknown_dialect_is_rejected() -> None:
    """A table entry with an unknown dialect raises ValueError naming the provider."""
    with pytest.raises(ValueError, match="provider 'x': dialect"):
        ProviderTable([("x.example", ProviderInfo("x", "klingon"))])


def test_resolve_is_cached_and_bounded() -> None:
    """Lookups (misses included) are cached; a flood of distinct hosts never grows the cache unbounded."""
    table = ProviderTable()
    for i in range(10_000):
        assert table.resolve(f"h{i}.example") is None
    assert len(table._cache) <= 4096
    assert table.resolve("api.openai.com") is table.resolve("api.openai.com")


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"spansignals.provider": "anthropic"}, "anthropic"),
        ({"spansignals.provider": "custom", "gen_ai.provider.name": "custom"}, "custom"),
        ({"gen_ai.provider.name": "gcp.gemini"}, "gemini"),
        ({"gen_ai.system": "openai"}, "openai"),
        ({"gen_ai.provider.name": "some.new.llm"}, "some.new.llm"),
        ({"server.address": "api.groq.com"}, "groq"),
        ({"url.full": "https://user:pw@api.github.com:443/repos?x=1"}, "github"),
        ({"http.url": "https://api.stripe.com/v1/charges"}, "stripe"),
        ({"server.address": "10.0.0.1", "url.full": "https://api.openai.com/v1"}, "openai"),
        ({"url.full": "https://example.com/"}, None),
        ({"url.full": "not a url"}, None),
        ({}, None),
    ],
)
def test_resolve_view(attributes: dict[str, Any], expected: str | None) -> None:
    """Spans from any source resolve by our attribute, the GenAI attributes, then the host."""
    info = resolve_view(_view(attributes))
    assert (info.name if info else None) == expected


def test_resolve_view_never_raises() -> None:
    """Ill-typed attributes and odd objects resolve to None instead of raising."""
    assert resolve_view(_view({"spansignals.provider": 3, "url.full": b"https://api.openai.com"})) is None
    assert resolve_view(object()) is None


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://API.openai.com:443/v1", "api.openai.com"),
        ("http://u:p@h.example/x?y#z", "h.example"),
        ("http://[::1]:8080/", "::1"),
        ("/relative", None),
        ("", None),
    ],
)
def test_host_of_url(url: str, host: str | None) -> None:
    """The host is taken from the authority without userinfo and port."""
    assert host_of_url(url) == host
