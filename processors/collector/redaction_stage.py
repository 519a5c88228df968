"""The collector's optional redaction stage: credentials in incoming spans, rewritten in place.

Spans from other SDKs (other languages, older versions, hand-made instrumentation) may carry what
spansignals' own httpx hooks never record: URL userinfo, ``?api_key=...``, captured
``Authorization`` or ``x-api-key`` headers. With ``collector.redaction.enabled`` the collector
rewrites them in the received protobuf *before* any derivation sees the span and before it is
forwarded, with the rules of :mod:`spansignals.processors.redaction` (semantic-conventions
``REDACTED``, key kept):

* ``url.full``, ``http.url``, ``url.original``: userinfo and credential query values;
* ``url.query``: credential query values;
* ``http.request.header.<name>`` / ``http.response.header.<name>`` for credential headers: every
  value becomes ``REDACTED`` (arrays keep their length).

Resource, span, event and link attributes are all rewritten. The stage mutates the request, so
with it on the pipeline reports ``mutates = True`` and forwarding must re-encode the request
instead of forwarding the received bytes.
"""

from __future__ import annotations

from typing import Any

from ..redaction import (
    HEADER_ATTRIBUTE_PREFIXES,
    REDACTED,
    URL_ATTRIBUTES,
    is_sensitive_header_attribute,
    redact_url,
)

__all__ = ["redact_kvs", "redact_request"]

_QUERY_ATTRIBUTES = frozenset({"url.query"})


def redact_kvs(kvs: Any) -> int:
    """Redact a protobuf ``repeated KeyValue`` in place; returns how many values changed."""
    changed = 0
    for kv in kvs:
        key = kv.key
        if key in URL_ATTRIBUTES or key in _QUERY_ATTRIBUTES:
            value = kv.value
            if value.WhichOneof("value") != "string_value":
                continue
            text = value.string_value
            new = redact_url(text) if key in URL_ATTRIBUTES else redact_url("?" + text)[1:]
            if new != text:
                value.string_value = new
                changed += 1
        elif key.startswith(HEADER_ATTRIBUTE_PREFIXES) and is_sensitive_header_attribute(key):
            changed += _redact_header_value(kv.value)
    return changed


def _redact_header_value(value: Any) -> int:
    which = value.WhichOneof("value")
    if which == "array_value":
        items = value.array_value.values
        if all(i.WhichOneof("value") == "string_value" and i.string_value == REDACTED for i in items):
            return 0  # also an empty array: nothing to hide
        count = len(items)
        del items[:]
        for _ in range(count):
            items.add().string_value = REDACTED
        return 1
    if which == "string_value" and value.string_value == REDACTED:
        return 0
    if which is None:
        return 0
    value.string_value = REDACTED  # setting one member of the oneof clears any other
    return 1


def redact_request(request: Any) -> int:
    """Redact every resource, span, event and link attribute of an ``ExportTraceServiceRequest``."""
    changed = 0
    for resource_spans in request.resource_spans:
        changed += redact_kvs(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                changed += redact_kvs(span.attributes)
                for event in span.events:
                    changed += redact_kvs(event.attributes)
                for link in span.links:
                    changed += redact_kvs(link.attributes)
    return changed
