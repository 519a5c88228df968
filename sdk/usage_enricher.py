"""Token usage and cost of LLM calls made with plain httpx: the ``genai_usage`` enricher.

For requests to an LLM provider (the provider table's ``openai``, ``anthropic`` or ``gemini``
dialects, or a provider genai-prices knows), the request hook works out ``gen_ai.operation.name``
and ``gen_ai.request.model`` (from the URL for Gemini, else found in the request body without
parsing it); they are set when the response arrives, together with the usage attributes, because
every ``set_attributes`` call on an SDK span is costly (a request that fails without a response
therefore carries neither): ``on_response`` returns them, and the response hook sets them with the
other enrichers' attributes in one call. What happens to the response depends on when its body can be seen:

**Sync client, JSON body (non-streaming).** The instrumentation ends the client span as soon as
the transport returns the response *headers*; httpx reads the body afterwards. So the enricher
reads the body from the transport in the response hook (the same bytes httpx would read next,
at most 8 MiB; ``Content-Length`` above that goes the streaming way) and hands the app a stream
that replays exactly those bytes (still encoded: httpx decodes gzip/br as usual), then the rest,
and re-raises any transport error at the point the app would have met it. The usage attributes
and ``gen_ai.usage.cost`` (USD, as OpenLIT names it) are then set on the client span before it
ends, so tracing backends show cost per span and per trace. The call is priced once: the cost
processor (:meth:`~spansignals.processors.cost.CostSpanProcessor.price_call`) keeps the exact
price, keyed by what it was computed from, and the span's derivation charges it when the span's
attributes give the same inputs (it never reads the cost attribute itself). The span's duration
includes the body download (as it would for the vendor SDKs' own instrumentations). Consequence, decided on
purpose: a JSON body is read even if the app would not read it (``client.stream()`` then
closing) — LLM JSON bodies are small, and error bodies (status >= 400) are never read.

**Streams (SSE) and async clients.** The body is observed chunk by chunk as the app reads it
(:func:`~spansignals.sdk.httpx_hooks.observe_response_body`: same bytes, no buffering, one SSE
event held at most). The client span has ended by the time the usage is known, so the usage is
reported straight to the engine's :class:`~spansignals.processors.cost.CostSpanProcessor`
(:meth:`~spansignals.processors.cost.CostSpanProcessor.record_usage`) with a copy of the client
span's attributes (provider, models, operation) plus the usage, and the span's resource — the
same derivation, so cost, tokens and budgets count it exactly once. A stream the app abandons
still counts what the provider had reported (Anthropic's input tokens are known at
``message_start`` and billed). Async JSON bodies take this path too (the response hook cannot
await a read). The usage cannot go on the ended span, so it is exported on a **usage report
span**: ``gen_ai.usage`` (kind internal), a child of the client span from its start to the end of
the body, with the usage attributes, ``gen_ai.usage.cost``, the operation and models, and the
provider in ``spansignals.usage.provider`` (not ``spansignals.provider`` or
``gen_ai.provider.name``: selectors by provider, such as SLOs, must not count a second call). A
spansignals collector downstream prices it, once (the client span has no usage). In the app the
call is priced once (the report's cost is handed to the derivation, as for JSON bodies) and
counted once: the cost processor has counted the usage and skips the report when it ends
(matched by provider, models, tier, counts and start time). Reports go to
:attr:`GenAiUsageEnricher.tracer_provider` (``configure()`` sets the provider it instruments
httpx with, given or global; the global provider when unset); when the report would not be
recorded (no SDK provider, a sampler that drops it) the usage is counted in-app only, as before.

Error responses, non-JSON bodies, unknown encodings and malformed bodies are ignored: the
enricher never raises and never changes the response.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from opentelemetry import trace

from spansignals.processors.cost import ATTR_USAGE_PROVIDER, USAGE_SPAN_NAME
from spansignals.processors.genai_usage import (
    ATTR_COST,
    ATTR_OPERATION,
    ATTR_REQUEST_MODEL,
    MAX_JSON_BYTES,
    ParsedUsage,
    ResponseUsageReader,
    operation_for,
    request_model_from,
    usage_attributes,
)
from spansignals.processors.providers import LLM_DIALECTS, ProviderInfo

from .httpx_hooks import ERROR_PROCESSOR_NAME, observe_response_body

__all__ = ["GenAiUsageEnricher", "genai_usage_enricher"]

_logger = logging.getLogger(__name__)

_MAX_REQUEST_SCAN = 4 << 20


class _RequestState:
    __slots__ = ("attributes", "dialect", "path", "provider", "request_model")

    def __init__(
        self,
        provider: ProviderInfo,
        dialect: str,
        path: str,
        request_model: str | None,
        attributes: dict[str, Any],
    ) -> None:
        self.provider = provider
        self.dialect = dialect
        self.path = path
        self.request_model = request_model
        self.attributes = attributes  # set with the response's, in one call (attribute setting is costly)


class _ReplayStream:
    """Yields the chunks read ahead, then the rest of the transport stream, then any read error."""

    def __init__(
        self, chunks: list[bytes], inner: Any, rest: Iterator[bytes] | None, error: BaseException | None
    ):
        self._chunks = chunks
        self._inner = inner
        self._rest = rest
        self._error = error

    def __iter__(self) -> Iterator[bytes]:
        chunks, self._chunks = self._chunks, []
        yield from chunks
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._rest is not None:
            yield from self._rest

    def close(self) -> None:
        if hasattr(self._inner, "close"):
            self._inner.close()


_WANTED = (b"content-type", b"content-encoding", b"content-length")


def _body_headers(headers: Any) -> dict[bytes, str]:
    """Content-Type, -Encoding and -Length in one pass over the raw headers (httpx.Headers.get is
    several times slower per lookup)."""
    out: dict[bytes, str] = {}
    try:
        raw = headers.raw if hasattr(headers, "raw") else headers
        for key, value in raw or ():
            k = (key if isinstance(key, bytes) else str(key).encode("latin-1")).lower()
            if k in _WANTED:
                out[k] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    except Exception:
        return {}
    return out


def _request_body(request: Any) -> bytes | None:
    import httpx

    stream = getattr(request, "stream", None)
    if isinstance(stream, httpx.ByteStream):  # content=/json=: bytes already in memory, re-iterable
        body = b"".join(stream)
        return body[:_MAX_REQUEST_SCAN]
    return None


class GenAiUsageEnricher:
    """Sets GenAI usage attributes and cost on LLM client spans; see the module docstring.

    ``cost`` is the engine's :class:`~spansignals.processors.cost.CostSpanProcessor` (prices for
    ``gen_ai.usage.cost`` and the receiver of late usage); without one, only attributes are set.
    """

    name = "genai_usage"

    def __init__(self, cost: Any = None, *, errors: Any = None, tracer_provider: Any = None) -> None:
        self.cost = cost
        self.errors = errors
        self.tracer_provider = tracer_provider
        """Where usage report spans go: the provider of the app's spans; ``None``: the global one."""
        self._tracer: tuple[Any, Any] | None = None  # (tracer_provider, its tracer)

    def on_request(self, span: Any, request: Any, provider: ProviderInfo | None) -> Any:
        if provider is None or not provider.is_llm:
            return None
        method = request.method
        if method not in (b"POST", "POST"):
            return None
        url = request.url
        path = url.path if hasattr(url, "path") else ""
        dialect = provider.dialect if provider.dialect in LLM_DIALECTS else "generic"
        operation = operation_for(dialect, path)
        if dialect != "generic" and operation is None:
            return None  # e.g. file uploads, model listings: no usage in the response
        model = request_model_from(dialect, path, None if dialect == "gemini" else _request_body(request))
        attrs: dict[str, Any] = {}
        if operation is not None:
            attrs[ATTR_OPERATION] = operation
        if model is not None:
            attrs[ATTR_REQUEST_MODEL] = model
        return _RequestState(provider, dialect, path, model, attrs)

    def on_response(
        self, span: Any, request: Any, response: Any, provider: ProviderInfo | None, state: Any
    ) -> Mapping[str, Any] | None:
        """Start reading the usage; returns the attributes for the hook to set on the span (the
        request's, with the usage and cost when the body was read ahead), in one call with the
        other enrichers' ones."""
        if not isinstance(state, _RequestState):
            return None
        return self._usage(span, response, state) or state.attributes or None

    def _usage(self, span: Any, response: Any, state: _RequestState) -> Mapping[str, Any] | None:
        """The request and usage attributes when the body was read ahead, else ``None`` (then the
        body is observed as the app reads it, if it can hold usage)."""
        status = response.status_code
        if not isinstance(status, int) or status >= 400 or status < 200:
            return None
        if getattr(getattr(response, "stream", None), "_httpcore_stream", None) is None:
            return None  # a custom or mock transport: the body cannot be seen without changing it
        headers = _body_headers(response.headers)
        content_type = headers.get(b"content-type", "").lower()
        media_type = content_type.partition(";")[0].strip()
        streaming = media_type == "text/event-stream"
        if not streaming and not (media_type == "application/json" or media_type.endswith("+json")):
            return None  # not JSON (or a JSON-lines stream): nothing to read
        reader = ResponseUsageReader(
            state.dialect,
            content_type=content_type,
            content_encoding=headers.get(b"content-encoding", ""),
            provider=state.provider.name,
            path=state.path,
        )
        if reader.failed:
            return None
        # Gemini's streamGenerateContent without alt=sse streams a JSON array: never held back.
        progressive = streaming or ":streamGenerateContent" in state.path
        if not progressive:
            annotated = self._read_ahead(span, response, reader, state, headers.get(b"content-length", ""))
            if annotated is not None:
                return annotated
        self._observe(span, response, reader, state)
        return None

    # --- sync JSON: read before the span ends -----------------------------------------------------

    def _read_ahead(
        self, span: Any, response: Any, reader: ResponseUsageReader, state: _RequestState, length: str
    ) -> dict[str, Any] | None:
        """Read the body now (see the module docstring); its attributes for the span, or ``None``
        when it cannot be read ahead."""
        stream = getattr(response, "stream", None)
        inner = getattr(stream, "_httpcore_stream", None)
        if stream is None or inner is None or not hasattr(inner, "__iter__") or hasattr(inner, "__aiter__"):
            return None
        if length and (not length.isdigit() or int(length) > MAX_JSON_BYTES):
            return None
        chunks: list[bytes] = []
        size = 0
        error: BaseException | None = None
        iterator = iter(inner)
        rest: Iterator[bytes] | None = None
        try:
            for chunk in iterator:
                chunks.append(chunk)
                reader.feed(chunk)
                size += len(chunk)
                if size > MAX_JSON_BYTES:  # too large to hold: the rest is observed as it goes by
                    late = self._late_reporter(span, reader, state)
                    rest = _observed(iterator, reader, late) if late is not None else iterator
                    break
        except Exception as exc:  # re-raised to the app where it would have met it
            error = exc
        stream._httpcore_stream = _ReplayStream(chunks, inner, rest, error)
        parsed = reader.finish() if error is None and rest is None else None
        return self._annotate(span, parsed, state)

    def _annotate(self, span: Any, parsed: ParsedUsage | None, state: _RequestState) -> dict[str, Any]:
        attrs = dict(state.attributes)
        if parsed is not None:
            attrs.update(usage_attributes(parsed))
            cost = self._price(parsed, state, getattr(span, "start_time", None))
            if cost is not None:
                attrs[ATTR_COST] = cost
        return attrs

    def _price(self, parsed: ParsedUsage, state: _RequestState, start_ns: int | None) -> float | None:
        if self.cost is None:
            return None
        try:
            # Priced once: the cost processor keeps this exact Decimal for the span's derivation.
            amount = self.cost.price_call(
                state.provider.name,
                parsed.response_model,
                state.request_model,
                parsed.service_tier,
                parsed.usage,
                start_ns or time.time_ns(),
            )
            return float(amount) if amount is not None else None
        except Exception:
            return None  # telemetry never breaks the call; the derivation prices from the attributes

    # --- streams and async bodies: report when the body has gone by -------------------------------

    def _observe(self, span: Any, response: Any, reader: ResponseUsageReader, state: _RequestState) -> None:
        done = self._late_reporter(span, reader, state)
        if done is not None:
            observe_response_body(response, reader.feed, done, errors=self.errors)

    def _late_reporter(
        self, span: Any, reader: ResponseUsageReader, state: _RequestState
    ) -> Callable[[bool], None] | None:
        """A callback that reports the reader's usage once the body has gone by: counted by the
        cost processor, and exported on a usage report span (see the module docstring)."""
        cost = self.cost
        if cost is None:
            return None
        attributes = dict(span.attributes or {})
        attributes.update(state.attributes)
        resource = getattr(getattr(span, "resource", None), "attributes", None) or {}
        start_ns = getattr(span, "start_time", None) or time.time_ns()

        def done(complete: bool) -> None:
            parsed = reader.finish()
            if parsed is None:
                return
            usage = usage_attributes(parsed)
            attrs = dict(attributes)
            attrs.update(usage)
            report_attributes = {ATTR_USAGE_PROVIDER: state.provider.name, **state.attributes, **usage}
            cost_usd = self._price(parsed, state, start_ns)  # handed to record_usage's derivation
            if cost_usd is not None:
                report_attributes[ATTR_COST] = cost_usd
            report = self._start_report(span, report_attributes, start_ns)
            cost.record_usage(
                attrs,
                resource,
                start_ns=start_ns,
                end_ns=time.time_ns(),
                report_attributes=report_attributes if report is not None else None,
            )
            if report is not None:
                report.end()

        return done

    def _start_report(self, span: Any, attributes: dict[str, Any], start_ns: int) -> Any:
        """Start the usage report span (a child of the ended client span, from its start to now),
        or ``None`` when it would not be recorded (then the usage is counted in-app only)."""
        try:
            provider = self.tracer_provider
            cached = self._tracer
            if cached is None or cached[0] is not provider:
                cached = self._tracer = (provider, trace.get_tracer(__name__, tracer_provider=provider))
            tracer = cached[1]
            report = tracer.start_span(
                USAGE_SPAN_NAME,
                context=trace.set_span_in_context(span),
                kind=trace.SpanKind.INTERNAL,
                attributes=attributes,
                start_time=start_ns,
            )
            if report.is_recording():
                return report
            report.end()
        except Exception as exc:
            if self.errors is not None:
                self.errors.record(ERROR_PROCESSOR_NAME, exc)
        return None


def _observed(
    iterator: Iterator[bytes], reader: ResponseUsageReader, done: Callable[[bool], None]
) -> Iterator[bytes]:
    complete = False
    try:
        for chunk in iterator:
            reader.feed(chunk)
            yield chunk
        complete = True
    finally:
        done(complete)


def genai_usage_enricher(config: Any, engine: Any) -> GenAiUsageEnricher | None:
    """Enricher factory (registered in :data:`~spansignals.sdk.httpx_hooks.BUILTIN_ENRICHER_FACTORIES`);
    ``None`` when ``pricing.usage_from_http`` is false."""
    pricing = getattr(config, "pricing", None)
    if pricing is not None and not getattr(pricing, "usage_from_http", True):
        return None
    cost = engine.get("cost") if engine is not None else None
    return GenAiUsageEnricher(cost, errors=getattr(engine, "errors", None))
