"""Rate-limit header dialects: documented examples parse to one shape; garbage never raises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from spansignals.processors.ratelimit_headers import (
    ATTR_HEADER_PREFIX,
    CAPTURED_HEADERS,
    RateLimitHeaders,
    header_readings,
    header_value,
    parse_rate_limit_headers,
)

NOW = 1_700_000_000.0
CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent.parent / "testdata" / "ratelimits" / "header_dialects.yaml").read_text()
)


def _attrs(case: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for i, (name, value) in enumerate(case["headers"].items()):
        # semconv form (a tuple of strings, as the SDK stores a list) and plain strings alternate
        as_list = case.get("list_values", False) or i % 2 == 0
        attrs[ATTR_HEADER_PREFIX + name] = (value,) if as_list else value
    return attrs


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_dialect_case(case: dict[str, Any]) -> None:
    """Each documented header set yields the expected limit, remaining, reset, Retry-After and throttling."""
    result = parse_rate_limit_headers(_attrs(case), case["dialect"], NOW)
    assert set(result.readings) == set(case["readings"])
    for resource, want in case["readings"].items():
        got = result.readings[resource]
        assert got.limit == want.get("limit"), resource
        assert got.remaining == want.get("remaining"), resource
        if "reset_in" in want:
            assert got.reset_at is not None and got.reset_at - NOW == pytest.approx(
                want["reset_in"], abs=1e-6
            )
        else:
            assert got.reset_at is None
    if "retry_after_in" in case:
        assert result.retry_after_at is not None
        assert result.retry_after_at - NOW == pytest.approx(case["retry_after_in"], abs=1e-6)
    else:
        assert result.retry_after_at is None
    assert result.failures == case.get("failures", 0)
    assert result.is_throttled(case["status"]) is case["throttled"]


def test_every_documented_header_is_captured() -> None:
    """The capture list covers every header name used in the fixtures (so the hooks record them)."""
    names = {name for case in CASES for name in case["headers"]} - {"x-unrelated"}
    assert names <= CAPTURED_HEADERS
    assert "authorization" not in CAPTURED_HEADERS and "set-cookie" not in CAPTURED_HEADERS


def test_exhausted_until_takes_latest_of_quota_and_retry_after() -> None:
    """exhausted_until is the later of an exhausted quota's reset and Retry-After; None when quota remains."""
    p = ATTR_HEADER_PREFIX
    base = {p + "x-ratelimit-remaining-requests": "0", p + "x-ratelimit-reset-requests": "10s"}
    assert parse_rate_limit_headers(base, "openai", NOW).exhausted_until() == NOW + 10
    later = {**base, p + "retry-after": "30"}
    assert parse_rate_limit_headers(later, "openai", NOW).exhausted_until() == NOW + 30
    fine = {p + "x-ratelimit-remaining-requests": "3", p + "x-ratelimit-reset-requests": "10s"}
    assert parse_rate_limit_headers(fine, "openai", NOW).exhausted_until() is None


def test_utilization_is_used_fraction() -> None:
    """Utilization is (limit - remaining) / limit, clamped to [0, 1], None without both numbers."""
    p = ATTR_HEADER_PREFIX
    r = parse_rate_limit_headers(
        {p + "x-ratelimit-limit-requests": "200", p + "x-ratelimit-remaining-requests": "50"}, "openai", NOW
    )
    assert r.readings["requests"].utilization == 0.75
    r = parse_rate_limit_headers({p + "x-ratelimit-limit-requests": "200"}, "openai", NOW)
    assert r.readings["requests"].utilization is None


def test_github_resource_label_is_sanitised() -> None:
    """A hostile x-ratelimit-resource becomes a short [a-z0-9_] label, not free text."""
    p = ATTR_HEADER_PREFIX
    r = parse_rate_limit_headers(
        {p + "x-ratelimit-remaining": "1", p + "x-ratelimit-resource": "Code Search/" + "x" * 200},
        "github",
        NOW,
    )
    (label,) = r.readings
    assert label.startswith("code_search_x") and len(label) <= 32


def test_header_value_shapes() -> None:
    """Captured values: first string of a list, repeated lines folded, plain strings and numbers read."""
    assert header_value(("5",)) == "5"
    assert header_value(['"a";r=1', '"b";r=2']) == '"a";r=1, "b";r=2'
    assert header_value("7") == "7" and header_value(7) == "7"
    assert header_value(()) is None and header_value(True) is None and header_value(None) is None


_VALUES = st.one_of(
    st.text(max_size=40),
    st.lists(st.text(max_size=20), max_size=3).map(tuple),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=10),
    st.none(),
    st.booleans(),
)


@given(
    st.dictionaries(st.sampled_from(sorted(CAPTURED_HEADERS)), _VALUES, max_size=12),
    st.sampled_from(["openai", "anthropic", "github", "ietf", "gemini", "generic", "nonsense"]),
)
def test_garbage_never_raises(headers: dict[str, Any], dialect: str) -> None:
    """Any values under any captured header name parse without raising."""
    result = parse_rate_limit_headers({ATTR_HEADER_PREFIX + k: v for k, v in headers.items()}, dialect, NOW)
    assert result.failures >= 0
    for reading in result.readings.values():
        for v in (reading.limit, reading.remaining):
            assert v is None or v >= 0


def _same(a: RateLimitHeaders, b: RateLimitHeaders) -> None:
    assert a.readings == b.readings
    assert a.retry_after_at == b.retry_after_at
    assert a.failures == b.failures


_NOWS = (NOW, NOW + 0.123456, 1_800_000_000.5)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_cached_readings_equal_a_fresh_parse_at_any_time(case: dict[str, Any]) -> None:
    """The span path's cached, time-independent readings give exactly what parsing at that
    instant gives: offsets (durations, delta seconds, IETF t) move with the response time,
    epoch and date resets do not."""
    attrs = {k: v for k, v in _attrs(case).items() if not k.endswith("x-unrelated")}
    readings = header_readings(attrs, case["dialect"])
    assert readings is not None
    assert header_readings(dict(reversed(attrs.items())), case["dialect"]) is not None
    for now in _NOWS:
        _same(readings.at(now), parse_rate_limit_headers(attrs, case["dialect"], now))


def test_cached_readings_are_shared_per_distinct_values() -> None:
    """The same header values map to one parsed object; other values to another; no header, None."""
    p = ATTR_HEADER_PREFIX
    one = {p + "x-ratelimit-limit": ("100",), p + "x-ratelimit-remaining": ("7",), "http.route": "/x"}
    same = {"http.route": "/y", p + "x-ratelimit-remaining": ("7",), p + "x-ratelimit-limit": ("100",)}
    other = {**one, p + "x-ratelimit-remaining": ("6",)}
    first = header_readings(one, "generic")
    assert first is header_readings(one, "generic")
    assert first is not None and header_readings(other, "generic") is not first
    assert header_readings(same, "generic") == first
    assert header_readings({"http.route": "/x", p + "content-type": ("a",)}, "generic") is None
    # a dialect's own rows only: the generic x-ratelimit-limit is not an OpenAI header
    assert header_readings({p + "x-ratelimit-limit": ("100",)}, "openai") is None
    # equal but differently read values never share an entry: 1 == True, but True is no number
    assert header_readings({p + "x-ratelimit-limit": 1}, "generic").quotas  # type: ignore[union-attr]
    assert not header_readings({p + "x-ratelimit-limit": True}, "generic").quotas  # type: ignore[union-attr]


def test_retry_after_date_and_milliseconds_compare_at_the_response_time() -> None:
    """Retry-After as a date and retry-after-ms as an offset: which is later depends on when the
    response came, so the cached form keeps both."""
    p = ATTR_HEADER_PREFIX
    attrs = {p + "retry-after": "Tue, 14 Nov 2023 22:15:20 GMT", p + "retry-after-ms": "2500"}
    readings = header_readings(attrs, "openai")
    assert readings is not None
    date_only = {p + "retry-after": attrs[p + "retry-after"]}
    date = parse_rate_limit_headers(date_only, "openai", 0.0).retry_after_at
    assert date is not None
    for now in (date - 100.0, date - 1.0, date + 5.0):
        _same(readings.at(now), parse_rate_limit_headers(attrs, "openai", now))


def test_huge_offsets_still_move_with_the_response_time() -> None:
    """A reset offset of 1e16 s loses a 1 s step to rounding but not a real epoch instant."""
    p = ATTR_HEADER_PREFIX
    attrs = {p + "x-ratelimit-remaining-requests": "0", p + "x-ratelimit-reset-requests": "1e16"}
    readings = header_readings(attrs, "openai")
    assert readings is not None
    for now in _NOWS:
        _same(readings.at(now), parse_rate_limit_headers(attrs, "openai", now))


@given(
    st.dictionaries(st.sampled_from(sorted(CAPTURED_HEADERS)), _VALUES, max_size=12),
    st.sampled_from(["openai", "anthropic", "github", "ietf", "gemini", "generic", "nonsense"]),
    st.sampled_from(_NOWS),
)
def test_cached_readings_equal_a_fresh_parse_for_any_values(
    headers: dict[str, Any], dialect: str, now: float
) -> None:
    """Garbage included, the cached form never raises and agrees with a parse at ``now``."""
    attrs = {ATTR_HEADER_PREFIX + k: v for k, v in headers.items()}
    readings = header_readings(attrs, dialect)
    expected = parse_rate_limit_headers(dict(sorted(attrs.items())), dialect, now)
    if readings is None:
        assert not expected.found and expected.failures == 0
    else:
        _same(readings.at(now), expected)
