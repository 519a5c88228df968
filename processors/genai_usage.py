"""Token usage from LLM provider response bodies, plain JSON or SSE streams (pure, no httpx).

Formats, chosen by the provider table's ``dialect``:

- ``openai``: Chat Completions, legacy Completions, Embeddings and Responses, and the
  OpenAI-compatible APIs sharing them (Azure OpenAI, Mistral, Groq, Together, OpenRouter, vLLM …).
  Streams: the final chunk that ``stream_options.include_usage`` adds (Chat Completions), the
  ``response.completed`` event (Responses).
- ``anthropic``: Messages, with cache creation (incl. the 1-hour split) and cache read tokens.
  Streams: ``message_start`` usage, updated by the cumulative ``message_delta`` usage.
- ``gemini``: ``generateContent`` / ``streamGenerateContent`` (``usageMetadata``; thoughts count as
  output, as Google bills them; per-modality splits are not kept, so audio/image input is
  priced as text input).
- any other dialect of a provider genai-prices knows: genai-prices' own extractors (slower,
  non-streaming only), e.g. AWS Bedrock ``converse`` and ``invoke`` (the model comes from the
  URL; Bedrock's binary event streams are not read).

Counts follow the GenAI semantic conventions: ``gen_ai.usage.input_tokens`` *includes* cache read
and cache creation tokens (Anthropic reports them separately, so they are added); counts the
provider did not report are omitted, never written as 0. The mappings are the ones genai-prices'
extractors use (tests check both agree on every fixture); they are re-implemented here because
genai-prices' generic extractor costs ~60 µs per body against ~3 µs for these.

Nothing here raises on garbage: every entry point returns ``None`` (or an empty result) for
bodies that are not JSON, truncated, error objects, or in an unknown content encoding. Streams
are consumed incrementally: only the current SSE event is held (capped at 1 MiB), and JSON data
lines are parsed only when they contain a usage object.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from .pricing import TokenUsage

__all__ = [
    "ATTR_CACHE_CREATION_1H",
    "ATTR_CACHE_CREATION_TOKENS",
    "ATTR_CACHE_READ_TOKENS",
    "ATTR_COST",
    "ATTR_INPUT_TOKENS",
    "ATTR_OPERATION",
    "ATTR_OUTPUT_TOKENS",
    "ATTR_REASONING_TOKENS",
    "ATTR_REQUEST_MODEL",
    "ATTR_RESPONSE_MODEL",
    "ATTR_SERVICE_TIER",
    "ParsedUsage",
    "ResponseUsageReader",
    "SseUsageParser",
    "operation_for",
    "parse_json_body",
    "request_model_from",
    "usage_attributes",
]

ATTR_OPERATION = "gen_ai.operation.name"
ATTR_REQUEST_MODEL = "gen_ai.request.model"
ATTR_RESPONSE_MODEL = "gen_ai.response.model"
ATTR_INPUT_TOKENS = "gen_ai.usage.input_tokens"
ATTR_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
ATTR_CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
ATTR_CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
ATTR_REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
ATTR_CACHE_CREATION_1H = "spansignals.usage.cache_creation_1h.input_tokens"
"""Anthropic's 1-hour cache writes (priced apart; the conventions have no attribute for them)."""
ATTR_SERVICE_TIER = "openai.response.service_tier"
"""OpenAI's processing tier (``default``, ``flex``, ``priority``): it changes the price."""
ATTR_COST = "gen_ai.usage.cost"
"""USD, the attribute OpenLIT uses (the conventions define none yet)."""

MAX_EVENT_BYTES = 1 << 20
MAX_JSON_BYTES = 8 << 20
_TAIL_BYTES = 64 << 10


@dataclass(frozen=True, slots=True)
class ParsedUsage:
    """What one response says about a call: its usage, the model that served it, the operation."""

    usage: TokenUsage
    response_model: str | None = None
    operation: str | None = None
    service_tier: str | None = None


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _add(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _usage_openai(u: Mapping[str, Any], reasoning_outside_output: bool = False) -> TokenUsage | None:
    if "input_tokens" in u and "prompt_tokens" not in u:  # Responses API
        details = u.get("input_tokens_details")
        out_details = u.get("output_tokens_details")
        cache_read = _count(details.get("cached_tokens")) if isinstance(details, Mapping) else None
        cache_write = _count(details.get("cache_write_tokens")) if isinstance(details, Mapping) else None
        reasoning = _count(out_details.get("reasoning_tokens")) if isinstance(out_details, Mapping) else None
        usage = TokenUsage(
            _count(u.get("input_tokens")), _count(u.get("output_tokens")), cache_read, cache_write, reasoning
        )
        return None if usage.input is None and usage.output is None else usage
    prompt = _count(u.get("prompt_tokens"))
    if prompt is None:
        return None
    details = u.get("prompt_tokens_details")
    cache_read = cache_write = None
    if isinstance(details, Mapping):
        cache_read = _count(details.get("cached_tokens"))
        cache_write = _count(details.get("cache_write_tokens"))
    if cache_read is None:
        cache_read = _count(u.get("prompt_cache_hit_tokens"))  # DeepSeek's own field
    out_details = u.get("completion_tokens_details")
    reasoning = _count(out_details.get("reasoning_tokens")) if isinstance(out_details, Mapping) else None
    output = _count(u.get("completion_tokens"))
    if reasoning_outside_output and reasoning is not None and output is not None:
        output += reasoning  # xAI reports reasoning apart from completion tokens
    return TokenUsage(prompt, output, cache_read, cache_write, reasoning)


def _usage_anthropic(u: Mapping[str, Any]) -> TokenUsage | None:
    base = _count(u.get("input_tokens"))
    output = _count(u.get("output_tokens"))
    if base is None and output is None:
        return None
    cache_write = _count(u.get("cache_creation_input_tokens"))
    cache_read = _count(u.get("cache_read_input_tokens"))
    one_hour = None
    creation = u.get("cache_creation")
    if isinstance(creation, Mapping):
        one_hour = _count(creation.get("ephemeral_1h_input_tokens"))
    total_input = _add(base, cache_write, cache_read) if base is not None else None
    return TokenUsage(total_input, output, cache_read, cache_write, None, one_hour)


def _usage_gemini(u: Mapping[str, Any]) -> TokenUsage | None:
    prompt = _count(u.get("promptTokenCount"))
    tool_prompt = _count(u.get("toolUsePromptTokenCount"))
    candidates = _count(u.get("candidatesTokenCount"))
    thoughts = _count(u.get("thoughtsTokenCount"))
    if prompt is None and candidates is None and thoughts is None:
        return None
    return TokenUsage(
        _add(prompt, tool_prompt),
        _add(candidates, thoughts),
        _count(u.get("cachedContentTokenCount")),
        None,
        thoughts,
    )


def operation_for(dialect: str, path: str) -> str | None:
    """The ``gen_ai.operation.name`` of a request path, or ``None`` when it is not an LLM call."""
    if dialect == "gemini":
        if ":generateContent" in path or ":streamGenerateContent" in path:
            return "generate_content"
        if ":embedContent" in path or ":batchEmbedContents" in path:
            return "embeddings"
        return None
    if dialect == "anthropic":
        return "chat" if path.rstrip("/").endswith("/messages") else None
    if dialect == "openai":
        p = path.rstrip("/")
        if p.endswith("/chat/completions"):
            return "chat"
        if p.endswith("/embeddings"):
            return "embeddings"
        if p.endswith("/completions"):
            return "text_completion"
        if p.endswith("/responses"):
            return "chat"
        return None
    if _BEDROCK_MODEL.search(path):
        return "chat"
    return None


_GEMINI_MODEL = re.compile(r"/models/([^/:]+):")
_BEDROCK_MODEL = re.compile(
    r"/model/([^/]+)/(?:converse|converse-stream|invoke|invoke-with-response-stream)/?\Z"
)
_MODEL_KEY = b'"model"'
_MODEL_VALUE = re.compile(rb'\s*:\s*"((?:[^"\\]|\\.){1,256})"')


def request_model_from(dialect: str, path: str, body: bytes | None) -> str | None:
    """``gen_ai.request.model``: from the URL for Gemini and Bedrock (``/model/{id}/converse``),
    else the request body's top-level ``model``.

    The body is scanned, not parsed (a large prompt would cost a full JSON parse): a ``"model"``
    key followed by a string, which cannot occur inside a JSON string (its quotes are escaped).
    """
    try:
        if dialect == "gemini":
            m = _GEMINI_MODEL.search(path)
            return m.group(1) if m else None
        if dialect == "generic":
            bedrock = _BEDROCK_MODEL.search(path)
            if bedrock:
                return unquote(bedrock.group(1))
        if not body:
            return None
        start = body.find(_MODEL_KEY)
        while start >= 0:
            found = _MODEL_VALUE.match(body, start + len(_MODEL_KEY))
            if found:
                return found.group(1).decode("utf-8", "replace")
            start = body.find(_MODEL_KEY, start + 1)
    except Exception:
        return None
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_json_body(
    dialect: str, obj: Any, *, provider: str | None = None, path: str = ""
) -> ParsedUsage | None:
    """Usage from a decoded response object; ``None`` when it carries none.

    Gemini's ``streamGenerateContent`` without ``alt=sse`` answers a JSON *array* of chunks whose
    ``usageMetadata`` is cumulative: the last chunk carrying one is used.
    """
    try:
        if dialect == "gemini" and isinstance(obj, list):
            obj = next((c for c in reversed(obj) if isinstance(c, Mapping) and "usageMetadata" in c), None)
        if not isinstance(obj, Mapping):
            return None
        operation = operation_for(dialect, path) if path else None
        if dialect == "openai":
            u = obj.get("usage")
            if not isinstance(u, Mapping):
                return None
            usage = _usage_openai(u, provider == "x_ai")
            if usage is None:
                return None
            return ParsedUsage(usage, _str(obj.get("model")), operation, _str(obj.get("service_tier")))
        if dialect == "anthropic":
            u = obj.get("usage")
            if not isinstance(u, Mapping):
                return None
            usage = _usage_anthropic(u)
            if usage is None:
                return None
            return ParsedUsage(usage, _str(obj.get("model")), operation)
        if dialect == "gemini":
            u = obj.get("usageMetadata")
            if not isinstance(u, Mapping):
                return None
            usage = _usage_gemini(u)
            if usage is None:
                return None
            return ParsedUsage(usage, _str(obj.get("modelVersion")), operation)
        if provider:
            return _parse_with_genai_prices(provider, obj, operation)
    except Exception:
        return None
    return None


def _parse_with_genai_prices(
    provider: str, obj: Mapping[str, Any], operation: str | None
) -> ParsedUsage | None:
    """genai-prices' extractors for providers we have no hand-written format for."""
    import warnings

    from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

    from .pricing import GENAI_PRICES_PROVIDER_IDS

    snapshot = get_snapshot()
    gp = find_provider_by_id(snapshot.providers, GENAI_PRICES_PROVIDER_IDS.get(provider, provider))
    if gp is None or not gp.extractors:
        return None
    for extractor in gp.extractors:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model, usage = extractor.extract(obj)
        except Exception:
            continue
        values = usage.__dict__
        return ParsedUsage(
            TokenUsage(
                _count(values.get("input_tokens")),
                _count(values.get("output_tokens")),
                _count(values.get("cache_read_tokens")),
                _count(values.get("cache_write_tokens")),
                _count(values.get("output_reasoning_tokens")),
            ),
            model,
            operation,
        )
    return None


def usage_attributes(parsed: ParsedUsage) -> dict[str, Any]:
    """The span attributes for ``parsed`` (semantic-convention names; unreported counts omitted)."""
    u = parsed.usage
    attrs: dict[str, Any] = {}
    if parsed.operation is not None:
        attrs[ATTR_OPERATION] = parsed.operation
    if parsed.response_model is not None:
        attrs[ATTR_RESPONSE_MODEL] = parsed.response_model
    if parsed.service_tier is not None:
        attrs[ATTR_SERVICE_TIER] = parsed.service_tier
    for key, value in (
        (ATTR_INPUT_TOKENS, u.input),
        (ATTR_OUTPUT_TOKENS, u.output),
        (ATTR_CACHE_READ_TOKENS, u.cache_read),
        (ATTR_CACHE_CREATION_TOKENS, u.cache_write),
        (ATTR_REASONING_TOKENS, u.reasoning),
    ):
        if value is not None:
            attrs[key] = value
    if u.cache_write_1h is not None:
        attrs[ATTR_CACHE_CREATION_1H] = u.cache_write_1h
    return attrs


# --- streams -----------------------------------------------------------------------------------

_HAS_USAGE = re.compile(rb'"usage(?:Metadata)?"\s*:\s*\{')


class SseUsageParser:
    """Incremental SSE parser keeping only the usage of a stream (see the module docstring).

    ``feed(decoded_bytes)`` any number of times, then ``result()``. Holds one event at most.
    """

    def __init__(self, dialect: str, *, provider: str | None = None, path: str = "") -> None:
        self.dialect = dialect
        self._xai = provider == "x_ai"
        self._operation = operation_for(dialect, path) if path else None
        self._line = bytearray()
        self._data: list[bytes] = []
        self._data_size = 0
        self._skip_line = False
        self._model: str | None = None
        self._tier: str | None = None
        self._usage: TokenUsage | None = None
        self._anthropic: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> None:
        """Consume decoded bytes; never raises."""
        try:
            start = 0
            while True:
                nl = chunk.find(b"\n", start)
                if nl < 0:
                    rest = chunk[start:]
                    if not self._skip_line:
                        if len(self._line) + len(rest) > MAX_EVENT_BYTES:
                            self._line.clear()
                            self._skip_line = True
                        else:
                            self._line += rest
                    return
                if self._skip_line:
                    self._skip_line = False
                    self._line.clear()
                else:
                    if self._line:
                        self._line += chunk[start:nl]
                        line = bytes(self._line)
                        self._line.clear()
                    else:
                        line = chunk[start:nl]
                    self._on_line(line.rstrip(b"\r"))
                start = nl + 1
        except Exception:
            self._line.clear()

    def _on_line(self, line: bytes) -> None:
        if not line:
            self._dispatch()
            return
        if line.startswith(b"data:"):
            value = line[5:]
            if value.startswith(b" "):
                value = value[1:]
            self._data_size += len(value)
            if self._data_size <= MAX_EVENT_BYTES:
                self._data.append(value)

    def _dispatch(self) -> None:
        data = self._data
        if not data:
            return
        self._data = []
        self._data_size = 0
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        if not _HAS_USAGE.search(payload):
            return
        try:
            obj = json.loads(payload)
        except ValueError:
            return
        if isinstance(obj, Mapping):
            self._on_event(obj)

    def _on_event(self, obj: Mapping[str, Any]) -> None:
        if self.dialect == "anthropic":
            kind = obj.get("type")
            if kind == "message_start":
                message = obj.get("message")
                if isinstance(message, Mapping):
                    self._model = _str(message.get("model")) or self._model
                    u = message.get("usage")
                    if isinstance(u, Mapping):
                        self._anthropic = dict(u)
            elif kind == "message_delta":
                u = obj.get("usage")
                if isinstance(u, Mapping):  # cumulative counts; later non-null values win
                    self._anthropic.update({k: v for k, v in u.items() if v is not None})
            return
        if self.dialect == "gemini":
            u = obj.get("usageMetadata")
            if isinstance(u, Mapping):
                self._usage = _usage_gemini(u) or self._usage
            self._model = _str(obj.get("modelVersion")) or self._model
            return
        # openai: chat chunk with usage, or a Responses event carrying the response object
        response = obj.get("response")
        target = response if isinstance(response, Mapping) else obj
        u = target.get("usage")
        if isinstance(u, Mapping):
            usage = _usage_openai(u, self._xai)
            if usage is not None:
                self._usage = usage
                self._model = _str(target.get("model")) or self._model
                self._tier = _str(target.get("service_tier")) or self._tier

    def result(self) -> ParsedUsage | None:
        """The usage the stream reported, or ``None``. Flushes a final event without a blank line."""
        try:
            if self._line and not self._skip_line:
                self._on_line(bytes(self._line).rstrip(b"\r"))
                self._line.clear()
            self._dispatch()
            if self.dialect == "anthropic":
                usage = _usage_anthropic(self._anthropic) if self._anthropic else None
                if usage is None:
                    return None
                return ParsedUsage(usage, self._model, self._operation)
            if self._usage is None:
                return None
            return ParsedUsage(self._usage, self._model, self._operation, self._tier)
        except Exception:
            return None


class _Decoder:
    """Incremental Content-Encoding decoding (identity, gzip, deflate, br); ``None`` when unknown."""

    def __init__(self, encoding: str) -> None:
        self._brotli: Any = None
        self._zlib: Any = None
        encodings = [e.strip().lower() for e in encoding.split(",") if e.strip() and e.strip() != "identity"]
        if len(encodings) > 1:
            raise ValueError("stacked content encodings are not decoded")
        enc = encodings[0] if encodings else ""
        if enc in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif enc == "deflate":
            self._zlib = zlib.decompressobj()
        elif enc == "br":
            import brotli  # optional: httpx decodes br only when it is installed too

            self._brotli = brotli.Decompressor()
        elif enc:
            raise ValueError(f"unsupported content encoding {enc!r}")

    def decode(self, chunk: bytes) -> bytes:
        if self._zlib is not None:
            return self._zlib.decompress(chunk)
        if self._brotli is not None:
            return self._brotli.process(chunk)
        return chunk


class ResponseUsageReader:
    """Usage from raw response chunks as they go by: decoding, then SSE or JSON parsing.

    ``content_type`` and ``content_encoding`` are the response headers. JSON bodies are kept up
    to 8 MiB (decoded); past that only the first and last 64 KiB are kept and the usage object
    is looked for in the tail (OpenAI-style bodies, e.g. large embedding responses, end with it).
    ``feed`` and ``finish`` never raise; ``finish`` returns ``None`` when nothing was found.
    """

    def __init__(
        self,
        dialect: str,
        *,
        content_type: str = "",
        content_encoding: str = "",
        provider: str | None = None,
        path: str = "",
    ) -> None:
        self.dialect = dialect
        self.provider = provider
        self.path = path
        self.failed = False
        self.size = 0
        try:
            self._decoder: _Decoder | None = _Decoder(content_encoding or "")
        except Exception:
            self._decoder = None
            self.failed = True
        self.streaming = "text/event-stream" in content_type.lower()
        self._sse = SseUsageParser(dialect, provider=provider, path=path) if self.streaming else None
        self._parts: list[bytes] = []
        self._head = b""
        self._tail = bytearray()
        self._overflow = False

    def feed(self, chunk: bytes) -> None:
        """Consume one raw (still encoded) chunk."""
        if self.failed:
            return
        try:
            data = self._decoder.decode(chunk) if self._decoder is not None else chunk
        except Exception:
            self.failed = True
            return
        if not data:
            return
        self.size += len(data)
        if self._sse is not None:
            self._sse.feed(data)
            return
        if not self._overflow:
            self._parts.append(data)
            if self.size > MAX_JSON_BYTES:
                whole = b"".join(self._parts)
                self._parts = []
                self._head = whole[:_TAIL_BYTES]
                self._tail = bytearray(whole[-_TAIL_BYTES:])
                self._overflow = True
            return
        self._tail += data
        if len(self._tail) > 2 * _TAIL_BYTES:
            del self._tail[:-_TAIL_BYTES]

    def finish(self) -> ParsedUsage | None:
        """The usage found, or ``None``."""
        if self.failed:
            return None
        try:
            if self._sse is not None:
                return self._sse.result()
            if not self._overflow:
                body = b"".join(self._parts)
                if not body:
                    return None
                return parse_json_body(self.dialect, json.loads(body), provider=self.provider, path=self.path)
            return self._from_tail()
        except Exception:
            return None

    def _from_tail(self) -> ParsedUsage | None:
        tail = bytes(self._tail)
        matches = list(_HAS_USAGE.finditer(tail))
        if not matches:
            return None
        start = matches[-1].end() - 1
        try:
            usage_obj, _ = json.JSONDecoder().raw_decode(
                tail.decode("utf-8", "replace"), len(tail[:start].decode("utf-8", "replace"))
            )
        except ValueError:
            return None
        key = "usageMetadata" if self.dialect == "gemini" else "usage"
        model_key = "modelVersion" if self.dialect == "gemini" else "model"
        model = None
        mm = re.search(rb'"' + model_key.encode() + rb'"\s*:\s*"([^"\\]{1,256})"', self._head + tail)
        if mm:
            model = mm.group(1).decode("utf-8", "replace")
        obj: dict[str, Any] = {key: usage_obj}
        if model is not None:
            obj[model_key] = model
        return parse_json_body(self.dialect, obj, provider=self.provider, path=self.path)
