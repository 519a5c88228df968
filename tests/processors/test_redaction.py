"""Credential redaction of URLs and captured header attributes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from spansignals.processors.redaction import (
    REDACTED,
    is_sensitive_header,
    redact_attribute,
    redact_attributes,
    redact_url,
)

DATA = Path(__file__).parents[1] / "testdata" / "redaction"
URL_CASES = yaml.safe_load((DATA / "urls.yaml").read_text())
HEADER_CASES = yaml.safe_load((DATA / "headers.yaml").read_text())


@pytest.mark.parametrize("case", URL_CASES, ids=[c["url"][:60] or "empty" for c in URL_CASES])
def test_redact_url(case: dict[str, str]) -> None:
    """Userinfo and credential query values become REDACTED; everything else is kept byte for byte."""
    assert redact_url(case["url"]) == case["want"]


@pytest.mark.parametrize("case", HEADER_CASES, ids=[c["key"] for c in HEADER_CASES])
def test_redact_header_attribute(case: dict[str, Any]) -> None:
    """Credential headers are redacted in both naming styles; rate-limit and ordinary headers are kept."""
    value = ("secret-value",)
    expected = (REDACTED,) if case["redacted"] else value
    assert redact_attribute(case["key"], value) == expected


def test_redact_attributes_returns_only_changes() -> None:
    """Only attributes that need a new value are returned, with the value to set."""
    attributes = {
        "url.full": "https://h/p?key=s",
        "http.url": "https://h/p",
        "http.request.header.authorization": ("Bearer sk-123", "Basic x"),
        "http.request.header.cookie": "a=b",
        "http.response.header.x-ratelimit-remaining-requests": ("99",),
        "http.method": "GET",
    }
    assert redact_attributes(attributes) == {
        "url.full": "https://h/p?key=REDACTED",
        "http.request.header.authorization": (REDACTED, REDACTED),
        "http.request.header.cookie": REDACTED,
    }
    assert redact_attributes({"url.full": "https://h/p"}) == {}


def test_sensitive_header_names() -> None:
    """Header names are compared case-insensitively with - and _ alike."""
    assert is_sensitive_header("Authorization")
    assert is_sensitive_header("X_API_KEY")
    assert not is_sensitive_header("x-ratelimit-limit-tokens")


@given(st.text(max_size=200))
def test_redact_url_never_raises(url: str) -> None:
    """Any string redacts to a string without raising."""
    assert isinstance(redact_url(url), str)


@given(st.text(alphabet=st.characters(blacklist_characters="#?@&=/"), max_size=50))
def test_planted_credentials_never_survive(path: str) -> None:
    """Whatever the path and other parameters hold, userinfo and token values are gone."""
    assume("CANARY" not in path)
    assert "CANARY" not in redact_url(f"https://u:CANARY@h/{path}?x={path}&token=CANARY&y=1")


def test_canary_never_survives() -> None:
    """A canary secret in every credential place of a URL is gone after redaction."""
    url = "https://CANARY:CANARY@h.example/v1/x?key=CANARY&api_key=CANARY&token=CANARY&sig=CANARY&ok=1"
    assert "CANARY" not in redact_url(url)
