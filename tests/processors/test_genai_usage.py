"""Usage parsing from recorded provider responses, checked against genai-prices' own extractors and prices."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import warnings
import zlib
from pathlib import Path
from typing import Any

import brotli
import pytest
from genai_prices import calc_price
from genai_prices.data_snapshot import find_provider_by_id, get_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from spansignals.processors.genai_usage import (
    ResponseUsageReader,
    SseUsageParser,
    parse_json_body,
    request_model_from,
    usage_attributes,
)
from spansignals.processors.pricing import PriceCatalog, TokenUsage

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "testdata/genai/responses.json").read_text()
)
NOW = dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc)
FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning", "cache_write_1h")
GP_KEYS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write": "cache_write_tokens",
    "reasoning": "output_reasoning_tokens",
    "cache_write_1h": "cache_write_1h_tokens",
}


def _raw(case: dict[str, Any]) -> bytes:
    if "sse" in case:
        return case["sse"].encode("utf-8", "surrogateescape")
    if "raw" in case:
        return case["raw"].encode()
    return json.dumps(case["body"]).encode()


def _read(case: dict[str, Any], data: bytes, encoding: str = "", chunk: int | None = None) -> Any:
    reader = ResponseUsageReader(
        case["dialect"],
        content_type=case["content_type"],
        content_encoding=encoding,
        provider=case["provider"],
        path=case["path"],
    )
    rng = random.Random(len(data))
    i = 0
    while i < len(data):
        n = chunk or rng.randint(1, 64)
        reader.feed(data[i : i + n])
        i += n
    return reader.finish()


def _as_dict(usage: TokenUsage) -> dict[str, int]:
    return {f: getattr(usage, f) for f in FIELDS if getattr(usage, f) is not None}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
@pytest.mark.parametrize("encoding", ["", "gzip", "br", "deflate"])
def test_recorded_response_tokens(case: dict[str, Any], encoding: str) -> None:
    """Each recorded body, in any chunking and content encoding, yields exactly the documented counts."""
    data = _raw(case)
    if encoding == "gzip":
        data = gzip.compress(data)
    elif encoding == "br":
        data = brotli.compress(data)
    elif encoding == "deflate":
        data = zlib.compress(data)
    for chunk in (None, 1, 1 << 20):
        parsed = _read(case, data, encoding, chunk)
        if case["expected"] is None:
            assert parsed is None
            continue
        assert parsed is not None
        assert _as_dict(parsed.usage) == case["expected"]
        assert parsed.response_model == case["model"]
        assert parsed.operation == case["operation"]


@pytest.mark.parametrize("case", [c for c in CASES if c.get("gp_provider")], ids=lambda c: c["name"])
def test_counts_and_cost_agree_with_genai_prices(case: dict[str, Any]) -> None:
    """genai-prices' extractor finds the same counts, and its calc_price the same cost to the digit."""
    snapshot = get_snapshot()
    provider = find_provider_by_id(snapshot.providers, case["gp_provider"])
    obj = case.get("final", case.get("body"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, gp_usage = provider.extract_usage(obj, api_flavor=case["gp_flavor"])
    assert model == case["model"]
    parsed = _read(case, _raw(case))
    ours = parsed.usage.as_genai_prices()
    theirs = {k: v for k, v in gp_usage.__dict__.items() if k in GP_KEYS.values()}
    assert ours == theirs
    context = {"service_tier": parsed.service_tier} if parsed.service_tier else None
    assert parsed.service_tier == case.get("service_tier", obj.get("service_tier"))
    expected_cost = calc_price(
        gp_usage,
        case["model"],
        provider_id=case["gp_provider"],
        genai_request_timestamp=NOW,
        price_context=context,
    ).total_price
    plan = PriceCatalog().plan(case["provider"], case["model"], NOW, tuple((context or {}).items()))
    assert plan is not None
    assert plan.cost(parsed.usage) == expected_cost


def test_unknown_model_has_usage_but_no_price() -> None:
    """An unknown model still yields its counts; the catalog has no price for it."""
    case = next(c for c in CASES if c.get("unpriced"))
    parsed = _read(case, _raw(case))
    assert parsed is not None and parsed.usage.input == 19
    assert PriceCatalog().plan("openai", case["model"], NOW) is None


def test_usage_attributes_follow_conventions_and_omit_unknown() -> None:
    """Attributes use the semconv names; counts the provider did not report are absent, not 0."""
    case = next(c for c in CASES if c["name"] == "anthropic-messages-cache")
    attrs = usage_attributes(_read(case, _raw(case)))
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.response.model": "claude-3-5-haiku-20241022",
        "gen_ai.usage.input_tokens": 13550,
        "gen_ai.usage.output_tokens": 393,
        "gen_ai.usage.cache_read.input_tokens": 12000,
        "gen_ai.usage.cache_creation.input_tokens": 1500,
        "spansignals.usage.cache_creation_1h.input_tokens": 0,
    }
    emb = next(c for c in CASES if c["name"] == "openai-embeddings")
    assert "gen_ai.usage.output_tokens" not in usage_attributes(_read(emb, _raw(emb)))


def test_large_embeddings_body_usage_found_in_tail() -> None:
    """A body over the 8 MiB JSON cap is not held whole; the trailing usage object is still found."""
    vector = [0.0123456789] * 1536
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(600)],
        "model": "text-embedding-3-large",
        "usage": {"prompt_tokens": 4800, "total_tokens": 4800},
    }
    data = json.dumps(body).encode()
    assert len(data) > 8 << 20
    reader = ResponseUsageReader("openai", content_type="application/json", path="/v1/embeddings")
    for i in range(0, len(data), 65536):
        reader.feed(data[i : i + 65536])
    parsed = reader.finish()
    assert parsed is not None
    assert parsed.usage == TokenUsage(input=4800)
    assert parsed.response_model == "text-embedding-3-large"


def test_sse_event_over_cap_is_skipped_not_buffered() -> None:
    """An SSE line longer than 1 MiB is dropped; later events still parse."""
    parser = SseUsageParser("openai")
    parser.feed(b"data: " + b"x" * (2 << 20))
    parser.feed(b"\n\n")
    parser.feed(b'data: {"model":"m","usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n')
    parsed = parser.result()
    assert parsed is not None and parsed.usage == TokenUsage(3, 4)


def test_unknown_content_encoding_is_ignored() -> None:
    """A body in an encoding we cannot decode yields nothing (and never raises)."""
    reader = ResponseUsageReader("openai", content_type="application/json", content_encoding="zstd")
    reader.feed(b"\x28\xb5\x2f\xfd")
    assert reader.finish() is None


@pytest.mark.parametrize(
    ("dialect", "path", "body", "model"),
    [
        (
            "openai",
            "/v1/chat/completions",
            b'{"messages":[{"role":"user","content":"say \\"model\\": \\"x\\""}],"model": "gpt-4o-mini"}',
            "gpt-4o-mini",
        ),
        ("anthropic", "/v1/messages", b'{"model":"claude-sonnet-4-5","max_tokens":10}', "claude-sonnet-4-5"),
        ("gemini", "/v1beta/models/gemini-2.5-flash:generateContent", b"{}", "gemini-2.5-flash"),
        ("openai", "/v1/chat/completions", b'{"messages":[]}', None),
        ("openai", "/v1/chat/completions", None, None),
    ],
)
def test_request_model(dialect: str, path: str, body: bytes | None, model: str | None) -> None:
    """The request model comes from the URL (Gemini) or the body's model key, never from string contents."""
    assert request_model_from(dialect, path, body) == model


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["openai", "anthropic", "gemini", "generic"]),
    st.binary(max_size=400),
    st.sampled_from(["application/json", "text/event-stream", ""]),
    st.sampled_from(["", "gzip", "br", "x"]),
)
def test_garbage_never_raises(dialect: str, data: bytes, content_type: str, encoding: str) -> None:
    """Random bytes in any dialect, type and encoding never raise."""
    reader = ResponseUsageReader(
        dialect, content_type=content_type, content_encoding=encoding, provider="openai"
    )
    reader.feed(data)
    reader.feed(data[::-1])
    reader.finish()
    parse_json_body(dialect, {"usage": data.decode("latin-1")}, provider="cohere")
