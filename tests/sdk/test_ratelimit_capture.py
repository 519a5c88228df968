"""Rate-limit header capture through configure(): headers become semconv attributes and feed the gauges."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sdk_fixtures import LOCAL_PROVIDERS, LocalServer, Providers

from spansignals.sdk import RequestBlocked, Telemetry, guard
from spansignals.sdk.ratelimit_capture import RateLimitHeaderEnricher

HEADER = "http.response.header.x-ratelimit-remaining-requests"


def test_headers_captured_as_list_attributes_and_derived(
    configured: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """A provider's rate-limit header lands on the span as a list and in the gauge; cookies do not."""
    configured(
        LOCAL_PROVIDERS, tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
    )
    httpx.get(local_server.url())
    (span,) = providers.spans()
    assert span.attributes[HEADER] == ("99",)
    assert not any("set-cookie" in k for k in span.attributes)
    points = providers.metric_points("spansignals.ratelimit.remaining")
    assert [(a["provider"], a["resource"], p.value) for a, p in points] == [("local-llm", "requests", 99)]


def test_capture_can_be_turned_off(
    configured: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """ratelimits.capture_headers: false records no header attribute and no gauge."""
    configured(
        {**LOCAL_PROVIDERS, "ratelimits": {"capture_headers": False}},
        tracer_provider=providers.tracer_provider,
        meter_provider=providers.meter_provider,
    )
    httpx.get(local_server.url())
    (span,) = providers.spans()
    assert HEADER not in span.attributes
    assert providers.metric_points("spansignals.ratelimit.remaining") == []


def test_unknown_hosts_are_not_captured(
    configured: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """Without a provider entry for the host, nothing is captured."""
    configured(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    httpx.get(local_server.url())
    (span,) = providers.spans()
    assert HEADER not in span.attributes


def test_guard_uses_the_configured_engine(
    configured: Callable[..., Telemetry], providers: Providers, local_server: LocalServer
) -> None:
    """guard() finds configure()'s processor: five 500s open the breaker, the next call is blocked."""
    configured(
        LOCAL_PROVIDERS, tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
    )
    client = guard(httpx.Client())
    for _ in range(5):
        assert client.get(local_server.url("/status/500")).status_code == 500
    try:
        client.get(local_server.url())
        raise AssertionError("expected RequestBlocked")
    except RequestBlocked as exc:
        assert exc.provider == "local-llm" and exc.reason == "circuit breaker open"
    decisions = {a["outcome"]: p.value for a, p in providers.metric_points("spansignals.guard.decisions")}
    assert decisions == {"allowed": 5, "rejected": 1}
    states = providers.metric_points("spansignals.breaker.state")
    assert [(a["service.name"], p.value) for a, p in states] == [("test-app", 2.0)]
    assert len(providers.spans()) == 5  # the blocked request made no span: it never reached the transport
    client.close()


def test_enricher_accepts_plain_mappings() -> None:
    """The enricher reads dict-shaped headers too, grouping repeated values into one list."""

    class Span:
        attrs: dict[str, object] = {}

        def set_attributes(self, attrs: dict[str, object]) -> None:
            self.attrs = attrs

    class Response:
        headers = [
            (b"Retry-After", b"5"),
            (b"RateLimit", b'"a";r=1'),
            (b"ratelimit", b'"b";r=2'),
            (b"x", b"y"),
        ]

    span = Span()
    RateLimitHeaderEnricher().on_response(span, None, Response(), object(), None)  # type: ignore[arg-type]
    assert span.attrs == {
        "http.response.header.retry-after": ["5"],
        "http.response.header.ratelimit": ['"a";r=1', '"b";r=2'],
    }
