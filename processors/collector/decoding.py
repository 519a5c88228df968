"""Turn OTLP trace request bodies into ``ExportTraceServiceRequest`` messages.

Three concerns live here, each a pure function so the receivers stay thin and fuzzers can target
them directly:

* :func:`gunzip_limited` inflates a ``Content-Encoding: gzip`` body, stopping as soon as the output
  passes the size limit, so a decompression bomb costs at most ``limit`` bytes of memory.
* :func:`parse_protobuf_request` parses the binary protobuf encoding (gRPC and
  ``application/x-protobuf``).
* :func:`parse_json_request` parses the OTLP/JSON encoding, whose rules differ from the protobuf
  JSON mapping (see the OTLP specification, "JSON Protobuf Encoding"): trace and span ids are hex
  strings, not base64; field names may be lowerCamelCase or the original snake_case; enums are
  integers (names are accepted too); unknown fields are ignored.

Errors raise :class:`RequestDecodeError` (answered 400 / ``INVALID_ARGUMENT``) or
:class:`RequestTooLarge` (413 / ``RESOURCE_EXHAUSTED``). Their messages say what was wrong and
where, and never quote values from the request, which may hold credentials.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Callable, Iterable
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "RequestDecodeError",
    "RequestTooLarge",
    "gunzip_limited",
    "parse_json_message",
    "parse_json_request",
    "parse_protobuf_request",
]

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""Largest request body accepted, measured after decompression (16 MiB, as ``collector.max_request_bytes``
defaults to in the config)."""

_PARSE_FIELD = re.compile(r"Failed to parse (\w+) field")


class RequestDecodeError(ValueError):
    """The body is not a valid OTLP trace request in the declared encoding (not retryable)."""


class RequestTooLarge(ValueError):
    """The body is larger than the configured limit once decompressed (not retryable)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes after decompression")
        self.limit = limit


def gunzip_limited(data: bytes, limit: int) -> bytes:
    """Inflate a gzip body (one or more members) into at most ``limit`` bytes.

    Raises :class:`RequestTooLarge` as soon as the output would pass ``limit`` (the rest is never
    inflated) and :class:`RequestDecodeError` for a corrupt or truncated stream.
    """
    out = bytearray()
    remaining = data
    try:
        while True:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            out += inflater.decompress(remaining, limit + 1 - len(out))
            if len(out) > limit:
                raise RequestTooLarge(limit)
            if not inflater.eof:
                if inflater.unconsumed_tail:  # output budget spent exactly at the limit
                    raise RequestTooLarge(limit)
                raise RequestDecodeError("gzip body is truncated")
            remaining = inflater.unused_data
            if not remaining.strip(b"\x00"):  # trailing padding after the last member is allowed
                return bytes(out)
    except zlib.error as exc:
        raise RequestDecodeError(f"gzip body is corrupt ({exc})") from None


def parse_protobuf_request(body: bytes) -> ExportTraceServiceRequest:
    """Parse a binary ``ExportTraceServiceRequest``; raises :class:`RequestDecodeError`."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError, ValueError):
        raise RequestDecodeError("body is not a valid protobuf ExportTraceServiceRequest") from None
    return request


def parse_json_request(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest``; raises :class:`RequestDecodeError`."""
    request = parse_json_message(body, ExportTraceServiceRequest, _hex_ids_to_base64, "resourceSpans")
    return cast(ExportTraceServiceRequest, request)


def parse_json_message(
    body: bytes,
    message_type: type[Message],
    convert_ids: Callable[[dict[str, Any]], None],
    top_field: str,
) -> Message:
    """Parse an OTLP/JSON request of any signal; raises :class:`RequestDecodeError`.

    ``convert_ids`` rewrites the document's hex ids in place into the base64 ``ParseDict``
    expects (OTLP/JSON encodes trace and span ids as hex); ``top_field`` names the list the body
    must hold, for the error message. Error messages never quote request values.
    """
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        raise RequestDecodeError("JSON body is not valid UTF-8") from None
    except RecursionError:
        raise RequestDecodeError("JSON body is nested too deeply") from None
    except json.JSONDecodeError as exc:  # its msg is a fixed phrase; the position is safe to show
        raise RequestDecodeError(
            f"body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except ValueError:
        raise RequestDecodeError("body is not valid JSON") from None
    if not isinstance(document, dict):
        raise RequestDecodeError(f"JSON body must be an object with a {top_field} list")
    convert_ids(document)
    request = message_type()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except RecursionError:
        raise RequestDecodeError("JSON body is nested too deeply") from None
    except Exception as exc:  # ParseError, or anything else json_format hits on hostile input
        raise RequestDecodeError(
            f"invalid OTLP JSON at {_field_path(str(exc))}: wrong type or format"
        ) from None
    return request


def _field_path(parser_message: str) -> str:
    """The field path in a ``json_format`` message (``resourceSpans.scopeSpans.spans.kind``).

    Only the schema's field names are kept: the rest of the message may quote the bad value,
    which may be a credential.
    """
    fields = _PARSE_FIELD.findall(parser_message)
    return ".".join(fields) if fields else "(top level)"


def _field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _dicts(value: Any) -> Iterable[dict[str, Any]]:
    if isinstance(value, list):
        return (item for item in value if isinstance(item, dict))
    return ()


_SPAN_ID_FIELDS = (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id"))
_LINK_ID_FIELDS = (("traceId", "trace_id"), ("spanId", "span_id"))


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """Rewrite the hex ids of every span and link in place into the base64 ``ParseDict`` expects.

    Field paths are reported in the error (``resourceSpans[0].scopeSpans[1].spans[3].traceId``).
    """
    for r, resource_spans in enumerate(_dicts(_field(document, "resourceSpans", "resource_spans"))):
        for s, scope_spans in enumerate(_dicts(_field(resource_spans, "scopeSpans", "scope_spans"))):
            for i, span in enumerate(_dicts(scope_spans.get("spans"))):
                path = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                _convert_ids(span, _SPAN_ID_FIELDS, path)
                for j, link in enumerate(_dicts(span.get("links"))):
                    _convert_ids(link, _LINK_ID_FIELDS, f"{path}.links[{j}]")


def _convert_ids(obj: dict[str, Any], fields: tuple[tuple[str, str], ...], path: str) -> None:
    for camel, snake in fields:
        for key in (camel, snake):
            value = obj.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise RequestDecodeError(f"{path}.{camel}: must be a hex string")
            try:
                raw = binascii.unhexlify(value)
            except (binascii.Error, ValueError):
                raise RequestDecodeError(f"{path}.{camel}: must be a hex string") from None
            obj[key] = base64.b64encode(raw).decode("ascii")
