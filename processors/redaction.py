"""Credential redaction for span attributes: URLs and captured HTTP headers.

Pure functions, shared by the app's httpx hooks (which redact before the span ends, so nothing
secret is ever exported) and the collector's redaction stage (for spans from other SDKs).

Following the semantic conventions for ``url.full``: URL userinfo becomes
``REDACTED:REDACTED@host``; the values of credential query parameters (``key``, ``api_key``,
``token``, ``sig``, ``X-Amz-Signature``, … see :data:`SENSITIVE_QUERY_PARAMS`) become ``REDACTED``
with the key kept. Captured header attributes (``http.request.header.<name>`` and
``http.response.header.<name>``, with ``-`` or ``_`` in the name) whose header carries credentials
(``Authorization``, ``x-api-key``, ``api-key``, ``Cookie``, ``Set-Cookie``,
``Proxy-Authorization``, … see :func:`is_sensitive_header`) get every value replaced by
``REDACTED``.

The fast path matters: a URL without ``@``, ``?`` or ``;`` is returned as is without parsing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "HEADER_ATTRIBUTE_PREFIXES",
    "REDACTED",
    "SENSITIVE_HEADERS",
    "SENSITIVE_QUERY_PARAMS",
    "URL_ATTRIBUTES",
    "is_sensitive_header",
    "is_sensitive_header_attribute",
    "is_sensitive_query_param",
    "redact_attribute",
    "redact_attributes",
    "redact_url",
]

REDACTED = "REDACTED"

URL_ATTRIBUTES = frozenset({"url.full", "http.url", "url.original"})
"""Attributes holding a full URL."""
HEADER_ATTRIBUTE_PREFIXES = ("http.request.header.", "http.response.header.")

SENSITIVE_QUERY_PARAMS = frozenset(
    {
        "key",
        "api-key",
        "api_key",
        "apikey",
        "x-api-key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth",
        "auth_token",
        "client_secret",
        "code",
        "sig",
        "signature",
        "password",
        "passwd",
        "pwd",
        "secret",
        "session",
        "sessionid",
        "awsaccesskeyid",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
    }
)
"""Query parameter names (compared case-insensitively) whose values are credentials."""

SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "cookie",
        "set-cookie",
        "x-auth-token",
        "x-access-token",
        "x-amz-security-token",
        "x-csrf-token",
        "x-xsrf-token",
        "ocp-apim-subscription-key",
        "private-token",
        "x-figma-token",
        "x-shopify-access-token",
        "x-twilio-signature",
        "stripe-signature",
        "x-slack-signature",
        "x-hub-signature",
        "x-hub-signature-256",
        "webhook-signature",
    }
)
"""Header names (lower-case, ``-`` separated) whose values are credentials."""

# Suffixes that mark a credential header. "-tokens" (rate-limit headers) must not match.
_SENSITIVE_HEADER_SUFFIXES = ("-api-key", "-apikey", "-token", "-secret", "-password", "-signature", "-auth")


def is_sensitive_header(name: str) -> bool:
    """Whether a header (any case, ``-`` or ``_`` separated) carries credentials."""
    n = name.lower().replace("_", "-")
    return n in SENSITIVE_HEADERS or n.endswith(_SENSITIVE_HEADER_SUFFIXES)


def is_sensitive_query_param(name: str) -> bool:
    """Whether a query parameter (any case, percent-encoded or not) carries a credential."""
    n = name.lower()
    if n in SENSITIVE_QUERY_PARAMS:
        return True
    if "%" in n or "+" in n:
        return unquote_plus(n) in SENSITIVE_QUERY_PARAMS
    return False


def _redact_query(query: str) -> str:
    changed = False
    parts = query.split("&")
    for i, part in enumerate(parts):
        key, eq, value = part.partition("=")
        if eq and value and value != REDACTED and is_sensitive_query_param(key):
            parts[i] = f"{key}={REDACTED}"
            changed = True
    return "&".join(parts) if changed else query


def redact_url(url: str) -> str:
    """``url`` with userinfo and credential query values replaced by ``REDACTED``. Never raises.

    Everything else (path, other parameters, their encoding, the fragment) is kept byte for byte.
    """
    if not isinstance(url, str):
        return url
    if "@" not in url and "?" not in url:
        return url
    try:
        fragment = ""
        hash_at = url.find("#")
        if hash_at >= 0:
            url, fragment = url[:hash_at], url[hash_at:]
        query = ""
        q_at = url.find("?")
        if q_at >= 0:
            url, query = url[:q_at], url[q_at + 1 :]
        scheme_at = url.find("://")
        if scheme_at >= 0:
            authority_start = scheme_at + 3
            slash = url.find("/", authority_start)
            authority_end = slash if slash >= 0 else len(url)
            authority = url[authority_start:authority_end]
            at = authority.rfind("@")
            if at >= 0 and authority[:at] != f"{REDACTED}:{REDACTED}":
                url = (
                    f"{url[:authority_start]}{REDACTED}:{REDACTED}@{authority[at + 1 :]}{url[authority_end:]}"
                )
        if q_at >= 0:
            url = f"{url}?{_redact_query(query)}"
        return url + fragment
    except Exception:  # an URL we cannot take apart: keep nothing that might be secret
        return REDACTED


def _header_name(key: str) -> str | None:
    for prefix in HEADER_ATTRIBUTE_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return None


def is_sensitive_header_attribute(key: str) -> bool:
    """Whether ``key`` is a captured-header attribute (``http.{request,response}.header.<name>``)
    whose header carries credentials."""
    name = _header_name(key)
    return name is not None and is_sensitive_header(name)


def redact_attribute(key: str, value: Any) -> Any:
    """The value to keep for one span attribute (``value`` itself when nothing is secret)."""
    if key in URL_ATTRIBUTES:
        return redact_url(value) if isinstance(value, str) else value
    name = _header_name(key)
    if name is not None and is_sensitive_header(name):
        if isinstance(value, (tuple, list)):
            return tuple(REDACTED for _ in value) or (REDACTED,)
        return REDACTED
    return value


def redact_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Only the attributes that need a new value, with that value (empty when all are clean).

    Callers set the returned items over the originals (``span.set_attributes(changes)``).
    """
    changes: dict[str, Any] = {}
    for key, value in attributes.items():
        if key in URL_ATTRIBUTES or key.startswith(HEADER_ATTRIBUTE_PREFIXES):
            new = redact_attribute(key, value)
            if new is not value and new != value:
                changes[key] = new
    return changes
