"""spansignals' httpx hooks, and the extension point other signals plug into.

The hooks run inside ``opentelemetry-instrumentation-httpx``'s request and response hooks, on the
client span before it ends (an SDK span is read-only once ended):

- the request hook resolves the provider from the request host (:mod:`~spansignals.processors.providers`)
  and sets ``spansignals.provider`` (and ``gen_ai.provider.name`` for LLM providers), then
  redacts ``url.full`` / ``http.url`` and captured request-header attributes
  (:mod:`~spansignals.processors.redaction`), so even a request that fails without a response
  exports nothing secret;
- the response hook lets enrichers add their attributes, then redacts captured header attributes
  again (response headers, and anything an enricher captured).

**Extension point.** Work that needs the request or response (token usage from bodies, rate-limit
headers) is an :class:`HttpxEnricher`: ``on_request`` returns any per-request state (or ``None``),
and ``on_response`` receives it back. Enrichers are plain synchronous methods, called from both
the sync and the async hooks; they must not do I/O or block. They are built per ``configure()``
call by *enricher factories* (``factory(config, engine) -> HttpxEnricher | None``), so they can
read the configuration and reach the engine's derivations. Register a factory in one of two
ways: add its ``"module:attribute"`` path to :data:`BUILTIN_ENRICHER_FACTORIES` (for enrichers
shipped with spansignals: usage extraction, rate-limit headers), or call
:func:`register_enricher_factory` before ``configure()`` (apps and tests).

``on_response`` may return the attributes it wants on the span (a mapping) instead of setting them:
the response hook then sets what every enricher returned with one ``set_attributes`` call after
the last enricher, in enricher order (later ones win). Each SDK ``set_attributes`` call costs
~1.3 µs before its first item (the mapping is validated and copied as a whole), so two enrichers
that return their attributes save that once per response. Attributes an enricher sets on the span
directly are kept as before; credential headers are redacted either way.

To see a **streamed body** without changing what the app receives, an enricher calls
:func:`observe_response_body` from ``on_response``: every raw chunk the app reads is passed to
``on_chunk`` as it goes by (no buffering), and ``on_done(complete)`` is called once when the
stream ends or is closed. By then the span may have ended, so the observer must record its
result directly into a derivation (the engine is available to the factory), not on the span.
Chunks are the bytes on the wire (still gzip/br encoded when ``Content-Encoding`` says so).

Every hook body catches its own exceptions (counted in ``spansignals_processor_errors_total``
with ``processor="httpx_hooks"``) and never changes the request or the response.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from spansignals.processors.engine import ProcessorErrors
from spansignals.processors.providers import (
    ATTR_GENAI_PROVIDER,
    ATTR_PROVIDER,
    ProviderInfo,
    ProviderTable,
    default_table,
)
from spansignals.processors.redaction import (
    is_sensitive_header_attribute,
    redact_attribute,
    redact_url,
)

__all__ = [
    "BUILTIN_ENRICHER_FACTORIES",
    "ERROR_PROCESSOR_NAME",
    "EnricherFactory",
    "HttpxEnricher",
    "HttpxHooks",
    "build_enrichers",
    "observe_response_body",
    "register_enricher_factory",
]

_logger = logging.getLogger(__name__)

ERROR_PROCESSOR_NAME = "httpx_hooks"

BUILTIN_ENRICHER_FACTORIES: list[str] = [
    "spansignals.sdk.ratelimit_capture:build_ratelimit_enricher",
    "spansignals.sdk.usage_enricher:genai_usage_enricher",
]
"""``"module:attribute"`` paths of the enricher factories shipped with spansignals (loaded lazily;
a factory that fails to import or build is logged and skipped)."""

_CAPTURE_REQUEST_ENV = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST"


@runtime_checkable
class HttpxEnricher(Protocol):
    """Adds attributes to httpx client spans (or feeds derivations) from requests and responses.

    ``request`` and ``response`` are the instrumentation's ``RequestInfo`` (``method`` bytes,
    ``url`` an ``httpx.URL``, ``headers``, ``stream``, ``extensions``) and ``ResponseInfo``
    (``status_code``, ``headers``, ``stream``, ``extensions``). ``provider`` is ``None`` for hosts
    no table entry knows. Both methods run on the request path: keep them to microseconds, and
    never read a body here (use :func:`observe_response_body`).
    """

    name: str

    def on_request(self, span: Any, request: Any, provider: ProviderInfo | None) -> Any:
        """Called after the span starts; the return value comes back as ``state``."""

    def on_response(
        self, span: Any, request: Any, response: Any, provider: ProviderInfo | None, state: Any
    ) -> Mapping[str, Any] | None:
        """Called when response headers arrive, before the span ends; may return attributes for the
        hook to set (with the other enrichers' ones, in one call)."""


EnricherFactory = Callable[[Any, Any], "HttpxEnricher | None"]
"""``factory(config, engine)``: build an enricher for one ``configure()`` call, or ``None`` when the
configuration does not need it. ``config`` is a ``SpansignalsConfig``, ``engine`` a
``SignalEngine``."""

_extra_factories: list[EnricherFactory] = []
_factories_lock = threading.Lock()


def register_enricher_factory(factory: EnricherFactory) -> Callable[[], None]:
    """Have every later ``configure()`` build an enricher with ``factory``; returns an unregister
    function."""
    with _factories_lock:
        _extra_factories.append(factory)

    def unregister() -> None:
        with _factories_lock:
            if factory in _extra_factories:
                _extra_factories.remove(factory)

    return unregister


def _load_factory(path: str) -> EnricherFactory:
    module_name, _, attr = path.partition(":")
    factory: EnricherFactory = getattr(importlib.import_module(module_name), attr)
    return factory


def build_enrichers(config: Any, engine: Any) -> list[HttpxEnricher]:
    """Run every registered factory (built-ins first); failures are logged and skipped."""
    with _factories_lock:
        factories: list[Any] = [*BUILTIN_ENRICHER_FACTORIES, *_extra_factories]
    enrichers: list[HttpxEnricher] = []
    for factory in factories:
        try:
            fn = _load_factory(factory) if isinstance(factory, str) else factory
            enricher = fn(config, engine)
        except Exception:
            _logger.exception("spansignals: httpx enricher factory %r failed; skipped", factory)
            continue
        if enricher is not None:
            enrichers.append(enricher)
    return enrichers


# Per-request state between the request and the response hook. Both run in the same thread
# (sync) or task (async) inside the instrumentation's span, so a context variable carries it
# without touching the request; the span identity check guards against any mismatch.
_request_state: contextvars.ContextVar[tuple[Any, ProviderInfo | None, list[Any] | None] | None] = (
    contextvars.ContextVar("spansignals_httpx_request_state", default=None)
)


_SPAN_URL_KEYS = ("url.full", "http.url")
_MAX_CACHED_KEYS = 4096
_MAX_CACHED_URLS = 256
_NO_CHANGE = ""  # cached redaction verdict: the URL has nothing secret (a clean URL is never "")


def _host_of(url: Any) -> str | None:
    host = getattr(url, "host", None)
    if host is not None:
        return str(host)
    if isinstance(url, tuple) and len(url) >= 2:  # httpx < 0.20 raw tuples
        raw = url[1]
        return raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    return None


def _needs_url_redaction(url: Any) -> bool:
    query = getattr(url, "query", None)
    if query is None:
        return True  # unknown shape: check the attribute text
    return bool(query) or bool(getattr(url, "userinfo", b""))


def _redact_url_attributes(attrs: Any, keys: Sequence[str], updates: dict[str, Any]) -> None:
    """Put into ``updates`` the redacted value of each URL attribute under ``keys`` that has a secret."""
    for key in keys:
        value = attrs.get(key)
        if isinstance(value, str):
            clean = redact_url(value)
            if clean != value:
                updates[key] = clean


def _set_on(span: Any, attributes: dict[str, Any]) -> None:
    """Set ``attributes`` on an SDK span in the cheapest way for their number.

    ``Span.set_attributes`` first validates the mapping as a whole (``isinstance`` checks against
    the ``Sequence`` and ``Mapping`` ABCs and a copy: ~1.3 µs before the first item), while
    ``set_attribute`` costs ~0.85 µs per string item (isolated ``timeit`` figures; inside a whole
    LLM call the difference for two items is within the noise); so one or two items go one by one
    and more go in one call. The span's final attributes are the same either way.
    """
    if len(attributes) > 2:
        span.set_attributes(attributes)
        return
    set_attribute = span.set_attribute
    for key, value in attributes.items():
        set_attribute(key, value)


class HttpxHooks:
    """The four hooks for ``HTTPXClientInstrumentor`` (sync and async), bound to one configuration.

    ``table`` (default: the built-in provider table) resolves hosts; ``errors`` counts hook
    failures (default: a private counter); ``enrichers`` run in order on every request.
    ``capture_request_headers`` says whether request headers may be captured as attributes
    (default: whether ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST`` is set).

    The hooks run on the app's request path, so what depends only on the host or the URL is
    worked out once and kept in small bounded dicts (cleared when full): the provider and its
    attributes per host, the redacted form of each URL that has a query or userinfo, and the
    attribute keys that are not credential headers. The URL cache holds the app's own request URLs,
    secrets included, in the app's own memory; nothing from it is exported or logged.
    """

    def __init__(
        self,
        table: ProviderTable | None = None,
        *,
        errors: ProcessorErrors | None = None,
        enrichers: Sequence[HttpxEnricher] = (),
        capture_request_headers: bool | None = None,
    ) -> None:
        self._table = table if table is not None else default_table()
        self.errors = errors if errors is not None else ProcessorErrors()
        self.enrichers: tuple[HttpxEnricher, ...] = tuple(enrichers)
        if capture_request_headers is None:
            capture_request_headers = bool(os.environ.get(_CAPTURE_REQUEST_ENV, "").strip())
        self._scan_request_headers = capture_request_headers
        self._url_keys: tuple[str, ...] | None = None
        self._harmless_keys: set[str] = set()  # attribute keys that are not credential headers
        # host -> (provider, its span attributes or None): one lookup instead of resolve + a dict
        self._hosts: dict[str | None, tuple[ProviderInfo | None, dict[str, Any] | None]] = {}
        # request URL (with a query or userinfo) -> redacted URL, or _NO_CHANGE
        self._clean_urls: dict[str, str] = {}

    @property
    def table(self) -> ProviderTable:
        """The provider table hosts are resolved with; setting it forgets the providers per host."""
        return self._table

    @table.setter
    def table(self, table: ProviderTable) -> None:
        self._table = table
        self._hosts = {}

    # -- sync hooks (the instrumentation checks ``callable`` / ``iscoroutinefunction``) ----------

    def request_hook(self, span: Any, request: Any) -> None:
        """Provider attributes, URL and request-header redaction, then enrichers' ``on_request``."""
        try:
            if not span.is_recording():
                return
        except Exception as exc:
            self.errors.record(ERROR_PROCESSOR_NAME, exc)
            return
        provider: ProviderInfo | None = None
        try:
            url = request.url
            host = _host_of(url)
            known = self._hosts.get(host)
            if known is None:
                known = self._provider_of(host)
            provider, provider_attributes = known
            if _needs_url_redaction(url):
                updates: dict[str, Any] = {}
                self._redact_url(span, url, updates)
                if updates:
                    if provider_attributes:
                        updates.update(provider_attributes)
                    provider_attributes = updates
            if provider_attributes:
                _set_on(span, provider_attributes)  # the SDK copies what it is given
        except Exception as exc:
            # A request we could not take apart still gets its URL attributes redacted (from what
            # the span holds) and its headers scanned, here and in the response hook.
            self.errors.record(ERROR_PROCESSOR_NAME, exc)
            provider = None
            self._redact_span_urls(span)
        if self._scan_request_headers:
            try:
                self._redact_headers(span)
            except Exception as exc:
                self.errors.record(ERROR_PROCESSOR_NAME, exc)
        states: list[Any] | None = None
        if self.enrichers:
            states = []
            for enricher in self.enrichers:
                try:
                    states.append(enricher.on_request(span, request, provider))
                except Exception as exc:
                    self.errors.record(ERROR_PROCESSOR_NAME, exc)
                    states.append(None)
        _request_state.set((span, provider, states))

    def _redact_span_urls(self, span: Any) -> None:
        """Fallback: redact the URL attributes the span holds (never raises)."""
        try:
            changes: dict[str, Any] = {}
            _redact_url_attributes(span.attributes, _SPAN_URL_KEYS, changes)
            if changes:
                span.set_attributes(changes)
        except Exception as exc:
            self.errors.record(ERROR_PROCESSOR_NAME, exc)

    def _provider_of(self, host: str | None) -> tuple[ProviderInfo | None, dict[str, Any] | None]:
        """Resolve ``host`` and remember its provider with the attributes it puts on spans."""
        provider = self._table.resolve(host)
        attributes: dict[str, Any] | None = None
        if provider is not None:
            attributes = {ATTR_PROVIDER: provider.name}
            if provider.genai_name is not None:
                attributes[ATTR_GENAI_PROVIDER] = provider.genai_name
        known = (provider, attributes)
        hosts = self._hosts
        if len(hosts) >= _MAX_CACHED_KEYS:
            hosts.clear()  # hosts are few in practice; a flood of distinct ones just resets
        hosts[host] = known
        return known

    def _redact_url(self, span: Any, url: Any, updates: dict[str, Any]) -> None:
        """Put redacted values of the span's URL attributes into ``updates``.

        The instrumentation writes the URL under ``http.url`` or ``url.full`` (or both), as the
        semconv opt-in mode says; the keys are learnt from the first span and reused, and the value
        is computed from the request URL rather than read back from the span (and remembered per
        URL: an app calls the same few endpoints).
        """
        keys = self._url_keys
        if keys is None:
            attrs = span.attributes
            keys = tuple(k for k in _SPAN_URL_KEYS if k in attrs)
            if not keys:
                return
            self._url_keys = keys
        if isinstance(url, tuple):  # httpx < 0.20: read back what the instrumentation wrote
            _redact_url_attributes(span.attributes, keys, updates)
            return
        raw = str(url)
        cache = self._clean_urls
        cached = cache.get(raw)
        if cached is None:
            cached = redact_url(raw)
            if cached == raw:
                cached = _NO_CHANGE
            if len(cache) >= _MAX_CACHED_URLS:
                cache.clear()  # URLs with ever-changing queries: start over rather than grow
            cache[raw] = cached
        if cached:  # not _NO_CHANGE
            for key in keys:
                updates[key] = cached

    def response_hook(self, span: Any, request: Any, response: Any) -> None:
        """Enrichers' ``on_response``, then redaction of every captured header attribute.

        Each step fails on its own: an enricher that raises or returns something unusable costs
        only its own attributes, and redaction runs whatever the enrichers did.
        """
        try:
            saved = _request_state.get()
            if saved is None or saved[0] is not span:
                return  # not recording (the request hook stopped early), or instrumented elsewhere
            _request_state.set(None)
            _, provider, states = saved
        except Exception as exc:
            self.errors.record(ERROR_PROCESSOR_NAME, exc)
            return
        if states is not None:
            returned: Mapping[str, Any] | None = None
            for enricher, state in zip(self.enrichers, states, strict=False):
                try:
                    found = enricher.on_response(span, request, response, provider, state)
                    if found:
                        # never updated in place: an enricher may hand back a dict it keeps
                        returned = found if returned is None else {**returned, **found}
                except Exception as exc:
                    self.errors.record(ERROR_PROCESSOR_NAME, exc)
            if returned:
                try:
                    span.set_attributes(returned)  # the SDK copies it
                except Exception as exc:
                    self.errors.record(ERROR_PROCESSOR_NAME, exc)
        try:
            self._redact_headers(span)
        except Exception as exc:
            self.errors.record(ERROR_PROCESSOR_NAME, exc)

    def _redact_headers(self, span: Any) -> None:
        """Redact captured credential-header attributes (the instrumentation's or an enricher's).

        Whether a key is a credential header is decided once per key and remembered (keys are
        few): when every key of the span is known to be harmless, one C-level ``issuperset`` pass
        settles it (~0.7 µs for 20 keys, against ~1.4 µs for a lookup per key in Python).
        """
        attrs = span.attributes
        harmless = self._harmless_keys
        if harmless.issuperset(attrs):
            return
        changes: dict[str, Any] | None = None
        for key in attrs:
            if key in harmless:
                continue
            if not is_sensitive_header_attribute(key):
                if len(harmless) < _MAX_CACHED_KEYS:
                    harmless.add(key)
                continue
            value = attrs[key]
            clean = redact_attribute(key, value)
            if clean != value:
                if changes is None:
                    changes = {}
                changes[key] = clean
        if changes:
            span.set_attributes(changes)

    # -- async hooks: same work, no awaiting ------------------------------------------------------

    async def async_request_hook(self, span: Any, request: Any) -> None:
        """:meth:`request_hook` for ``httpx.AsyncClient``."""
        self.request_hook(span, request)

    async def async_response_hook(self, span: Any, request: Any, response: Any) -> None:
        """:meth:`response_hook` for ``httpx.AsyncClient``."""
        self.response_hook(span, request, response)

    def instrument_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``HTTPXClientInstrumentor().instrument()``."""
        return {
            "request_hook": self.request_hook,
            "response_hook": self.response_hook,
            "async_request_hook": self.async_request_hook,
            "async_response_hook": self.async_response_hook,
        }


# -- body observation -------------------------------------------------------------------------


class _ObservedStream:
    """Wraps httpcore's response stream: yields the same chunks and shows each to an observer."""

    def __init__(
        self,
        inner: Any,
        on_chunk: Callable[[bytes], None],
        on_done: Callable[[bool], None],
        errors: ProcessorErrors | None,
    ) -> None:
        self._inner = inner
        self._on_chunk: Callable[[bytes], None] | None = on_chunk
        self._on_done = on_done
        self._errors = errors
        self._done = False

    def _chunk(self, chunk: bytes) -> None:
        on_chunk = self._on_chunk
        if on_chunk is None:
            return
        try:
            on_chunk(chunk)
        except Exception as exc:
            self._on_chunk = None  # a broken observer stops observing; the app keeps reading
            self._fail(exc)

    def _finish(self, complete: bool) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._on_done(complete)
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if self._errors is not None:
            self._errors.record(ERROR_PROCESSOR_NAME, exc)
        else:
            _logger.debug("spansignals: body observer failed", exc_info=True)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._chunk(chunk)
            yield chunk
        self._finish(True)

    def close(self) -> None:
        try:
            if hasattr(self._inner, "close"):
                self._inner.close()
        finally:
            self._finish(False)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._chunk(chunk)
            yield chunk
        self._finish(True)

    async def aclose(self) -> None:
        try:
            if hasattr(self._inner, "aclose"):
                await self._inner.aclose()
        finally:
            self._finish(False)


def observe_response_body(
    response: Any,
    on_chunk: Callable[[bytes], None],
    on_done: Callable[[bool], None],
    *,
    errors: ProcessorErrors | None = None,
) -> bool:
    """Show each raw body chunk of ``response`` (a ``ResponseInfo``) to ``on_chunk`` as the app
    reads it, and call ``on_done(complete)`` once at the end (``complete`` is false when the
    stream was closed before its end, e.g. the app never read the body).

    The app receives exactly the same bytes, unbuffered. Observer exceptions are counted in
    ``errors`` and stop the observation, never the app. Returns ``False`` (and observes nothing)
    when the transport's stream is not httpx's own (custom or mock transports).
    """
    stream = getattr(response, "stream", None)
    inner = getattr(stream, "_httpcore_stream", None)
    if inner is None or isinstance(inner, _ObservedStream):
        return False
    stream._httpcore_stream = _ObservedStream(inner, on_chunk, on_done, errors)  # type: ignore[union-attr]
    return True
