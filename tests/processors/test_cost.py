"""CostSpanProcessor: cost, tokens and unpriced usage from GenAI attributes of any instrumentation."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from spansignals.processors.cost import CostSpanProcessor, usage_from_attributes
from spansignals.processors.engine import SignalEngine
from spansignals.processors.pricing import PriceCatalog, TokenUsage
from spansignals.processors.producer import SignalMetricProducer, attach_producer
from spansignals.processors.view import KIND_CLIENT, KIND_INTERNAL, SpanView

START_NS = int(dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc).timestamp() * 1e9)
NOW = dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc)


def _view(
    attrs: dict[str, Any], *, service: str = "svc", weight: float = 1.0, kind: int = KIND_CLIENT
) -> SpanView:
    return SpanView(
        "POST", kind, START_NS, START_NS + 10**8, 0, attrs, {"service.name": service}, weight=weight
    )


def _expected(usage: Usage, model: str, provider: str) -> Decimal:
    return calc_price(usage, model, provider_id=provider, genai_request_timestamp=NOW).total_price


def test_semconv_span_is_priced_once_with_cached_tokens() -> None:
    """Our own attributes: cached tokens are part of input and are priced once, at the cache price."""
    proc = CostSpanProcessor()
    proc.observe(
        _view(
            {
                "spansignals.provider": "openai",
                "gen_ai.provider.name": "openai",
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 2006,
                "gen_ai.usage.output_tokens": 300,
                "gen_ai.usage.cache_read.input_tokens": 1920,
            }
        )
    )
    want = _expected(
        Usage(input_tokens=2006, output_tokens=300, cache_read_tokens=1920), "gpt-4o-2024-08-06", "openai"
    )
    assert proc.cost.exact(("svc", "openai", "gpt-4o-2024-08-06", "chat")) == want
    assert proc.tokens.value(("svc", "openai", "gpt-4o-2024-08-06", "input")) == 2006
    assert proc.tokens.value(("svc", "openai", "gpt-4o-2024-08-06", "cache_read")) == 1920
    assert proc.tokens.value(("svc", "openai", "gpt-4o-2024-08-06", "cache_write")) == 0


@pytest.mark.parametrize(
    "attrs",
    [
        {  # OpenLLMetry (older attribute names, gen_ai.system)
            "gen_ai.system": "Anthropic",
            "gen_ai.request.model": "claude-3-5-haiku-20241022",
            "gen_ai.response.model": "claude-3-5-haiku-20241022",
            "llm.request.type": "chat",
            "gen_ai.usage.prompt_tokens": 13550,
            "gen_ai.usage.completion_tokens": 393,
            "gen_ai.usage.cache_read_input_tokens": 12000,
            "gen_ai.usage.cache_creation_input_tokens": 1500,
        },
        {  # current conventions, from another language through the collector
            "gen_ai.provider.name": "anthropic",
            "gen_ai.operation.name": "chat",
            "gen_ai.response.model": "claude-3-5-haiku-20241022",
            "gen_ai.usage.input_tokens": 13550,
            "gen_ai.usage.output_tokens": 393,
            "gen_ai.usage.cache_read.input_tokens": 12000,
            "gen_ai.usage.cache_creation.input_tokens": 1500,
        },
    ],
)
def test_other_instrumentations_are_priced(attrs: dict[str, Any]) -> None:
    """Spans from OpenLLMetry-style and current-convention instrumentations get the same exact cost."""
    proc = CostSpanProcessor()
    proc.observe(_view(attrs))
    want = _expected(
        Usage(input_tokens=13550, output_tokens=393, cache_read_tokens=12000, cache_write_tokens=1500),
        "claude-3-5-haiku-20241022",
        "anthropic",
    )
    assert proc.cost.exact(("svc", "anthropic", "claude-3-5-haiku-20241022", "chat")) == want


def test_unknown_model_is_counted_unpriced_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    """Usage with no known price goes to spansignals_cost_unpriced_total and logs one warning per model."""
    proc = CostSpanProcessor()
    attrs = {
        "gen_ai.provider.name": "openai",
        "gen_ai.response.model": "acme-9000",
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 1,
    }
    with caplog.at_level(logging.WARNING, logger="spansignals.processors.cost"):
        for _ in range(3):
            proc.observe(_view(attrs))
    assert proc.unpriced.value(("svc", "openai", "acme-9000")) == 3
    assert proc.cost.snapshot() == []
    assert proc.tokens.value(("svc", "openai", "acme-9000", "input")) == 15
    assert len([r for r in caplog.records if "acme-9000" in r.getMessage()]) == 1


def test_contradictory_counts_are_unpriced_not_negative() -> None:
    """Cache reads above the input total are counted unpriced, never as a negative or zero cost."""
    proc = CostSpanProcessor()
    proc.observe(
        _view(
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.response.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 5,
                "gen_ai.usage.cache_read.input_tokens": 50,
            }
        )
    )
    assert proc.unpriced.value(("svc", "openai", "gpt-4o")) == 1
    assert proc.cost.snapshot() == []


def test_sampling_weight_scales_cost_and_tokens() -> None:
    """A span kept at 1-in-4 sampling counts four times."""
    proc = CostSpanProcessor()
    attrs = {
        "gen_ai.provider.name": "openai",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 10,
    }
    proc.observe(_view(attrs, weight=4.0))
    one = _expected(Usage(input_tokens=1000, output_tokens=10), "gpt-4o-mini", "openai")
    assert proc.cost.exact(("svc", "openai", "gpt-4o-mini", None)) == one * 4
    assert proc.tokens.value(("svc", "openai", "gpt-4o-mini", "input")) == 4000


def test_config_override_prices_a_private_model() -> None:
    """pricing.models gives a price to a model genai-prices does not know."""
    override = SimpleNamespace(
        provider="internal-llm",
        model="llama-70b",
        input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("2"),
        cache_read_per_mtok=None,
        cache_write_per_mtok=None,
        reasoning_per_mtok=None,
        per_request=None,
        valid_from=None,
    )
    proc = CostSpanProcessor(PriceCatalog(models=[override]))
    proc.observe(
        _view(
            {
                "spansignals.provider": "internal-llm",
                "gen_ai.request.model": "llama-70b",
                "gen_ai.usage.input_tokens": 1_000_000,
                "gen_ai.usage.output_tokens": 500_000,
            }
        )
    )
    assert proc.cost.exact(("svc", "internal-llm", "llama-70b", None)) == Decimal(2)


def _twilio() -> CostSpanProcessor:
    api = SimpleNamespace(
        provider="twilio",
        method="POST",
        route="/2010-04-01/Accounts/{sid}/Messages.json",
        per_request=Decimal("0.0079"),
    )
    return CostSpanProcessor(PriceCatalog(apis=[api]))


@pytest.mark.parametrize(
    ("attrs", "charged"),
    [
        (
            {
                "spansignals.provider": "twilio",
                "http.request.method": "POST",
                "http.response.status_code": 201,
                "url.full": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?x=1",
            },
            True,
        ),
        (
            {
                "http.request.method": "POST",
                "url.full": "https://api.twilio.com/2010-04-01/Accounts/AC2/Messages.json",
                "server.address": "api.twilio.com",
            },
            True,
        ),
        (
            {
                "http.method": "POST",
                "http.url": "https://api.twilio.com/2010-04-01/Accounts/AC2/Messages.json",
            },
            True,
        ),
        (
            {
                "spansignals.provider": "twilio",
                "http.request.method": "POST",
                "http.response.status_code": 400,
                "url.full": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
            },
            False,
        ),
        (
            {
                "spansignals.provider": "twilio",
                "http.request.method": "GET",
                "url.full": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
            },
            False,
        ),
        (
            {
                "spansignals.provider": "stripe",
                "http.request.method": "POST",
                "url.full": "https://api.stripe.com/v1/x",
            },
            False,
        ),
    ],
)
def test_per_request_api_prices(attrs: dict[str, Any], charged: bool) -> None:
    """pricing.apis charges successful requests matching provider, method and route template."""
    proc = _twilio()
    proc.observe(_view(attrs))
    labels = ("svc", "twilio", None, "POST /2010-04-01/Accounts/{sid}/Messages.json")
    assert proc.cost.exact(labels) == (Decimal("0.0079") if charged else 0)


def test_plain_spans_cost_nothing() -> None:
    """Spans without usage or API prices add no series."""
    proc = _twilio()
    proc.observe(
        _view({"http.request.method": "GET", "url.full": "https://example.com/"}, kind=KIND_INTERNAL)
    )
    proc.observe(_view({}))
    assert proc.cost.snapshot() == [] and proc.tokens.snapshot() == [] and proc.unpriced.snapshot() == []


def test_exact_sum_over_many_spans_and_prometheus_names() -> None:
    """Sums stay exact in Decimal and export under the catalogue's names through an SDK reader."""
    proc = _twilio()
    for _ in range(1000):
        proc.observe(
            _view(
                {
                    "spansignals.provider": "twilio",
                    "http.request.method": "POST",
                    "url.path": "/2010-04-01/Accounts/AC1/Messages.json",
                }
            )
        )
    engine = SignalEngine([proc])
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    producer = SignalMetricProducer()
    producer.register(*engine.metric_families())
    attach_producer(reader, producer)
    assert proc.cost.exact(
        ("svc", "twilio", None, "POST /2010-04-01/Accounts/{sid}/Messages.json")
    ) == Decimal("7.9")
    metrics = {
        m.name: m
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    point = metrics["spansignals.cost.usd"].data.data_points[0]
    assert point.value == 7.9 and metrics["spansignals.cost.usd"].unit == "{USD}"
    assert dict(point.attributes) == {
        "service.name": "svc",
        "provider": "twilio",
        "operation": "POST /2010-04-01/Accounts/{sid}/Messages.json",
    }
    provider.shutdown()


def test_late_usage_is_counted() -> None:
    """record_usage (streamed bodies) prices usage reported after the span ended."""
    proc = CostSpanProcessor()
    proc.record_usage(
        {
            "spansignals.provider": "anthropic",
            "gen_ai.response.model": "claude-sonnet-4-5-20250929",
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": 1672,
            "gen_ai.usage.output_tokens": 89,
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 200,
        },
        {"service.name": "svc"},
        start_ns=START_NS,
        end_ns=START_NS + 1,
    )
    want = _expected(
        Usage(input_tokens=1672, output_tokens=89, cache_read_tokens=1000, cache_write_tokens=200),
        "claude-sonnet-4-5-20250929",
        "anthropic",
    )
    assert proc.cost.exact(("svc", "anthropic", "claude-sonnet-4-5-20250929", "chat")) == want


@pytest.mark.parametrize(
    ("attrs", "usage"),
    [
        ({"gen_ai.usage.input_tokens": 3}, TokenUsage(input=3)),
        ({"gen_ai.usage.input_tokens": "3"}, None),
        ({"gen_ai.usage.input_tokens": -1, "gen_ai.usage.output_tokens": 2}, TokenUsage(output=2)),
        ({"gen_ai.usage.input_tokens": 4.0, "llm.usage.completion_tokens": 2}, TokenUsage(4, 2)),
        ({"gen_ai.usage.input_tokens": True}, None),
        ({}, None),
    ],
)
def test_usage_from_attributes_types(attrs: dict[str, Any], usage: TokenUsage | None) -> None:
    """Only non-negative integer counts are read; ill-typed values are ignored."""
    assert usage_from_attributes(attrs) == usage


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.binary(max_size=8),
    st.tuples(st.integers(), st.text(max_size=3)),
)  # fmt: skip
_KEYS = st.sampled_from([
    "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.response.model",
    "gen_ai.request.model", "gen_ai.provider.name", "gen_ai.system", "spansignals.provider", "url.full",
    "http.request.method", "url.path", "http.response.status_code", "gen_ai.operation.name",
    "spansignals.usage.cache_creation_1h.input_tokens",
])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=10), st.floats(min_value=0, max_value=1e6))
def test_any_attributes_never_raise(attrs: dict[str, Any], weight: float) -> None:
    """Missing, ill-typed, huge or NaN attribute values never raise out of observe()."""
    proc = _twilio()
    proc.observe(_view(attrs, weight=weight))
    for _, value in proc.cost.snapshot():
        assert value >= 0


def test_usage_from_otlp_attributes_with_and_without_usage_keys():
    """Collector spans: observe's encoding pre-check (might_hold_key) finds every usage key, and
    usage is read from OTLP attributes as from a dict."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from spansignals.processors import cost
    from spansignals.processors.view import OtlpAttributes

    assert all(cost._USAGE_FRAGMENT.decode() in key for key in cost._TOTAL_KEYS)
    for key in cost._TOTAL_KEYS:
        span = Span(name="chat", attributes=[KeyValue(key=key, value=AnyValue(int_value=5))])
        attrs = OtlpAttributes(span.attributes, span)
        assert attrs.might_contain(cost._USAGE_FRAGMENT), key
        usage = usage_from_attributes(attrs)
        assert usage is not None and 5 in (usage.input, usage.output), key
    plain = Span(name="usage.report", attributes=[KeyValue(key="a", value=AnyValue(string_value="usage."))])
    assert usage_from_attributes(OtlpAttributes(plain.attributes, plain)) is None
    detailed = Span(
        name="chat",
        attributes=[
            KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=10)),
            KeyValue(key="gen_ai.usage.cache_read.input_tokens", value=AnyValue(int_value=4)),
        ],
    )
    assert usage_from_attributes(OtlpAttributes(detailed.attributes, detailed)) == TokenUsage(10, None, 4)


def test_per_request_prices_on_otlp_client_spans_and_spans_naming_their_provider() -> None:
    """Collector spans: a client span or one naming its provider is priced per request as a dict
    span would be; a server span naming no provider is not."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from spansignals.processors.view import KIND_SERVER, OtlpAttributes

    def otlp(attrs: dict[str, Any], kind: int) -> SpanView:
        kvs = [
            KeyValue(key=k, value=AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=v))
            for k, v in attrs.items()
        ]
        span = Span(name="POST", kind=kind, attributes=kvs)  # type: ignore[arg-type]
        return SpanView(
            "POST",
            kind,
            START_NS,
            START_NS + 1,
            0,
            OtlpAttributes(span.attributes, span),
            {"service.name": "svc"},
        )

    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json"
    labels = ("svc", "twilio", None, "POST /2010-04-01/Accounts/{sid}/Messages.json")
    proc = _twilio()
    proc.observe(otlp({"http.request.method": "POST", "url.full": url}, KIND_CLIENT))
    assert proc.cost.exact(labels) == Decimal("0.0079")
    named = otlp(
        {"spansignals.provider": "twilio", "http.request.method": "POST", "url.path": url[22:]}, KIND_SERVER
    )
    proc.observe(named)
    assert proc.cost.exact(labels) == Decimal("0.0158")
    server = otlp({"http.request.method": "POST", "url.full": url, "http.route": "/x"}, KIND_SERVER)
    proc.observe(server)  # a server span naming no provider: never priced per request
    assert proc.cost.exact(labels) == Decimal("0.0158")


_GPT4O_CALL = {  # the attributes of a span for price_call("openai", "gpt-4o-2024-08-06", "gpt-4o", ...)
    "spansignals.provider": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 50,
}


def _spy_pricing(monkeypatch: pytest.MonkeyPatch) -> list[TokenUsage]:
    """From now on, every usage PricePlan.cost prices (it still prices), in order."""
    from spansignals.processors.pricing import PricePlan

    priced: list[TokenUsage] = []
    original = PricePlan.cost
    monkeypatch.setattr(PricePlan, "cost", lambda plan, u: priced.append(u) or original(plan, u))
    return priced


def test_price_call_is_handed_to_the_derivation_only_for_the_same_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-app, the enricher's price (price_call) is the one the span's derivation charges: the
    call is priced once. Only the same provider, models, tier, counts and start time take it;
    anything else is priced from the counts, and a cost attribute is never read."""
    proc = CostSpanProcessor()
    usage = TokenUsage(1000, 50)
    handed = proc.price_call("OpenAI", "gpt-4o-2024-08-06", "gpt-4o", None, usage, START_NS)
    want = _expected(Usage(input_tokens=1000, output_tokens=50), "gpt-4o-2024-08-06", "openai")
    assert handed == want
    priced = _spy_pricing(monkeypatch)
    attrs = {**_GPT4O_CALL, "gen_ai.usage.cost": 99.0}  # a cost attribute: never trusted
    labels = ("svc", "openai", "gpt-4o-2024-08-06", None)
    proc.observe(_view(attrs))
    assert priced == [] and proc.cost.exact(labels) == want
    proc.observe(_view(attrs))  # handed over once only: a second span with the same inputs is priced
    assert priced == [usage] and proc.cost.exact(labels) == 2 * want
    proc.price_call("openai", "gpt-4o-2024-08-06", "gpt-4o", None, usage, START_NS)
    proc.observe(_view({**attrs, "gen_ai.usage.output_tokens": 51}))  # other counts: priced from them
    assert priced == [usage, usage, TokenUsage(1000, 51)]  # price_call, then the derivation
    assert proc.cost.exact(labels) == 2 * want + _expected(
        Usage(input_tokens=1000, output_tokens=51), "gpt-4o-2024-08-06", "openai"
    )


def test_hand_overs_are_bounded_oldest_forgotten_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past 4096 waiting hand-overs the oldest is forgotten (its span is then priced from its
    counts, with the same result); the newest are still taken."""
    proc = CostSpanProcessor()
    usage = TokenUsage(1000, 50)
    for i in range(4097):
        proc.price_call("openai", "gpt-4o-2024-08-06", "gpt-4o", None, usage, START_NS + i)
    priced = _spy_pricing(monkeypatch)

    def at(start_ns: int) -> SpanView:
        return SpanView("POST", KIND_CLIENT, start_ns, start_ns + 1, 0, _GPT4O_CALL, {"service.name": "svc"})

    proc.observe(at(START_NS + 4096))
    assert priced == []
    proc.observe(at(START_NS))
    assert priced == [usage]
    want = _expected(Usage(input_tokens=1000, output_tokens=50), "gpt-4o-2024-08-06", "openai")
    assert proc.cost.exact(("svc", "openai", "gpt-4o-2024-08-06", None)) == 2 * want
