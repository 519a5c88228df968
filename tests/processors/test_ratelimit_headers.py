"""Rate-limit header dialects: documented examples parse to one shape; garbage never raises."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from spansignals.processors.ratelimit_headers import (
    _TABLE_ORDER,  # the dialect tables' order and the one-pass parse: the span path's reference
    ATTR_HEADER_PREFIX,
    CAPTURED_HEADERS,
    RateLimitHeaders,
    _compile,
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
def test_span_path_readings_equal_a_parse_at_any_time(case: dict[str, Any]) -> None:
    """The span path's time-independent readings of only the dialect's headers, in either key
    order, give what parsing all of a span's attributes at that instant gives."""
    attrs = {k: v for k, v in _attrs(case).items() if not k.endswith("x-unrelated")}
    readings = header_readings(attrs, case["dialect"])
    assert readings is not None
    assert header_readings(dict(reversed(attrs.items())), case["dialect"]) == readings
    for now in _NOWS:
        _same(readings.at(now), parse_rate_limit_headers(attrs, case["dialect"], now))


def test_span_path_reads_only_the_dialects_headers() -> None:
    """Other attributes and other dialects' headers are not read; none of the dialect's: None."""
    p = ATTR_HEADER_PREFIX
    one = {p + "x-ratelimit-limit": ("100",), p + "x-ratelimit-remaining": ("7",), "http.route": "/x"}
    same = {"http.route": "/y", p + "x-ratelimit-remaining": ("7",), p + "x-ratelimit-limit": ("100",)}
    first = header_readings(one, "generic")
    assert first is not None and first.quotas == (("requests", 100.0, 7.0, None, False),)
    assert header_readings(same, "generic") == first
    assert header_readings({"http.route": "/x", p + "content-type": ("a",)}, "generic") is None
    # a dialect's own rows only: the generic x-ratelimit-limit is not an OpenAI header
    assert header_readings({p + "x-ratelimit-limit": ("100",)}, "openai") is None
    # unknown dialects read as generic
    assert header_readings(one, "nonsense") == first


def test_retry_after_date_and_milliseconds_compare_at_the_response_time() -> None:
    """Retry-After as a date and retry-after-ms as an offset: which is later depends on when the
    response came, so the time-independent form keeps both."""
    p = ATTR_HEADER_PREFIX
    attrs = {p + "retry-after": "Tue, 14 Nov 2023 22:15:20 GMT", p + "retry-after-ms": "2500"}
    readings = header_readings(attrs, "openai")
    assert readings is not None
    date_only = {p + "retry-after": attrs[p + "retry-after"]}
    date = parse_rate_limit_headers(date_only, "openai", 0.0).retry_after_at
    assert date is not None
    for now in (date - 100.0, date - 1.0, date + 5.0):
        _same(readings.at(now), parse_rate_limit_headers(attrs, "openai", now))


@pytest.mark.parametrize(
    ("dialect", "headers", "resource", "offset"),
    [
        ("openai", {"x-ratelimit-reset-requests": "10s"}, "requests", 10.0),
        ("anthropic", {"anthropic-ratelimit-tokens-reset": "2023-11-14T22:14:00Z"}, "tokens", None),
        ("github", {"x-ratelimit-reset": "1700003600"}, "core", None),
        ("generic", {"x-ratelimit-reset": "30"}, "requests", 30.0),
        ("generic", {"x-ratelimit-reset": "1700003600"}, "requests", None),
        ("ietf", {"ratelimit-policy": '"p";q=100;w=10', "ratelimit": '"p";r=5;t=7'}, "requests", 7.0),
        ("ietf", {"ratelimit": "limit=100, remaining=5, reset=9"}, "requests", 9.0),
    ],
)
def test_relative_resets_move_with_the_response_time_absolute_ones_do_not(
    dialect: str, headers: dict[str, str], resource: str, offset: float | None
) -> None:
    """Durations, small delta seconds and the IETF reset count from the response; epoch seconds
    and dates are fixed instants, whenever the response came."""
    attrs = {ATTR_HEADER_PREFIX + k: (v,) for k, v in headers.items()}
    readings = header_readings(attrs, dialect)
    assert readings is not None
    resets = [readings.at(now).readings[resource].reset_at for now in (NOW, NOW + 100.0)]
    assert resets[0] is not None and resets[1] is not None
    if offset is None:
        assert resets[0] == resets[1]
    else:
        assert resets == [NOW + offset, NOW + 100.0 + offset]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "5"}, lambda now: now + 5),
        ({"retry-after-ms": "2500"}, lambda now: now + 2.5),
        ({"retry-after": "Tue, 14 Nov 2023 22:15:20 GMT"}, lambda now: 1700000120.0),
    ],
)
def test_retry_after_seconds_count_from_the_response_a_date_does_not(
    headers: dict[str, str], expected: Any
) -> None:
    """Retry-After seconds and retry-after-ms are offsets; an HTTP date is an instant."""
    readings = header_readings({ATTR_HEADER_PREFIX + k: v for k, v in headers.items()}, "openai")
    assert readings is not None
    for now in (NOW, NOW + 100.0):
        assert readings.retry_after_at(now) == expected(now)


@given(
    st.dictionaries(st.sampled_from(sorted(CAPTURED_HEADERS)), _VALUES, max_size=12),
    st.sampled_from(["openai", "anthropic", "github", "ietf", "gemini", "generic", "nonsense"]),
    st.sampled_from(_NOWS),
)
def test_span_path_readings_equal_a_parse_for_any_values(
    headers: dict[str, Any], dialect: str, now: float
) -> None:
    """Garbage included, the span path never raises, does not depend on the order of the span's
    attributes, and agrees with a parse at ``now`` on the resources, failures and Retry-After (the
    values too, unless two headers give the same field: then the dialect table's later row wins)."""
    # an SDK span holds no None value (an OTLP view's empty value is read, and counted as a failure)
    attrs = {ATTR_HEADER_PREFIX + k: v for k, v in headers.items() if v is not None}
    readings = header_readings(attrs, dialect)
    assert header_readings(dict(reversed(attrs.items())), dialect) == readings
    expected = parse_rate_limit_headers(attrs, dialect, now)
    if readings is None:
        assert not expected.found and expected.failures == 0
    else:
        got = readings.at(now)
        assert set(got.readings) == set(expected.readings)
        assert got.retry_after_at == expected.retry_after_at and got.failures == expected.failures


def test_two_headers_for_one_field_the_later_table_row_wins_in_any_order() -> None:
    """x-ratelimit-remaining-requests (OpenAI's row) and the older IETF ratelimit-remaining both
    give the requests' remaining: the IETF row, later in the table, wins whatever the order."""
    p = ATTR_HEADER_PREFIX
    attrs = {p + "x-ratelimit-remaining-requests": ("5",), p + "ratelimit-remaining": ("3",)}
    for ordered in (attrs, dict(reversed(attrs.items()))):
        readings = header_readings(ordered, "openai")
        assert readings is not None and readings.quotas == (("requests", None, 3.0, None, False),)


_PLAIN_VALUES = st.one_of(
    st.sampled_from(["100", "0", "7.5", "6m0s", "20ms", "1s", "2023-11-14T22:14:20Z", "1700003600", "30"]),
    _VALUES,
)


@given(
    st.dictionaries(st.sampled_from(sorted(CAPTURED_HEADERS)), _PLAIN_VALUES, max_size=8),
    st.sampled_from(["openai", "anthropic", "github", "ietf", "gemini", "generic", "nonsense"]),
)
def test_span_path_equals_one_parse_of_the_dialects_headers_in_table_order(
    headers: dict[str, Any], dialect: str
) -> None:
    """Each set of header keys is read from a plan made once, unless a value is not plain: the
    readings (values, their order, failures) are what one parse of the same attributes in the
    dialect table's order gives, the first time and when the plan is reused, for an SDK dict and
    for a mapping that is not a dict (an OTLP view), whose empty value is read as a failure."""
    attrs = {ATTR_HEADER_PREFIX + k: v for k, v in headers.items()}
    known = dialect if dialect in _TABLE_ORDER else "generic"
    order = _TABLE_ORDER[known]
    ours = sorted((k for k in attrs if k in order), key=order.__getitem__)
    sdk = {k: attrs[k] for k in ours if attrs[k] is not None}
    expected = _compile(sdk, known) if ours else None
    for _ in range(2):
        assert header_readings(attrs, dialect) == expected
    otlp = _NotADict(attrs)
    expected = _compile({k: attrs[k] for k in ours}, known) if ours else None
    for _ in range(2):
        assert header_readings(otlp, dialect) == expected


class _NotADict(Mapping[str, Any]):
    """A read-only mapping that is not a ``dict``, as an OTLP view's attributes are."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)
