"""httpx hooks: provider attributes, redaction before the span ends, enrichers, body observation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from opentelemetry.instrumentation.httpx import RequestInfo, ResponseInfo
from opentelemetry.sdk.trace import TracerProvider
from peers import free_port
from sdk_fixtures import LOCAL_PROVIDERS, LocalServer, Providers

from spansignals.processors.providers import ProviderInfo, ProviderTable
from spansignals.processors.redaction import redact_url
from spansignals.sdk import Telemetry, instrument_client, observe_response_body, register_enricher_factory
from spansignals.sdk.httpx_hooks import _MAX_CACHED_URLS, HttpxHooks


class RecordingEnricher:
    """Sets attributes from the request and the response and keeps what it saw."""

    name = "recording"

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, Any, int]] = []

    def on_request(self, span: Any, request: Any, provider: Any) -> Any:
        span.set_attribute("test.request_path", request.url.path)
        return {"method": request.method}

    def on_response(self, span: Any, request: Any, response: Any, provider: Any, state: Any) -> None:
        span.set_attribute("test.status", response.status_code)
        self.seen.append((provider.name if provider else None, state, response.status_code))


class FailingEnricher:
    """Raises in both methods."""

    name = "failing"

    def on_request(self, span: Any, request: Any, provider: Any) -> Any:
        raise RuntimeError("boom on request")

    def on_response(self, span: Any, request: Any, response: Any, provider: Any, state: Any) -> None:
        raise RuntimeError("boom on response")


@pytest.fixture
def enrichers() -> Iterator[list[Any]]:
    """Enrichers registered for the next configure() (unregistered at teardown)."""
    made: list[Any] = []
    unregister = register_enricher_factory(lambda config, engine: made[0] if made else None)
    yield made
    unregister()


@pytest.fixture
def app(configured: Callable[..., Telemetry], providers: Providers) -> Callable[..., Telemetry]:
    """configure() on private providers with the local server mapped to an LLM provider."""

    def run(config: Any = None, **kwargs: Any) -> Telemetry:
        return configured(
            config if config is not None else LOCAL_PROVIDERS,
            tracer_provider=providers.tracer_provider,
            meter_provider=providers.meter_provider,
            **kwargs,
        )

    return run


def test_sync_span_has_provider_attributes(
    app: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """A sync httpx call to a configured host carries spansignals.provider and gen_ai.provider.name."""
    app()
    with httpx.Client() as client:
        response = client.post(local_server.url("/v1/chat/completions"), json={"model": "m"})
    assert response.json() == {"path": "/v1/chat/completions", "method": "POST"}
    (span,) = providers.spans()
    assert span.attributes["spansignals.provider"] == "local-llm"
    assert span.attributes["gen_ai.provider.name"] == "local-llm"


async def test_async_span_has_provider_attributes(
    app: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """An async httpx call gets the same provider attributes."""
    app()
    async with httpx.AsyncClient() as client:
        response = await client.get(local_server.url())
    assert response.status_code == 200
    (span,) = providers.spans()
    assert span.attributes["spansignals.provider"] == "local-llm"


def test_unknown_host_gets_no_provider(
    app: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """A host no table entry knows gets no provider attributes."""
    app({})
    httpx.get(local_server.url())
    (span,) = providers.spans()
    assert "spansignals.provider" not in span.attributes


@pytest.mark.parametrize("use_async", [False, True])
async def test_url_credentials_redacted(
    app: Callable[..., Telemetry], providers: Providers, local_server: LocalServer, use_async: bool
) -> None:
    """Userinfo and credential query values never reach the exported span, sync and async."""
    app()
    url = f"http://alice:CANARY@127.0.0.1:{local_server.port}/v1/models?key=CANARY&api-key=CANARY&page=2"
    if use_async:
        async with httpx.AsyncClient() as client:
            await client.get(url)
    else:
        httpx.get(url)
    (span,) = providers.spans()
    url_attr = span.attributes.get("url.full") or span.attributes["http.url"]
    assert url_attr == (
        f"http://REDACTED:REDACTED@127.0.0.1:{local_server.port}/v1/models"
        "?key=REDACTED&api-key=REDACTED&page=2"
    )
    assert "CANARY" not in str(dict(span.attributes))


def test_failed_request_is_redacted_too(app: Callable[..., Telemetry], providers: Providers) -> None:
    """A request that fails without a response (connection refused) still exports a redacted URL."""
    app()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{free_port()}/x?token=CANARY")
    (span,) = providers.spans()
    assert "CANARY" not in str(dict(span.attributes))
    assert span.status.status_code.name == "ERROR"


def test_captured_headers_redacted(
    app: Callable[..., Telemetry],
    providers: Providers,
    local_server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Captured credential headers are REDACTED; rate-limit and ordinary headers are kept."""
    monkeypatch.setenv(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", "authorization,x-api-key,content-type"
    )
    monkeypatch.setenv(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE",
        "set-cookie,x-ratelimit-remaining-requests",
    )
    app()
    httpx.post(local_server.url(), json={}, headers={"Authorization": "Bearer CANARY", "x-api-key": "CANARY"})
    (span,) = providers.spans()
    attrs = dict(span.attributes)
    assert "CANARY" not in str(attrs) and "SECRET-COOKIE" not in str(attrs)
    assert attrs["http.request.header.authorization"] == ("REDACTED",)
    assert attrs["http.request.header.x_api_key"] == ("REDACTED",)
    assert attrs["http.response.header.set_cookie"] == ("REDACTED",)
    assert attrs["http.request.header.content_type"] == ("application/json",)
    assert attrs["http.response.header.x_ratelimit_remaining_requests"] == ("99",)


@pytest.mark.parametrize("use_async", [False, True])
async def test_enricher_gets_provider_and_state(
    app: Callable[..., Telemetry],
    providers: Providers,
    local_server: LocalServer,
    enrichers: list[Any],
    use_async: bool,
) -> None:
    """An enricher's on_request state comes back in on_response, and its attributes land on the span."""
    enricher = RecordingEnricher()
    enrichers.append(enricher)
    app()
    if use_async:
        async with httpx.AsyncClient() as client:
            await client.get(local_server.url("/status/429"))
    else:
        httpx.get(local_server.url("/status/429"))
    assert enricher.seen == [("local-llm", {"method": b"GET"}, 429)]
    (span,) = providers.spans()
    assert span.attributes["test.request_path"] == "/status/429"
    assert span.attributes["test.status"] == 429


def test_failing_enricher_is_counted_and_harmless(
    app: Callable[..., Telemetry], providers: Providers, local_server: LocalServer, enrichers: list[Any]
) -> None:
    """An enricher that raises never reaches the request; each failure counts as httpx_hooks."""
    enrichers.append(FailingEnricher())
    telemetry = app()
    response = httpx.get(local_server.url())
    assert response.json()["path"] == "/ok"
    assert telemetry.engine.errors.count("httpx_hooks") == 2
    (span,) = providers.spans()
    assert span.attributes["spansignals.provider"] == "local-llm"
    points = providers.metric_points("spansignals.processor.errors")
    assert [(a, p.value) for a, p in points] == [({"processor": "httpx_hooks"}, 2)]


def test_hook_failure_is_counted_and_harmless(local_server: LocalServer) -> None:
    """A hook that fails on a broken span counts the error and returns normally."""

    class BrokenSpan:
        def is_recording(self) -> bool:
            raise RuntimeError("broken span")

    hooks = HttpxHooks()
    hooks.request_hook(BrokenSpan(), object())
    hooks.response_hook(BrokenSpan(), object(), object())
    assert hooks.errors.count("httpx_hooks") == 1


class BodyObserver:
    """Enricher that observes the streamed response body."""

    name = "body"

    def __init__(self, raise_on_chunk: bool = False) -> None:
        self.chunks: list[bytes] = []
        self.done: list[bool] = []
        self.raise_on_chunk = raise_on_chunk

    def on_request(self, span: Any, request: Any, provider: Any) -> Any:
        return None

    def on_response(self, span: Any, request: Any, response: Any, provider: Any, state: Any) -> None:
        observe_response_body(response, self._chunk, self.done.append)

    def _chunk(self, chunk: bytes) -> None:
        if self.raise_on_chunk:
            raise ValueError("observer bug")
        self.chunks.append(chunk)


@pytest.mark.parametrize("use_async", [False, True])
async def test_streamed_body_observed_unchanged(
    app: Callable[..., Telemetry], local_server: LocalServer, enrichers: list[Any], use_async: bool
) -> None:
    """The app reads exactly the streamed bytes; the observer sees the same bytes and the end."""
    observer = BodyObserver()
    enrichers.append(observer)
    app()
    received = b""
    if use_async:
        async with (
            httpx.AsyncClient() as client,
            client.stream("GET", local_server.url("/stream")) as response,
        ):
            async for chunk in response.aiter_raw():
                received += chunk
    else:
        with httpx.Client() as client, client.stream("GET", local_server.url("/stream")) as response:
            for chunk in response.iter_raw():
                received += chunk
    expected = b"".join(f'data: {{"i": {i}}}\n\n'.encode() for i in range(5))
    assert received == expected
    assert b"".join(observer.chunks) == expected
    assert observer.done == [True]


def test_body_closed_unread_reports_incomplete(
    app: Callable[..., Telemetry], local_server: LocalServer, enrichers: list[Any]
) -> None:
    """A stream the app closes without reading ends the observation with complete=False."""
    observer = BodyObserver()
    enrichers.append(observer)
    app()
    with httpx.Client() as client, client.stream("GET", local_server.url("/stream")):
        pass
    assert observer.done == [False]


def test_broken_body_observer_never_breaks_the_read(
    app: Callable[..., Telemetry], local_server: LocalServer, enrichers: list[Any]
) -> None:
    """An observer that raises is dropped; the app still gets every byte."""
    observer = BodyObserver(raise_on_chunk=True)
    enrichers.append(observer)
    app()
    response = httpx.get(local_server.url("/stream"))
    assert response.text.count("data:") == 5
    assert observer.done == [True]


def test_instrument_single_client(
    app: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """With global instrumentation off, instrument_client() instruments that client only, once."""
    app(instrument_httpx=False)
    instrumented, plain = httpx.Client(), httpx.Client()
    assert instrument_client(instrumented)
    assert not instrument_client(instrumented)
    instrumented.get(local_server.url("/v1/x?key=CANARY"))
    plain.get(local_server.url())
    (span,) = providers.spans()
    assert span.attributes["spansignals.provider"] == "local-llm"
    assert "CANARY" not in str(dict(span.attributes))
    instrumented.close()
    plain.close()


async def test_instrument_single_async_client(
    app: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """instrument_client() works for an AsyncClient with the async hooks."""
    app(instrument_httpx=False)
    async with httpx.AsyncClient() as client:
        assert instrument_client(client)
        await client.get(local_server.url())
    (span,) = providers.spans()
    assert span.attributes["spansignals.provider"] == "local-llm"


def test_instrument_client_is_noop_when_all_clients_are(
    app: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """When every client is instrumented, instrument_client() declines (no second span per call)."""
    app()
    with httpx.Client() as client:
        assert not instrument_client(client)
        client.get(local_server.url())
    assert len(providers.spans()) == 1


@settings(max_examples=150, deadline=None)
@given(
    path=st.text(max_size=30),
    params=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=4),
    headers=st.dictionaries(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_", min_size=1, max_size=15),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
        max_size=4,
    ),
)
def test_hooks_never_raise_and_never_leak(path: str, params: dict[str, str], headers: dict[str, str]) -> None:
    """Any URL path, query and headers: the hooks never fail and a planted token never survives."""
    try:
        url = httpx.URL(
            scheme="https", host="api.openai.com", path="/" + path, params={**params, "token": "CANARY"}
        )
        header_obj = httpx.Headers(headers)
    except Exception:
        assume(False)
        return
    tracer = TracerProvider().get_tracer("t")
    hooks = HttpxHooks(capture_request_headers=True)
    request = RequestInfo(b"GET", url, header_obj, None, {})
    with tracer.start_as_current_span("GET", attributes={"http.url": str(url), "url.full": str(url)}) as span:
        hooks.request_hook(span, request)
        hooks.response_hook(span, request, ResponseInfo(200, header_obj, None, {}))
        attributes = dict(span.attributes)
    assert hooks.errors.count("httpx_hooks") == 0
    assert "CANARY" not in attributes["http.url"] and "CANARY" not in attributes["url.full"]
    assert attributes["spansignals.provider"] == "openai"


def test_one_hooks_instance_stays_exact_across_repeated_and_many_urls() -> None:
    """The per-host, per-URL and per-key caches of one HttpxHooks give every span what a fresh
    computation would: repeated URLs, clean and secret ones interleaved, more distinct URLs than
    the URL cache holds, and a credential header seen again after harmless keys were learnt."""
    tracer = TracerProvider().get_tracer("t")
    hooks = HttpxHooks(capture_request_headers=True)
    urls = [
        "https://api.openai.com/v1/chat/completions",
        "https://api.openai.com/v1/chat/completions?api-key=CANARY",
        "https://api.openai.com/v1/chat/completions?api-version=2024-06-01",
        "https://u:CANARY@api.github.com/repos?page=2",
        "https://example.org/search?q=cats&token=CANARY",
    ]
    urls += [f"https://example.org/items?page={i}&key=CANARY{i}" for i in range(_MAX_CACHED_URLS + 5)]
    headers = httpx.Headers({"authorization": "Bearer CANARY", "x-ratelimit-limit": "10"})
    for text in urls * 2:
        url = httpx.URL(text)
        request = RequestInfo(b"GET", url, headers, None, {})
        start = {"url.full": text, "http.request.header.authorization": ("Bearer CANARY",)}
        with tracer.start_as_current_span("GET", attributes=start) as span:
            hooks.request_hook(span, request)
            span.set_attribute("http.response.header.set-cookie", ["id=CANARY"])
            hooks.response_hook(span, request, ResponseInfo(200, headers, None, {}))
            attributes = dict(span.attributes)
        assert attributes["url.full"] == redact_url(text)
        assert "CANARY" not in str(attributes)
        expected = {"api.openai.com": "openai", "api.github.com": "github"}.get(url.host)
        assert attributes.get("spansignals.provider") == expected
    assert hooks.errors.count("httpx_hooks") == 0


class ReturningEnricher:
    """Returns its response attributes (a dict it keeps and reuses) instead of setting them."""

    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        self.name = name
        self.attributes = attributes

    def on_request(self, span: Any, request: Any, provider: Any) -> Any:
        return None

    def on_response(
        self, span: Any, request: Any, response: Any, provider: Any, state: Any
    ) -> dict[str, Any]:
        return self.attributes


def test_returned_attributes_are_set_together_in_enricher_order_and_redacted() -> None:
    """What enrichers return lands on the span (later enrichers win on a shared key), next to what
    others set directly; a returned credential header is redacted; a failing enricher costs only
    its own attributes; the enrichers' own dicts are never changed."""
    first = {"test.a": "1", "test.shared": "first", "http.response.header.set-cookie": ["id=CANARY"]}
    second = {"test.b": 2, "test.shared": "second"}
    first_copy, second_copy = dict(first), {**second}
    hooks = HttpxHooks(
        enrichers=[
            ReturningEnricher("first", first),
            FailingEnricher(),
            RecordingEnricher(),
            ReturningEnricher("second", second),
        ]
    )
    tracer = TracerProvider().get_tracer("t")
    url = httpx.URL("https://api.openai.com/v1/chat/completions")
    request = RequestInfo(b"POST", url, httpx.Headers(), None, {})
    for _ in range(2):
        with tracer.start_as_current_span("POST", attributes={"url.full": str(url)}) as span:
            hooks.request_hook(span, request)
            hooks.response_hook(span, request, ResponseInfo(200, httpx.Headers(), None, {}))
            attributes = dict(span.attributes)
        assert attributes["test.a"] == "1" and attributes["test.b"] == 2
        assert attributes["test.shared"] == "second"
        assert attributes["test.status"] == 200  # set directly by RecordingEnricher
        assert attributes["http.response.header.set-cookie"] == ("REDACTED",)
        assert first == first_copy and second == second_copy
    assert hooks.errors.count("httpx_hooks") == 4  # FailingEnricher, on request and response, twice


def test_replacing_the_table_forgets_providers_per_host() -> None:
    """A new provider table applies from the next request on (the per-host cache is dropped)."""
    hooks = HttpxHooks(ProviderTable([("api.example.test", ProviderInfo("one"))]))
    tracer = TracerProvider().get_tracer("t")
    url = httpx.URL("https://api.example.test/v1/x")
    request = RequestInfo(b"GET", url, httpx.Headers(), None, {})
    seen = []
    for table in (None, ProviderTable([("api.example.test", ProviderInfo("two"))])):
        if table is not None:
            hooks.table = table
        with tracer.start_as_current_span("GET", attributes={"url.full": str(url)}) as span:
            hooks.request_hook(span, request)
            seen.append(span.attributes.get("spansignals.provider"))
        hooks.response_hook(span, request, ResponseInfo(200, httpx.Headers(), None, {}))
    assert seen == ["one", "two"]


def test_unusable_returned_attributes_never_skip_redaction() -> None:
    """An enricher returning something that is not a mapping is counted as a hook error; the
    other enricher's attributes are set and captured credential headers are still redacted."""

    class Broken(ReturningEnricher):
        def on_response(self, span: Any, request: Any, response: Any, provider: Any, state: Any) -> Any:
            return ["not", "a", "mapping"]

    for enrichers in (
        [Broken("broken", {})],
        [ReturningEnricher("ok", {"test.ok": 1}), Broken("broken", {})],
    ):
        hooks = HttpxHooks(enrichers=enrichers)
        tracer = TracerProvider().get_tracer("t")
        url = httpx.URL("https://api.openai.com/v1/chat/completions")
        request = RequestInfo(b"POST", url, httpx.Headers(), None, {})
        start = {"url.full": str(url), "http.response.header.set-cookie": ("id=CANARY",)}
        with tracer.start_as_current_span("POST", attributes=start) as span:
            hooks.request_hook(span, request)
            hooks.response_hook(span, request, ResponseInfo(200, httpx.Headers(), None, {}))
            attributes = dict(span.attributes)
        assert attributes["http.response.header.set-cookie"] == ("REDACTED",)
        assert hooks.errors.count("httpx_hooks") == 1
    assert attributes["test.ok"] == 1


def test_a_request_url_that_cannot_be_read_still_leaves_nothing_secret() -> None:
    """When the hook cannot take the request URL apart, the URL attributes the span holds are
    redacted from their text, and captured request and response headers are still redacted."""

    class UnreadableURL:
        @property
        def host(self) -> str:
            raise ValueError("unreadable")

    hooks = HttpxHooks(capture_request_headers=True, enrichers=[RecordingEnricher()])
    tracer = TracerProvider().get_tracer("t")
    request = RequestInfo(b"GET", UnreadableURL(), httpx.Headers(), None, {})
    start = {
        "url.full": "https://u:CANARY@api.example.test/v1?token=CANARY",
        "http.request.header.authorization": ("Bearer CANARY",),
    }
    with tracer.start_as_current_span("GET", attributes=start) as span:
        hooks.request_hook(span, request)
        span.set_attribute("http.response.header.set-cookie", ("id=CANARY",))
        hooks.response_hook(span, request, ResponseInfo(200, httpx.Headers(), None, {}))
        attributes = dict(span.attributes)
    assert "CANARY" not in str(attributes)
    assert attributes["http.request.header.authorization"] == ("REDACTED",)
    assert hooks.errors.count("httpx_hooks") >= 1
